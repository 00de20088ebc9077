"""The report's data model, the flat export table and the HTML rendering, without a browser."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import pandas as pd
import pytest

from reports.build import ReportOptions, build_report
from reports.charts import all_charts
from reports.export_table import ExportError, scores_frame, write_table
from reports.panels import panel_metrics
from reports.render import content_security_policy, json_for_html, render_html, render_report, visible
from reports.table import select_table, text_marks
from tests.test_report_synthetic import gate_for, synthetic_records


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return synthetic_records(300)


@pytest.fixture(scope="module")
def report(records: list[dict]) -> dict:
    return build_report(records, gate_for(records), ReportOptions(table_cap=100))


def test_report_is_strict_json_and_counts_every_pair(records: list[dict], report: dict) -> None:
    json.dumps(report, allow_nan=False)
    counts = report["summary"]["counts"]
    assert counts["pairs"] == 300
    assert counts["candidate_failed"] == sum(1 for r in records if r["candidate_status"] != 200)
    assert counts["with_secondary"] == sum(1 for r in records if "secondary" in r)
    # Statistics use all pairs even though the table holds only 100.
    assert len(report["pairs"]) == 100
    assert report["metrics"]["semantic_divergence"]["candidate"]["n"] == counts["scored"]
    assert report["metrics"]["loop_flag"]["candidate"]["n"] == counts["candidate_ok"]


def test_segments_point_at_long_chinese_answers(report: dict) -> None:
    cross = {r["value"]: r for r in report["segments"] if r["dimension"] == "language × answer length"}
    assert cross["zh · long"]["severity"].get("loop_flag") == "bad"
    assert cross["zh · long"]["severity"].get("coherence_score") == "bad"
    assert not any(v == "bad" for v in cross["en · short"]["severity"].values())
    assert report["hotspots"][0]["value"] == "zh · long"


def test_table_keeps_the_worst_of_each_metric(records: list[dict]) -> None:
    frame = scores_frame(records)
    chosen = select_table(frame, panel_metrics(), 60)
    assert len(chosen) == len(set(chosen)) == 60
    worst_divergence = int(frame["semantic_divergence"].idxmax())
    assert worst_divergence in chosen
    failed = [i for i, ok in enumerate(frame["candidate_ok"]) if ok is False]
    assert set(failed[:6]) <= set(chosen)


def test_marks_locate_loop_and_breaks_in_characters() -> None:
    text = "第一句。第二句！Third one. 第四句？"
    record = {
        "loop": {"candidate": {"score": 0.9, "flag": True, "span": [4, 8]}},
        "coherence": {"candidate": {"applicable": True, "score": 0.4, "breaks": [1, 3, 99]}},
    }
    marks = text_marks(record, "candidate", text)
    assert marks["loop"] == [4, 8]
    assert [text[i] for i in marks["breaks"]] == ["第", "第"]  # sentence 99 does not exist: dropped
    assert text[marks["breaks"][0] : marks["breaks"][0] + 3] == "第二句"
    assert text_marks({}, "baseline", text) == {"loop": None, "breaks": []}


def test_failed_candidate_has_no_scores_but_counts(records: list[dict]) -> None:
    failed = next(r for r in records if r["candidate"] is None)
    frame = scores_frame([failed])
    assert frame.loc[0, "candidate_ok"] is False or not frame.loc[0, "candidate_ok"]
    assert pd.isna(frame.loc[0, "semantic_divergence"])


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_table_round_trips(records: list[dict], tmp_path: Path, fmt: str) -> None:
    path = write_table(records, tmp_path / f"scores.{fmt}", fmt)
    table = pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path)
    assert len(table) == len(records)
    for column in (
        "id",
        "language",
        "answer_length",
        "semantic_divergence",
        "noise_semantic_divergence",
        "loop_candidate_flag",
        "coherence_candidate_breaks",
        "candidate_latency_ms",
        "segment_tier",
    ):
        assert column in table.columns
    assert table["semantic_divergence"].notna().sum() == sum(1 for r in records if r["semantic"])
    with pytest.raises(ExportError, match="parquet or --format csv"):
        write_table(records, tmp_path / "scores.xlsx")


def test_json_for_html_cannot_close_its_script_block() -> None:
    text = json_for_html({"x": "</script><script>alert(1)</script>&\u2028\u2029"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == {"x": "</script><script>alert(1)</script>&\u2028\u2029"}


def test_visible_escapes_and_shows_bidi_controls() -> None:
    shown = str(visible('<img src=x onerror="a()">\u202egnp.exe'))
    assert "<img" not in shown and "&lt;img" in shown
    assert "\u202e" not in shown and "‹U+202E›" in shown


def test_page_is_self_contained_with_a_strict_policy(records: list[dict], report: dict) -> None:
    html = render_html(report, all_charts(scores_frame(records)))
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "url(http" not in html
    policy = unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1))
    assert (
        "default-src 'none'" in policy
        and "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    )
    script = re.search(r"<script>(.*?)</script>", html, re.DOTALL).group(1)
    assert content_security_policy(script) == policy
    assert not re.search(
        r"\.(inner|outer)HTML\b|insertAdjacentHTML\(|document\.write|\beval\(|new Function", script
    )
    # One chart per report panel (each declared output with a gate check or a severity), latency, TTFT.
    assert html.count("<svg") == len(report["metrics"]) + 2 == 7


def test_render_with_the_real_gate(records: list[dict]) -> None:
    html = render_report(records, gate_for(records))
    assert 'data-testid="verdict"' in html
