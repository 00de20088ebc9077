"""The report on agent traffic, in headless Chromium: tool calls side by side with the differing argument
marked, refusals, reasoning length, and the worst-pairs table filtered to tool-call mismatches."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from evaluators.runner import ScoreRunner, score_lines
from reports.render import render_report
from shadow.gate import evaluate_gate
from tests.browser import Browser, browser_unavailable_reason

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "report"
pytestmark = pytest.mark.skipif(
    browser_unavailable_reason() is not None, reason=str(browser_unavailable_reason())
)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            },
        },
    }
]


def agent_records(n: int = 60) -> list[dict]:
    lines = []
    for i in range(n):
        city = ["Paris", "Rome", "Tokyo"][i % 3]
        right = json.dumps({"city": city, "unit": "celsius"})
        wrong = json.dumps({"unit": "fahrenheit", "city": city})  # other key order too: only unit differs
        pair = {
            "id": f"01AGENT{i:019d}",
            "experiment": "agents",
            "created_at": f"2026-11-01T00:{i // 60:02d}:{i % 60:02d}Z",
            "request": {
                "model": "m",
                "tools": TOOLS,
                "messages": [{"role": "user", "content": f"weather in {city}?"}],
            },
            "prompt": f"weather in {city}?",
            "baseline": None,
            "baseline_status": 200,
            "baseline_tool_calls": [
                {"id": "a", "type": "function", "name": "get_weather", "arguments": right}
            ],
            "baseline_reasoning": "The user wants the weather; call the tool.",
            "candidate": None,
            "candidate_status": 200,
            "candidate_tool_calls": [
                {
                    "id": "b",
                    "type": "function",
                    "name": "get_weather",
                    "arguments": wrong if i % 3 == 0 else right,
                }
            ],
        }
        if i % 6 == 1:  # the candidate refuses instead
            pair.update(candidate="I'm sorry, but I can't help with that.", candidate_tool_calls=None)
            pair["candidate_refusal"] = "I'm sorry, but I can't help with that."
        lines.append(json.dumps(pair))
    runner = ScoreRunner.build("tools,refusal", device="cpu")
    return [json.loads(line) for line in score_lines(lines, runner)]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = Browser()
    try:
        yield chromium
    finally:
        chromium.close()


def test_tool_calls_are_compared_argument_by_argument(browser: Browser, tmp_path: Path) -> None:
    records = agent_records()
    gate = evaluate_gate(records)
    checks = {check["name"]: check for check in gate["checks"]}
    assert checks["tool_call_mismatch"]["verdict"] == "fail"
    assert "get_weather: argument 'unit' differs" in checks["tool_call_mismatch"]["reason"]
    path = tmp_path / "report.html"
    path.write_text(render_report(records, gate), encoding="utf-8")
    with browser.open_page(path) as (page, log):
        flags = page.eval_on_selector_all("#f-flag option", "options => options.map(o => o.value)")
        assert "tools" in flags and "refusal" in flags
        page.select_option("#f-flag", "tools")
        # A pair whose only flag is the tool-call mismatch (the refusals also call no tool).
        flagged = page.eval_on_selector_all(
            "#pairs-body tr",
            "rows => rows.map(r => [...r.querySelectorAll('.flag')].map(f => f.textContent))",
        )
        only_tools = next(i for i, row_flags in enumerate(flagged) if row_flags == ["tools"])
        page.click(f"#pairs-body tr:nth-child({only_tools + 1})")
        assert page.locator("#pv-agent").is_visible()
        cells = page.eval_on_selector_all("#pv-tools tr", "rows => rows.map(r => r.innerText)")
        assert any("get_weather" in row and "unit" in row for row in cells), cells
        marked = page.eval_on_selector_all("#pv-tools .d-del", "spans => spans.map(s => s.textContent)")
        assert sorted(marked) == ['"celsius"', '"fahrenheit"'], marked  # only the differing value, both sides
        assert any("reasoning" in row for row in cells)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "06-tool-calls.png"), full_page=True)
        page.select_option("#f-flag", "refusal")
        page.click("#pairs-body tr:first-child")
        cells = page.eval_on_selector_all("#pv-tools tr", "rows => rows.map(r => r.innerText)")
        assert any("refusal" in row and "can't help" in row for row in cells), cells
        assert log.console_errors == [] and log.page_errors == [] and log.requests == []
