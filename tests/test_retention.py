"""`shadow db prune`: old pairs and their scores go, recent ones stay."""

from __future__ import annotations

from datetime import timedelta

from shadow.cli import main
from shadow.core.pairs import Pair, SideOutput, utc_now
from shadow.store.database import count_pairs, insert_pairs, make_engine, store_scores, upgrade


def test_prune_deletes_old_pairs_with_their_scores(tmp_path, capsys):
    db = f"sqlite:///{tmp_path}/p.db"
    upgrade(db)
    engine = make_engine(db)
    now = utc_now()
    pairs = [
        Pair(experiment="e" if i % 2 else "f", request={}, prompt="p", baseline=SideOutput(text="x", status=200),
             created_at=now - timedelta(days=i * 10))
        for i in range(6)
    ]  # fmt: skip  # 0, 10, 20, 30, 40, 50 days old
    with engine.begin() as connection:
        insert_pairs(connection, pairs)
    store_scores(
        engine, [{"pair_id": p.id, "evaluator": "length", "version": "1", "result": {}} for p in pairs]
    )

    assert main(["db", "prune", "--older-than", "25d", "--db", db, "--dry-run"]) == 0
    assert "would delete 3 pairs" in capsys.readouterr().out
    assert count_pairs(engine) == 6
    assert main(["db", "prune", "--older-than", "25d", "--experiment", "e", "--db", db]) == 0
    assert "deleted 2 pairs" in capsys.readouterr().out  # 30 and 50 days old in experiment e
    assert main(["db", "prune", "--older-than", "25d", "--db", db]) == 0
    assert "deleted 1 pairs" in capsys.readouterr().out
    assert count_pairs(engine) == 3
    with engine.connect() as connection:
        from sqlalchemy import text

        assert connection.execute(text("SELECT count(*) FROM scores")).scalar_one() == 3
    assert main(["db", "prune", "--older-than", "soon", "--db", db]) == 4  # ExitCode.USAGE
    assert "not a duration" in capsys.readouterr().err
    engine.dispose()
