"""Files written before the layered packages (commit e9968e2) still import, score, gate and report.

`tests/data/pairs_before_layers.jsonl` was written by that version's `Pair.to_json`, and
`scores_before_layers.jsonl` by its `shadow score --evaluators length,loop`; `gate_before_layers.json` is
that version's gate on those scores. Today's code must read both files and judge them the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shadow.cli import main

DATA = Path(__file__).parent / "data"


def test_old_scores_are_judged_as_before(capsys):
    before = json.loads((DATA / "gate_before_layers.json").read_text())
    main(["gate", "--input", str(DATA / "scores_before_layers.jsonl"), "--json"])
    gate = json.loads(capsys.readouterr().out)
    assert gate["verdict"] == before["verdict"]
    now = {c["name"]: [c["verdict"], c["effect_size"], c["p_value"]] for c in gate["checks"]}
    assert set(now) == set(before["checks"])
    for name, (verdict, effect, p_value) in before["checks"].items():
        assert now[name][0] == verdict, name
        assert now[name][1] == pytest.approx(effect), name
        assert now[name][2] == pytest.approx(p_value), name


def test_old_pairs_import_score_gate_and_report(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    assert main(["import", "--db", db, str(DATA / "pairs_before_layers.jsonl")]) == 0
    assert main(["score", "--db", db, "--evaluators", "length,loop"]) == 0
    capsys.readouterr()
    main(["gate", "--db", db, "--experiment", "legacy", "--json"])
    gate = json.loads(capsys.readouterr().out)
    assert gate["n_pairs"] == 120
    assert {c["name"]: c["verdict"] for c in gate["checks"]}["length_ratio"] == "pass"
    page = tmp_path / "report.html"
    assert main(["report", "--db", db, "--experiment", "legacy", "--output", str(page)]) == 0
    assert "legacy" in page.read_text(encoding="utf-8")
    exported = tmp_path / "pairs.jsonl"
    assert main(["export", "--db", db, "--output", str(exported)]) == 0
    lines = exported.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 120
    old = {json.loads(line)["id"]: json.loads(line) for line in (DATA / "pairs_before_layers.jsonl").open()}
    for line in lines:  # the JSONL format round-trips: every field of the old file comes back as it was
        pair = json.loads(line)
        assert {k: v for k, v in pair.items() if k in old[pair["id"]]} == old[pair["id"]]
