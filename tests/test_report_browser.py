"""The report in headless Chromium: it loads offline without errors, the verdict and the worst pairs show,
filters and the pair view work, and hostile prompts, answers and tags run nothing.

Screenshots are kept in artifacts/report/ (gitignored) for people to look at.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reports.render import render_report
from tests.browser import Browser, browser_unavailable_reason, load_time_ms
from tests.test_report_synthetic import gate_for, synthetic_records

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "report"

pytestmark = pytest.mark.skipif(
    browser_unavailable_reason() is not None, reason=str(browser_unavailable_reason())
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = Browser()
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    records = synthetic_records(300)
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(render_report(records, gate_for(records)), encoding="utf-8")
    return path


def _rows(page: Any) -> list[dict[str, str]]:
    return page.evaluate(
        """() => [...document.querySelectorAll('#pairs-body tr')].map(tr => ({
            lang: tr.children[1].textContent, segments: tr.children[3].textContent,
            divergence: tr.children[4].textContent, flags: tr.children[9].textContent}))"""
    )


def test_report_loads_offline_shows_verdict_and_filters(browser: Browser, report_file: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with browser.open_page(report_file) as (page, log):
        timings = load_time_ms(page)
        assert timings["ready"] < 2000, timings
        page.screenshot(path=str(ARTIFACTS / "01-top.png"))
        page.screenshot(path=str(ARTIFACTS / "02-full.png"), full_page=True)

        verdict = page.locator("[data-testid=verdict]")
        assert verdict.is_visible()
        assert verdict.inner_text() in ("PASS", "FAIL", "INCONCLUSIVE")
        assert page.locator(".verdict-reasons li").count() >= 1
        assert (
            page.locator("[data-testid=hotspots] li")
            .first.inner_text()
            .startswith("language × answer length: zh · long")
        )

        rows = _rows(page)
        assert len(rows) == 300
        assert page.locator("#pairs-body tr").first.is_visible()
        worst = float(rows[0]["divergence"]) if rows[0]["divergence"] != "–" else None
        assert worst is None or worst > 0.15  # the default order puts bad pairs first

        page.select_option("#f-language", "en")
        english = _rows(page)
        assert 0 < len(english) < 300 and {r["lang"] for r in english} == {"en"}
        page.select_option("#f-language", "")
        page.select_option("#f-flag", "loop")
        loops = _rows(page)
        assert loops and all("loop" in r["flags"] for r in loops)
        page.select_option("#f-segment", "region=cn")
        assert all("region=cn" in r["segments"] for r in _rows(page))
        page.select_option("#f-flag", "")
        page.select_option("#f-segment", "")
        page.fill("#f-search", "01JSYN00000000000000000007")
        assert len(_rows(page)) == 1
        page.fill("#f-search", "")

        page.click("#pairs-table th[data-key=divergence] button")
        values = [float(r["divergence"]) for r in _rows(page) if r["divergence"] != "–"]
        assert values == sorted(values, reverse=True)
        page.click("#pairs-table th[data-key=divergence] button")
        values = [float(r["divergence"]) for r in _rows(page) if r["divergence"] != "–"]
        assert values == sorted(values)
        page.screenshot(path=str(ARTIFACTS / "03-table-sorted.png"))

        page.select_option("#f-sort", "badness")
        page.select_option("#f-flag", "loop")
        page.select_option("#f-language", "zh")
        page.click("#pairs-body tr:first-child")
        view = page.locator("#pair-view")
        assert view.is_visible()
        assert page.locator("#pv-candidate .loop-span").count() == 1
        assert page.locator("#pv-candidate .brk").count() >= 1
        assert page.locator("#pv-candidate .d-ins").count() >= 1
        assert page.locator("#pv-baseline .d-del").count() >= 1
        page.screenshot(path=str(ARTIFACTS / "04-pair-view.png"))

        assert log.requests == []
        assert log.console_errors == [] and log.page_errors == []
        assert log.dialogs == []


def test_character_diff_handles_chinese_and_astral_characters(browser: Browser, report_file: Path) -> None:
    with browser.open_page(report_file) as (page, _log):
        diff = page.evaluate(
            "([a, b]) => window.shadowReport.characterDiff(a, b)", ["我喜欢猫𠀋。", "我讨厌猫𠀋。"]
        )
        assert diff == [[[1, 3]], [[1, 3]]]
        # Offsets count code points (as Python does), so a supplementary-plane character counts once.
        diff = page.evaluate("([a, b]) => window.shadowReport.characterDiff(a, b)", ["𠀋a", "𠀋b"])
        assert diff == [[[1, 2]], [[1, 2]]]
        diff = page.evaluate(
            "([a, b]) => window.shadowReport.characterDiff(a, b)", ["the quick fox", "the slow fox"]
        )
        assert diff == [[[4, 9]], [[4, 8]]]
        assert page.evaluate("() => window.shadowReport.characterDiff('', 'new')") == [[], [[0, 3]]]


PAYLOADS = [
    "<script>window.__xss='script'</script>",
    "<img src=x onerror=\"window.__xss='img'\">",
    "<a href=\"javascript:window.__xss='link'\">click me</a>",
    "</textarea><script>window.__xss='textarea'</script><textarea>",
    "<svg onload=\"window.__xss='svg'\"><circle r=5></circle></svg>",
    "<iframe srcdoc=\"<script>parent.__xss='srcdoc'</script>\"></iframe>",
    "</script><script>window.__xss='close'</script>",
    '<meta http-equiv=refresh content="0;url=http://example.invalid/">',
    '<img src="http://example.invalid/beacon.png">',
    "<style>body{display:none}</style>",
    "\u202eexe.txt\u202c \u2066isolated\u2069 zero\u200bwidth \u2028line\u2029para",
    "{{ 7*7 }} ${7*7} {% raw %}",
]
BIDI_SAMPLE = "\u202eexe.txt"


def hostile_records() -> list[dict[str, Any]]:
    records = synthetic_records(40, seed=3)
    payload = " ".join(PAYLOADS)
    for i, record in enumerate(records):
        chosen = PAYLOADS[i % len(PAYLOADS)]
        record["prompt"] = f"{chosen} {record['prompt']}"
        record["baseline"] = f"{record['baseline']} {payload}"
        if record["candidate"] is not None:
            record["candidate"] = f"{chosen} {record['candidate']}"
        record["segment"] = {f"tag{chosen}": chosen, "region": record["segment"]["region"]}
        record["candidate_model"] = chosen
        record["experiment"] = "exp " + PAYLOADS[0] + BIDI_SAMPLE
    failed = copy.deepcopy(records[0])
    failed.update(
        id="01JSYNFAILED",
        candidate=None,
        candidate_status=502,
        candidate_error=payload,
        semantic=None,
        length=None,
    )
    records.append(failed)
    return records


def test_hostile_text_is_shown_not_run(browser: Browser, tmp_path: Path) -> None:
    records = hostile_records()
    path = tmp_path / "hostile.html"
    path.write_text(render_report(records, gate_for(records)), encoding="utf-8")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with browser.open_page(path) as (page, log):
        # Open every pair and every segment filter, so each text has been rendered by the script.
        for value in page.evaluate(
            "() => [...document.querySelectorAll('#f-segment option')].map(o => o.value)"
        ):
            page.select_option("#f-segment", value)
        page.select_option("#f-segment", "")
        for index in range(page.locator("#pairs-body tr").count()):
            page.locator("#pairs-body tr").nth(index).click()
        failed_index = page.evaluate(
            """() => [...document.querySelectorAll('#pairs-body tr')]
                       .findIndex(tr => tr.textContent.includes('error'))"""
        )
        assert failed_index >= 0
        page.locator("#pairs-body tr").nth(failed_index).click()
        page.wait_for_timeout(300)
        page.screenshot(path=str(ARTIFACTS / "05-hostile.png"), full_page=True)

        assert page.evaluate("() => window.__xss") is None
        assert log.dialogs == []
        assert log.requests == []
        assert log.page_errors == []
        assert log.console_errors == []  # a blocked script or style would show as a CSP violation here
        dom = page.evaluate(
            """() => ({
              scripts: document.scripts.length,
              iframes: document.querySelectorAll('iframe, frame, object, embed').length,
              imgs: document.querySelectorAll('img').length,
              textareas: document.querySelectorAll('textarea').length,
              metas: document.querySelectorAll('meta[http-equiv=refresh]').length,
              styles: document.querySelectorAll('style').length,
              jsLinks: [...document.querySelectorAll('a[href]')]
                .filter(a => !a.getAttribute('href').startsWith('#')).length,
              handlers: [...document.querySelectorAll('*')]
                .filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
              text: document.body.innerText,
              title: document.title,
            })"""
        )
        assert dom["scripts"] == 2  # the data block and the report's own script
        assert dom["iframes"] == dom["imgs"] == dom["textareas"] == dom["metas"] == 0
        assert dom["styles"] == 1 + 7  # the page's stylesheet and one per chart (5 panels, latency, TTFT)
        assert dom["jsLinks"] == 0 and dom["handlers"] == 0
        assert "<script>window.__xss='script'</script>" in dom["text"]  # shown as text
        assert "<img src=x onerror=" in dom["text"]
        assert "‹U+202E›" in dom["text"] and "\u202e" not in dom["text"] and "\u2066" not in dom["text"]
        assert "\u202e" not in dom["title"]
        assert page.locator("[data-testid=verdict]").is_visible()
