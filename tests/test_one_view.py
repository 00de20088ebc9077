"""Every reader asks the same questions the same way (`shadow.core.view`).

- A pair without status fields answered: the runner scores it, and the gate judges it as an answer
  (before, the gate counted 100 % errors, "HTTP None", and failed identical candidates).
- The gate's `--segment lang=…`, the report's language segment and the export's `language` column put
  every pair in the same group.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from reports.build import build_report
from reports.export_table import scores_frame
from shadow.cli import main
from shadow.core import view
from shadow.gate import evaluate_gate
from shadow.gate.judge import select_pairs

ANSWER = (
    "To read a CSV file with pandas, call pandas.read_csv with the path. It returns a DataFrame. "
    "Pass sep for other delimiters and encoding for files that are not UTF-8."
)


def test_identical_pairs_without_status_fields_pass_the_gate(tmp_path, capsys):
    pairs, scores = tmp_path / "pairs.jsonl", tmp_path / "scores.jsonl"
    with open(pairs, "w", encoding="utf-8") as handle:
        for i in range(200):
            text = f"{ANSWER} Example {i}."
            handle.write(
                json.dumps(
                    {
                        "experiment": "same",
                        "prompt": f"how to read csv {i}",
                        "baseline": text,
                        "candidate": text,
                    }
                )
                + "\n"
            )
    assert main(["score", "--input", str(pairs), "--output", str(scores)]) == 0  # every evaluator
    capsys.readouterr()
    code = main(["gate", "--input", str(scores), "--json"])
    gate = json.loads(capsys.readouterr().out)
    checks = {check["name"]: check for check in gate["checks"]}
    assert checks["error_rate"]["verdict"] == "pass" and "HTTP None" not in checks["error_rate"]["reason"]
    assert checks["failure_rate"]["verdict"] == "pass"
    assert checks["loop_rate"]["verdict"] == checks["length_ratio"]["verdict"] == "pass"
    # No pair records a latency: the timing checks say so and do not hold the verdict back.
    assert checks["latency_p95"]["verdict"] == "nodata" and not checks["latency_p95"]["required"]
    assert gate["verdict"] == "pass" and code == 0, gate["reason"]


def test_a_failed_status_or_an_error_is_still_a_failure():
    assert view.side_answered({"candidate": "x", "candidate_status": 200}, "candidate") is True
    assert view.side_answered({"candidate": "x"}, "candidate") is True
    assert view.side_answered({"candidate_status": 429}, "candidate") is False
    assert view.side_answered({"candidate_error": "timeout"}, "candidate") is False
    assert view.side_error({"candidate_status": 503}, "candidate")
    assert not view.side_error({"candidate_status": 429}, "candidate")  # the request's fault, not an outage
    assert view.side_answered({}, "secondary") is None


MIXED = [
    # (prompt, baseline answer): the prompt decides; a prompt without letters defers to the answer.
    ("用 pandas 读取 CSV 文件", "You can use pandas.read_csv."),
    ("How do I read a CSV file?", "可以使用 pandas 的 read_csv 函数。"),
    ("1234 + 5678 = ?", "答案是 6912。"),
    ("???", "The answer is yes."),
    ("Explain this error: " + "x" * 400 + " 为什么会出错", "这是因为编码不对。"),
    ("请解释：" + "为什么" * 150 + " in English please", "Because of the encoding."),
    ("Привет, как дела?", "Хорошо."),
    ("", ""),
]


@pytest.mark.parametrize("copies", [7])
def test_gate_report_and_export_agree_on_the_language_of_every_pair(copies):
    records = []
    for n in range(copies):
        for i, (prompt, answer) in enumerate(MIXED):
            records.append(
                {
                    "id": f"01MIX{n:03d}{i:018d}",
                    "experiment": "mixed",
                    "prompt": prompt,
                    "baseline": answer,
                    "candidate": answer,
                    "baseline_status": 200,
                    "candidate_status": 200,
                }
            )
    by_gate = {lang: len(select_pairs(records, segment={"lang": lang})) for lang in ("zh", "en", "other")}
    assert sum(by_gate.values()) == len(records)
    report = build_report(records, evaluate_gate(records))
    by_report = {row["value"]: row["n"] for row in report["segments"] if row["dimension"] == "language"}
    by_export = Counter(scores_frame(records)["language"])
    assert by_report == {lang: n for lang, n in by_gate.items() if n} == dict(by_export)
    # The first 300 characters of the prompt decide: a long English lead-in makes the pair English.
    assert by_gate == {"zh": 3 * copies, "en": 3 * copies, "other": 2 * copies}


def test_agent_segments_are_derived_for_every_pair():
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    records = [
        {"route": "chat", "request": {"tools": tools, "messages": [{"role": "user", "content": "hi"}]}},
        {
            "route": "chat",
            "request": {
                "tools": tools,
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "tool_calls": [{"id": "1", "function": {"name": "f"}}]},
                    {"role": "tool", "tool_call_id": "1", "content": "ok"},
                ],
            },
        },
        {"route": "responses", "request": {"input": "hello"}},
        {"route": "completions", "request": {"prompt": "x"}},
    ]
    for record in records:
        record.update(experiment="e", baseline="a", candidate="a")
    assert len(select_pairs(records, segment={"tools": "yes"})) == 2
    assert len(select_pairs(records, segment={"after_tool": "yes"})) == 1
    assert len(select_pairs(records, segment={"route": "responses"})) == 1
    assert len(select_pairs(records, segment={"route": "chat", "tools": "no"})) == 0
    report = build_report(records, evaluate_gate(records))
    dimensions = {row["dimension"] for row in report["segments"]}
    assert {"route", "tools offered", "after tool results"} <= dimensions
