"""Several `shadow score --db` processes on one experiment compute each score once, on SQLite and on a real
PostgreSQL: they claim their chunks (`shadow.store.claims`), a dead scorer's claims lapse and are taken over,
and a live scorer's claims are renewed however long its chunk takes.

Every test counts what was really computed, not only the rows stored (the unique key would hide double
work): `Counting`, one of the evaluators of each run, appends the id of every pair it scores to a file of its
process, and each process's "scored N pairs" line is summed. The other evaluators are cheap ones, a
pairwise and a per-text one (length, refusal), so that a run is mostly the claiming it tests.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import Engine, func, insert, select

from evaluators.base import Evaluator, ScoringContext, TextPair
from evaluators.runner import ScoreRunner
from evaluators.store_mode import score_pending
from shadow.core.pairs import Pair
from shadow.store.claims import ClaimLease, claim, release_all, scorer_id
from shadow.store.database import insert_pairs, make_engine, upgrade
from shadow.store.models import pairs_table, score_claims_table, scores_table
from tests.test_runner import pair, run_cli

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT = "claims"
EVALUATORS = "length,refusal,tests.test_score_claims:Counting"
NAMES = ("length", "refusal", "counting")
PAIRS = 300
VERSIONS = ScoreRunner.build(["length", "refusal"]).versions | {"counting": "1"}

LOG_DIR = "SHADOW_TEST_SCORED_DIR"
BARRIER = "SHADOW_TEST_BARRIER"  # how many scorers wait for each other before scoring
SLEEP = "SHADOW_TEST_SLEEP_S"  # per batch, so that concurrent scorers overlap
HANG = "SHADOW_TEST_HANG_S"  # once, on the first batch: a scorer stuck (or about to be killed) mid-chunk


class Counting(Evaluator):
    """Pairwise and cheap (the candidate's length); logs each pair it scores, by its prompt (the pair id)."""

    name: ClassVar[str] = "counting"
    version: ClassVar[str] = "1"
    higher_is_better: ClassVar[bool] = False
    primary_metric: ClassVar[str] = "chars"
    pairwise: ClassVar[bool] = True

    def __init__(self) -> None:
        self.log_dir = Path(os.environ[LOG_DIR]) if os.environ.get(LOG_DIR) else None
        self.hung = False
        if self.log_dir is not None and os.environ.get(BARRIER):
            # Built before the run claims anything: every scorer starts scoring at about the same moment.
            (self.log_dir / f"ready-{os.getpid()}").touch()
            deadline = time.monotonic() + 120
            while len(list(self.log_dir.glob("ready-*"))) < int(os.environ[BARRIER]):
                if time.monotonic() > deadline:
                    raise RuntimeError("the other scorers never started")
                time.sleep(0.02)

    def score_pairs(self, pairs: Sequence[TextPair], context: ScoringContext) -> list[dict[str, Any]]:
        if self.log_dir is not None:
            if os.environ.get(HANG) and not self.hung:
                self.hung = True
                (self.log_dir / f"hanging-{os.getpid()}").touch()
                time.sleep(float(os.environ[HANG]))
            time.sleep(float(os.environ.get(SLEEP) or 0))
            with open(self.log_dir / f"scored-{os.getpid()}.txt", "a", encoding="utf-8") as log:
                log.write("".join(f"{p.prompt}\n" for p in pairs))
        return [{"chars": len(p.candidate or "")} for p in pairs]


# --- fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = (
        f"sqlite:///{tmp_path / 'shadow.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    upgrade(url)
    return url


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    engine = make_engine(store_url)
    add_pairs(engine, PAIRS)
    yield engine
    engine.dispose()


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    path = tmp_path / "scored"
    path.mkdir()
    return path


def pair_ids(count: int = PAIRS) -> list[str]:
    return [f"01CLAIM{index:019d}" for index in range(count)]


def add_pairs(engine: Engine, count: int) -> None:
    objs = []
    for index, pair_id in enumerate(pair_ids(count)):
        # Every pair's texts differ, so no two are scored as one; the prompt names the pair for `Counting`.
        baseline = f"Answer number {index}. It explains the thing in a sentence or two."
        obj = pair(pair_id, baseline, f"{baseline} And adds a little more, {index}.")
        objs.append(obj | {"experiment": EXPERIMENT, "prompt": pair_id})
    with engine.begin() as connection:
        insert_pairs(connection, [Pair.from_json(obj) for obj in objs])


def start_scorer(url: str, log_dir: Path, *flags: str, **env: str) -> subprocess.Popen[str]:
    argv = ["score", "--db", url, "--experiment", EXPERIMENT, "--evaluators", EVALUATORS, *flags]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SHADOW_")}
    environment |= {LOG_DIR: str(log_dir), "SHADOW_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "shadow.cli", *argv],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout_s: float = 120) -> str:
    try:
        _, err = process.communicate(timeout=timeout_s)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    return err


def reported(err: str) -> int:
    (count,) = re.findall(r"shadow score: scored (\d+) pairs", err)
    return int(count)


def computed(log_dir: Path) -> dict[int, Counter[str]]:
    """pid -> how many times that scorer computed each pair."""
    return {
        int(path.stem.removeprefix("scored-")): Counter(path.read_text(encoding="utf-8").split())
        for path in log_dir.glob("scored-*.txt")
    }


def stored(engine: Engine) -> Counter[tuple[str, str]]:
    with engine.connect() as connection:
        rows = connection.execute(select(scores_table.c.pair_id, scores_table.c.evaluator))
        return Counter((pair_id, name) for pair_id, name in rows)


def claims_left(engine: Engine) -> list[tuple[str, str, str]]:
    columns = (score_claims_table.c.pair_id, score_claims_table.c.evaluator, score_claims_table.c.claimed_by)
    with engine.connect() as connection:
        return sorted(tuple(row) for row in connection.execute(select(*columns)))


def add_claims(engine: Engine, ids: Sequence[str], claimant: str, expires_at: datetime) -> None:
    rows = [
        {
            "pair_id": pair_id,
            "evaluator": name,
            "version": version,
            "claimed_by": claimant,
            "claimed_at": expires_at - timedelta(minutes=10),
            "expires_at": expires_at,
        }
        for pair_id in ids
        for name, version in VERSIONS.items()
    ]
    with engine.begin() as connection:
        connection.execute(insert(score_claims_table), rows)


def assert_each_scored_once(engine: Engine, log_dir: Path, ids: Sequence[str]) -> dict[int, Counter[str]]:
    by_scorer = computed(log_dir)
    total = sum(by_scorer.values(), Counter())
    assert set(total) == set(ids), f"{len(set(ids) - set(total))} pairs never scored"
    twice = {pair_id: n for pair_id, n in total.items() if n != 1}
    assert not twice, f"{len(twice)} pairs scored more than once, e.g. {sorted(twice.items())[:3]}"
    rows = stored(engine)
    assert set(rows.values()) == {1} and len(rows) == len(ids) * len(NAMES)
    return by_scorer


def wait_for(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


# --- concurrent scorers ------------------------------------------------------------------------------------


@pytest.mark.timeout(240)
@pytest.mark.parametrize("scorers", [2, 3])
def test_concurrent_scorers_compute_each_pair_once(
    engine: Engine, store_url: str, log_dir: Path, scorers: int
) -> None:
    processes = [
        start_scorer(store_url, log_dir, "--chunk-size", "10", **{BARRIER: str(scorers), SLEEP: "0.1"})
        for _ in range(scorers)
    ]
    errors = [finish(process) for process in processes]

    by_scorer = assert_each_scored_once(engine, log_dir, pair_ids())
    # Each process's own report adds up to the experiment: no pair was counted by two of them.
    assert sum(reported(err) for err in errors) == PAIRS
    assert sorted(reported(err) for err in errors) == sorted(sum(c.values()) for c in by_scorer.values())
    # They really ran side by side (the claims shared the work), and left no claim behind.
    assert len(by_scorer) == scorers and all(by_scorer.values()), {p: c.total() for p, c in by_scorer.items()}
    assert claims_left(engine) == []


# --- lapsed, live and renewed claims -------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_lapsed_claims_are_taken_over_and_live_ones_left_alone(engine: Engine, store_url: str, log_dir: Path):
    ids = pair_ids()
    crashed, live = ids[100:150], ids[200:210]
    add_claims(engine, crashed, "deadhost:4242:0badc0de", datetime(2000, 1, 1, tzinfo=UTC))
    add_claims(engine, live, "otherhost:7:feedbeef", datetime.now(UTC) + timedelta(hours=1))

    err = finish(start_scorer(store_url, log_dir))

    assert "took over 150 lapsed claims of deadhost:4242:0badc0de" in err
    assert reported(err) == PAIRS - len(live)
    done = sum(computed(log_dir).values(), Counter())
    assert set(crashed) <= set(done) and not set(live) & set(done) and set(done.values()) == {1}
    # The live claims are still the other scorer's; nothing of ours is left.
    assert {holder for _, _, holder in claims_left(engine)} == {"otherhost:7:feedbeef"}
    assert len(claims_left(engine)) == len(live) * len(NAMES)


@pytest.mark.timeout(180)
def test_a_killed_scorers_claims_lapse_and_a_follower_takes_them(
    engine: Engine, store_url: str, log_dir: Path
) -> None:
    victim = start_scorer(
        store_url, log_dir, "--chunk-size", "50", "--score-claim-ttl-s", "2", **{HANG: "600"}
    )
    try:
        wait_for(lambda: any(log_dir.glob("hanging-*")))  # mid-chunk: claimed, partly scored, nothing stored
        held = {holder for _, _, holder in claims_left(engine)}
        assert len(held) == 1 and len(claims_left(engine)) == 50 * len(NAMES)
        (holder,) = held
        host, pid, token = holder.split(":")
        assert int(pid) == victim.pid and re.fullmatch(r"[0-9a-f]{8}", token) and host
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=30)

    follower = start_scorer(store_url, log_dir, "--follow", "--interval", "0.3")
    try:
        wait_for(lambda: len(stored(engine)) == PAIRS * len(NAMES), timeout_s=90)
        follower.send_signal(signal.SIGTERM)
        err = finish(follower)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert f"took over 150 lapsed claims of {holder}" in err
    assert reported(err) == PAIRS
    by_scorer = assert_each_scored_once(engine, log_dir, pair_ids())
    assert list(by_scorer) == [follower.pid]  # the killed scorer stored (and logged) nothing
    assert claims_left(engine) == []


@pytest.mark.timeout(180)
def test_a_slow_chunk_keeps_its_claims_past_their_time_to_live(
    engine: Engine, store_url: str, log_dir: Path
) -> None:
    # The slow scorer's chunk takes 8 s, four times its claims' time to live: its renewals keep them.
    slow = start_scorer(store_url, log_dir, "--chunk-size", "50", "--score-claim-ttl-s", "2", **{HANG: "8"})
    try:
        wait_for(lambda: any(log_dir.glob("hanging-*")))
        claimed = {pair_id for pair_id, _, _ in claims_left(engine)}
        time.sleep(2.5)  # past the first expiry
        fast_err = finish(start_scorer(store_url, log_dir, "--score-claim-ttl-s", "2"))
        slow_err = finish(slow)
    finally:
        if slow.poll() is None:
            slow.kill()
    assert "took over" not in fast_err
    assert reported(fast_err) + reported(slow_err) == PAIRS
    by_scorer = assert_each_scored_once(engine, log_dir, pair_ids())
    assert claimed <= set(by_scorer[slow.pid])
    assert claims_left(engine) == []


# --- the claim itself, in process ----------------------------------------------------------------------------


def test_claims_split_by_evaluator_and_never_overlap(engine: Engine) -> None:
    versions = {name: VERSIONS[name] for name in ("length", "refusal")}
    first, second = scorer_id(), scorer_id()
    assert first != second and first.rsplit(":", 2)[1] == str(os.getpid())

    def candidates(now: datetime) -> Any:
        return select(pairs_table.c.id, pairs_table.c.created_at).order_by(pairs_table.c.id).limit(20)

    a = claim(engine, candidates, versions, claimant=first, ttl_s=60)
    b = claim(engine, candidates, versions, claimant=second, ttl_s=60)
    assert len(a.needed) == 20 and all(names == {"length", "refusal"} for names in a.needed.values())
    assert b.needed == {}  # the same candidates: all of them held by the first scorer
    assert claim(engine, candidates, versions, claimant=first, ttl_s=60).needed == a.needed  # its own again

    # A scorer with one more evaluator claims only that one on pairs the first holds.
    more = claim(engine, candidates, versions | {"counting": "1"}, claimant=second, ttl_s=60)
    assert set(more.needed) == set(a.needed) and all(n == {"counting"} for n in more.needed.values())
    assert release_all(engine, first) == 40 and release_all(engine, second) == 20


def test_score_pending_alone_behaves_as_before_and_cleans_up(engine: Engine) -> None:
    runner = ScoreRunner.build(["length"])
    with ClaimLease(engine, ttl_s=5) as lease:
        assert score_pending(engine, runner, experiment=EXPERIMENT, chunk_size=64, lease=lease) == PAIRS
    assert score_pending(engine, runner, chunk_size=64) == 0  # a second pass: nothing left, no lease given
    assert claims_left(engine) == [] and len(stored(engine)) == PAIRS
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(score_claims_table)) == 0


def test_the_claim_time_to_live_setting_is_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'shadow.db'}"
    upgrade(url)
    assert run_cli("--db", url, "--evaluators", "length", "--score-claim-ttl-s", "0.5") == 3
    assert "score_claim_ttl_s must be at least 1 second" in capsys.readouterr().err
    monkeypatch.setenv("SHADOW_SCORE_CLAIM_TTL_S", "nope")
    assert run_cli("--db", url, "--evaluators", "length") != 0
    assert "score_claim_ttl_s" in capsys.readouterr().err
    monkeypatch.setenv("SHADOW_SCORE_CLAIM_TTL_S", "120")
    assert run_cli("--db", url, "--evaluators", "length", "--score-claim-ttl-s", "30") == 0
    assert "scored 0 pairs" in capsys.readouterr().err


# --- the Ray engine ------------------------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_ray_store_mode_claims_like_the_local_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'shadow-eval[ray]')")
    import argparse

    import ray

    from shadow import score_command

    url = f"sqlite:///{tmp_path / 'ray.db'}"
    upgrade(url)
    engine = make_engine(url)
    add_pairs(engine, 60)
    ids = pair_ids(60)
    add_claims(engine, ids[:10], "deadhost:1:00000000", datetime(2000, 1, 1, tzinfo=UTC))
    add_claims(engine, ids[10:20], "otherhost:2:11111111", datetime.now(UTC) + timedelta(hours=1))

    parser = argparse.ArgumentParser()
    score_command.add_arguments(parser)
    args = parser.parse_args(["--db", url, "--evaluators", "length,refusal", "--chunk-size", "8"])
    args.engine, args.ray_workers = "ray", 2
    ray.init(
        num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024 * 1024, logging_level="ERROR"
    )
    try:
        assert score_command.run(args) == 0
    finally:
        ray.shutdown()
    assert "scored 50 pairs" in capsys.readouterr().err
    scored = {pair_id for pair_id, _name in stored(engine)}
    assert scored == set(ids) - set(ids[10:20])
    assert set(stored(engine).values()) == {1} and len(stored(engine)) == 50 * 2
    # Of the claims for length and refusal, only the live foreign ones remain (nobody ran `counting` here).
    left = {holder for _, name, holder in claims_left(engine) if name != "counting"}
    assert left == {"otherhost:2:11111111"}
    engine.dispose()
