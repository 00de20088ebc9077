"""`shadow report` and the export table from the command line's point of view (no browser)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from reports import command
from reports.command import ReportError
from tests.test_report_synthetic import synthetic_records


@pytest.fixture
def scores_file(tmp_path: Path) -> Path:
    path = tmp_path / "scores.jsonl"
    lines = [json.dumps(record, ensure_ascii=False) for record in synthetic_records(120)]
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    return path


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="shadow report")
    command.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_writes_html_and_json(scores_file: Path, tmp_path: Path) -> None:
    html_path = tmp_path / "out" / "report.html"
    assert (
        command.run(parse("--input", str(scores_file), "--output", str(html_path), "--sample-rate", "0.1"))
        == 0
    )
    html = html_path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "10.0% of users mirrored" in html

    json_path = tmp_path / "report.json"
    args = parse(
        "--input", str(scores_file), "--output", str(json_path), "--format", "json", "--max-table-pairs", "20"
    )
    assert command.run(args) == 0
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert data["schema"] == "shadow-report/1"
    assert data["summary"]["counts"]["pairs"] == 120 and len(data["pairs"]) == 20
    assert data["gate"]["verdict"] in ("pass", "fail", "inconclusive")


# A ReportError is a UserError: `shadow.cli.main` prints it as one line (tests/test_error_boundary.py).


def test_experiment_filter_and_empty_result(scores_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    with pytest.raises(ReportError, match="no scored pairs"):
        command.run(parse("--input", str(scores_file), "--experiment", "nope", "--output", str(out)))
    assert not out.exists()


def test_bad_input_line_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"experiment": "e", "baseline": "x"}\n{not json\n', encoding="utf-8")
    with pytest.raises(ReportError, match="line 2: not valid JSON"):
        command.run(parse("--input", str(bad), "--output", str(tmp_path / "r.html")))
    with pytest.raises(ReportError, match="does not exist"):
        command.run(parse("--input", str(tmp_path / "missing.jsonl"), "--output", "x.html"))


def test_db_needs_an_experiment() -> None:
    with pytest.raises(ReportError, match="--db needs --experiment"):
        command.run(parse("--db", "sqlite:///x.db", "--output", "x.html"))


def test_db_source_reads_scored_pairs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import evaluators.store_mode as store_mode

    records = synthetic_records(30)
    seen = {}

    def fake_load(engine, experiment):  # the store itself is tested with the store
        seen["experiment"] = experiment
        return iter(records)

    monkeypatch.setattr(store_mode, "load_scored_pairs", fake_load)
    out = tmp_path / "db.json"
    args = parse(
        "--db",
        f"sqlite:///{tmp_path / 's.db'}",
        "--experiment",
        "exp-zh-long",
        "--output",
        str(out),
        "--format",
        "json",
    )
    assert command.run(args) == 0
    assert seen["experiment"] == "exp-zh-long"
    assert json.loads(out.read_text())["summary"]["counts"]["pairs"] == 30
