"""Adding an evaluator is one module plus one registry line: its declared outputs reach every reader.

A toy evaluator (`tests/toy_evaluator.py`) is registered by adding one entry to `EVALUATORS`, nothing
else. Its scores then appear in `shadow score` (file and store), its declared check fails the gate with a
reason that names it, `shadow export --scores` has its columns, and the report shows its panel, its
segment column and its chart.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from evaluators import registry
from shadow.cli import main

PAIRS = 80


@pytest.fixture
def toy_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.EVALUATORS, "toy", "tests.toy_evaluator:ToyEvaluator")  # the one line


def write_pairs(path) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(PAIRS):
            answer = f"The answer to question {i} is short and calm."
            # Half of the candidate's answers shout; the primary's never do.
            candidate = answer + (" Really!!!" if i % 2 else "")
            pair = {
                "id": f"01TOY{i:021d}",
                "experiment": "toy-exp",
                "created_at": (start + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
                "prompt": f"question {i}?",
                "baseline": answer,
                "candidate": candidate,
            }
            handle.write(json.dumps(pair) + "\n")


def test_a_registered_evaluator_reaches_score_gate_export_and_report(toy_registered, tmp_path, capsys):
    pairs, scores = tmp_path / "pairs.jsonl", tmp_path / "scores.jsonl"
    write_pairs(pairs)

    # score (file mode)
    assert main(["score", "--input", str(pairs), "--output", str(scores), "--evaluators", "length,toy"]) == 0
    records = [json.loads(line) for line in scores.read_text().splitlines()]
    assert sum(r["toy"]["candidate"]["shouts"] for r in records) == PAIRS // 2
    assert records[0]["scored_by"]["toy"] == "1"

    # gate: the declared check runs, is critical and names what the candidate does
    capsys.readouterr()
    code = main(["gate", "--input", str(scores), "--json"])
    gate = json.loads(capsys.readouterr().out)
    toy = next(check for check in gate["checks"] if check["name"] == "toy_shouting")
    assert toy["verdict"] == "fail" and toy["critical"], toy
    assert toy["reason"].startswith("Candidate shouts in 50.0 % of answers vs 0.0 % for the primary")
    assert gate["verdict"] == "fail" and "toy_shouting" in gate["reason"] and code == 1

    # store mode: import, score, export the flat table
    db = f"sqlite:///{tmp_path / 'store.db'}"
    assert main(["import", "--db", db, str(pairs)]) == 0
    assert main(["score", "--db", db, "--evaluators", "length,toy"]) == 0
    table_path = tmp_path / "table.csv"
    assert main(["export", "--db", db, "--scores", "--format", "csv", "--output", str(table_path)]) == 0
    table = pd.read_csv(table_path)
    assert {"toy_candidate_shouts", "toy_baseline_shouts", "toy_candidate_exclamation_share"} <= set(table)
    assert table["toy_candidate_shouts"].sum() == PAIRS // 2
    assert not table["toy_baseline_shouts"].any()

    # report, from the store: the panel, the segment column with its colour, the chart
    page, data = tmp_path / "report.html", tmp_path / "report.json"
    assert (
        main(["report", "--db", db, "--experiment", "toy-exp", "--output", str(data), "--format", "json"])
        == 0
    )
    report = json.loads(data.read_text())
    panel = report["metrics"]["toy_shouts"]
    assert panel["label"] == "shouting rate" and panel["candidate"]["rate"] == 0.5
    assert report["thresholds"]["toy_shouts"] == [0.05, 0.1]
    language = next(row for row in report["segments"] if row["dimension"] == "language")
    assert language["severity"]["toy_shouts"] == "bad"
    assert any(check["name"] == "toy_shouting" for check in report["gate"]["checks"])
    assert main(["report", "--db", db, "--experiment", "toy-exp", "--output", str(page)]) == 0
    html = page.read_text()
    assert 'data-metric="toy_shouts"' in html and "Shouting rate" in html
    assert 'aria-label="toy_shouts chart"' in html


def test_a_policy_entry_changes_only_a_default(toy_registered, tmp_path, capsys):
    pairs, scores, policy = tmp_path / "pairs.jsonl", tmp_path / "scores.jsonl", tmp_path / "policy.toml"
    write_pairs(pairs)
    assert main(["score", "--input", str(pairs), "--output", str(scores), "--evaluators", "length,toy"]) == 0
    policy.write_text("[checks.toy_shouting]\nenabled = false\n")
    capsys.readouterr()
    main(["gate", "--input", str(scores), "--policy", str(policy), "--json"])
    gate = json.loads(capsys.readouterr().out)
    assert "toy_shouting" not in {check["name"] for check in gate["checks"]}


def test_without_the_registry_line_nothing_knows_the_toy():
    from evaluators.metrics import declared_metrics
    from shadow.gate.policy import default_checks

    assert "toy_shouting" not in default_checks()
    assert not any(metric.evaluator == "toy" for metric in declared_metrics())
