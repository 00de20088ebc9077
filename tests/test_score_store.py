"""Store mode on SQLite: only unscored pairs are scored, a re-run is a no-op, a new evaluator version
re-scores, and `load_scored_pairs` rebuilds exactly what file mode writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import Engine, select

from evaluators.runner import ScoreRunner, score_lines
from evaluators.store_mode import count_unscored, load_scored_pairs, score_pending
from shadow.core.pairs import Pair
from shadow.store.database import insert_pairs, make_engine, upgrade
from shadow.store.models import scores_table
from tests.test_runner import EN, ZH, ZH_LOOP, CharRatio, RepeatedSentence, pair, run_cli

ROOT = Path(__file__).resolve().parent.parent


class CharRatioV2(CharRatio):
    version: ClassVar[str] = "2"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'shadow.db'}"
    upgrade(url)
    return url


@pytest.fixture
def engine(db_url: str) -> Engine:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def sample_pairs(start: int, count: int, experiment: str = "exp") -> list[dict[str, Any]]:
    objs = []
    for index in range(start, start + count):
        kind = index % 4
        if kind == 0:
            obj = pair(f"01HX{index:022d}", ZH, ZH_LOOP)
        elif kind == 1:
            obj = pair(f"01HX{index:022d}", EN, EN + " More.", secondary=EN)
        elif kind == 2:
            obj = pair(f"01HX{index:022d}", ZH, None) | {
                "candidate_error": "timeout",
                "candidate_status": None,
            }
        else:
            obj = pair(f"01HX{index:022d}", EN, ZH, secondary=EN + "!")
        objs.append(obj | {"experiment": experiment})
    return objs


def add_pairs(engine: Engine, objs: list[dict[str, Any]]) -> None:
    with engine.begin() as connection:
        insert_pairs(connection, [Pair.from_json(obj) for obj in objs])


def score_rows(engine: Engine) -> list[tuple[str, str, str]]:
    query = select(scores_table.c.pair_id, scores_table.c.evaluator, scores_table.c.version)
    with engine.connect() as connection:
        return sorted(tuple(row) for row in connection.execute(query))


def test_only_unscored_pairs_are_scored_and_a_rerun_is_a_no_op(engine: Engine) -> None:
    add_pairs(engine, sample_pairs(0, 10))
    runner = ScoreRunner([CharRatio(), RepeatedSentence()])
    assert count_unscored(engine, runner.versions) == 10
    assert score_pending(engine, runner, chunk_size=3) == 10
    assert len(score_rows(engine)) == 20
    assert count_unscored(engine, runner.versions) == 0

    ratio = CharRatio()
    again = ScoreRunner([ratio, RepeatedSentence()])
    assert score_pending(engine, again, chunk_size=3) == 0
    assert ratio.calls == [] and len(score_rows(engine)) == 20

    add_pairs(engine, sample_pairs(10, 5))
    assert score_pending(engine, again, chunk_size=3) == 5
    assert sum(len(call) for call in ratio.calls) <= 5
    assert len(score_rows(engine)) == 30


def test_a_new_evaluator_version_rescores_and_keeps_the_old_rows(engine: Engine) -> None:
    add_pairs(engine, sample_pairs(0, 6))
    score_pending(engine, ScoreRunner([CharRatio(), RepeatedSentence()]))
    repeat = RepeatedSentence()
    assert score_pending(engine, ScoreRunner([CharRatioV2(), repeat])) == 6
    assert repeat.calls == []  # its version did not change: nothing to do for it
    rows = score_rows(engine)
    assert sum(1 for _, name, version in rows if name == "char_ratio" and version == "1") == 6
    assert sum(1 for _, name, version in rows if name == "char_ratio" and version == "2") == 6


def test_an_added_evaluator_scores_only_for_itself(engine: Engine) -> None:
    add_pairs(engine, sample_pairs(0, 4))
    score_pending(engine, ScoreRunner([CharRatio()]))
    ratio, repeat = CharRatio(), RepeatedSentence()
    assert score_pending(engine, ScoreRunner([ratio, repeat])) == 4
    assert ratio.calls == [] and repeat.calls


def test_experiment_filter_pages_by_time_across_chunks(engine: Engine) -> None:
    # Ids and times disagree (a late spool replay), and several pairs share a timestamp.
    a = sample_pairs(0, 7, "a")
    for index, obj in enumerate(a):
        obj["created_at"] = f"2024-05-0{7 - index // 2}T10:00:00.000Z"
    add_pairs(engine, a + sample_pairs(7, 3, "b"))
    ratio = CharRatio()
    runner = ScoreRunner([ratio])
    assert count_unscored(engine, runner.versions, experiment="a") == 7
    assert score_pending(engine, runner, experiment="a", chunk_size=2) == 7
    assert count_unscored(engine, runner.versions, experiment="a") == 0
    assert count_unscored(engine, runner.versions) == 3
    loaded = list(load_scored_pairs(engine, "a", chunk_size=2))
    assert len(loaded) == 7 and all("char_ratio" in p for p in loaded)
    assert [p["created_at"] for p in loaded] == sorted(p["created_at"] for p in loaded)
    assert {p["experiment"] for p in load_scored_pairs(engine, "b")} == {"b"}


def test_load_scored_pairs_rebuilds_the_file_mode_dict(engine: Engine) -> None:
    objs = sample_pairs(0, 9)
    add_pairs(engine, objs)
    runner = ScoreRunner([CharRatio(), RepeatedSentence()])
    score_pending(engine, runner, chunk_size=4)

    # The same pairs as the store exports them, scored in file mode.
    exported = [json.dumps(Pair.from_json(obj).to_json(), ensure_ascii=False) for obj in objs]
    from_file = [json.loads(line) for line in score_lines(exported, runner, chunk_size=4)]
    from_store = list(load_scored_pairs(engine, "exp", chunk_size=4))
    assert from_store == from_file
    failed = next(p for p in from_store if p.get("candidate_error"))
    assert failed["char_ratio"] is None and failed["candidate_error"] == "timeout"
    assert "noise" in from_store[1] and "secondary" in from_store[1]["repeat"]


def test_load_scored_pairs_picks_versions(engine: Engine) -> None:
    add_pairs(engine, sample_pairs(1, 1))
    score_pending(engine, ScoreRunner([CharRatio()]))
    score_pending(engine, ScoreRunner([CharRatioV2()]))
    (newest,) = load_scored_pairs(engine)
    assert newest["scored_by"] == {"char_ratio": "2"}
    (pinned,) = load_scored_pairs(engine, versions={"char_ratio": "1"})
    assert pinned["scored_by"] == {"char_ratio": "1"} and "noise" in pinned
    (unscored,) = load_scored_pairs(engine, versions={})
    assert "scored_by" not in unscored and "char_ratio" not in unscored


FAKES = "tests.test_runner:CharRatio,tests.test_runner:RepeatedSentence"


def test_cli_store_mode_and_rerun(engine: Engine, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    add_pairs(engine, sample_pairs(0, 5))
    assert run_cli("--db", db_url, "--evaluators", FAKES, "--experiment", "exp") == 0
    assert "scored 5 pairs" in capsys.readouterr().err
    assert run_cli("--db", db_url, "--evaluators", FAKES) == 0
    assert "scored 0 pairs" in capsys.readouterr().err
    assert len(score_rows(engine)) == 10


def test_cli_store_mode_on_an_unmigrated_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.db"
    assert run_cli("--db", f"sqlite:///{missing}", "--evaluators", FAKES) == 3  # ExitCode.COULD_NOT_RUN
    assert "there is no database at" in capsys.readouterr().err
    assert not missing.exists()  # reading a store never creates an empty one
    (tmp_path / "empty.db").touch()
    assert run_cli("--db", f"sqlite:///{tmp_path / 'empty.db'}", "--evaluators", FAKES) == 3
    err = capsys.readouterr().err
    assert "never been migrated" in err and "shadow db upgrade --db sqlite:///" in err


def test_follow_scores_new_pairs_and_stops_cleanly_on_sigterm(engine: Engine, db_url: str) -> None:
    add_pairs(engine, sample_pairs(0, 3))
    code = (
        "import argparse, sys\n"
        "from shadow import score_command\n"
        "parser = argparse.ArgumentParser()\n"
        "score_command.add_arguments(parser)\n"
        "sys.exit(score_command.run(parser.parse_args(sys.argv[1:])))\n"
    )
    argv = ["--db", db_url, "--evaluators", FAKES, "--follow", "--interval", "0.1"]
    process = subprocess.Popen(
        [sys.executable, "-c", code, *argv], cwd=ROOT, stderr=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        _wait_for(lambda: len(score_rows(engine)) == 6)
        add_pairs(engine, sample_pairs(3, 2))
        _wait_for(lambda: len(score_rows(engine)) == 10)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "scored 5 pairs" in err


def _wait_for(condition: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)
