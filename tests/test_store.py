"""The pair store: row conversion, the writer on SQLite and PostgreSQL, the spool, and recovery after an
outage or a restart. No pair may be lost or stored twice."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, select, text

from shadow.core.pairs import Pair, SideOutput
from shadow.core.settings import Settings
from shadow.store import PairWriter, make_engine, pair_to_row, row_to_pair, upgrade
from shadow.store.database import count_pairs, scored_pair_ids, store_scores
from shadow.store.models import pairs_table, scores_table
from shadow.store.spool import Spool
from tests.fixtures_postgres import PostgresServer


def sample_pair(index: int, *, experiment: str = "exp-a", with_candidate: bool = True) -> Pair:
    started = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC) + timedelta(seconds=index)
    return Pair(
        experiment=experiment,
        request={"model": "primary", "messages": [{"role": "user", "content": f"你好，第{index}个问题"}]},
        prompt=f"你好，第{index}个问题",
        stream=index % 2 == 0,
        baseline=SideOutput(
            text=f"答案 {index}",
            status=200,
            latency_ms=120.5 + index,
            ttft_ms=30.25,
            finish_reason="stop",
            usage={"prompt_tokens": 12, "completion_tokens": 7},
            model="primary-1",
            started_at=started,
        ),
        candidate=SideOutput(text=f"回答 {index}", status=200, latency_ms=99.0, started_at=started)
        if with_candidate
        else None,
        user_key_hash="ab" * 32,
        user_bucket=index % 100,
        segment={"region": "cn"},
        created_at=started,
    )


def sqlite_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "db": f"sqlite:///{tmp_path}/shadow.db",
        "store_batch_size": 8,
        "store_flush_interval_s": 0.05,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def stored_ids(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.scalars(select(pairs_table.c.id)))


def closed_port_url() -> str:
    """A PostgreSQL URL on a loopback port nobody listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql://nobody@127.0.0.1:{port}/nothing"


async def wait_until(condition: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


# --- rows --------------------------------------------------------------------------------------------------


def test_row_conversion_round_trip() -> None:
    pair = sample_pair(1)
    pair.secondary = SideOutput(error="timeout")
    pair.extra = {"score": {"bleu": 0.5}}
    pair.created_at = datetime(2025, 3, 1, 20, 0, tzinfo=timezone(timedelta(hours=8)))
    row = pair_to_row(pair)
    assert row["has_candidate"] and row["has_secondary"]
    assert row["created_at"].utcoffset() == timedelta(0)
    assert row_to_pair(row) == pair

    pair.candidate = None
    row = pair_to_row(pair)
    assert not row["has_candidate"] and row["candidate_text"] is None
    assert row_to_pair(row).candidate is None


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_stored_pair_reads_back_equal(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = (
        f"sqlite:///{tmp_path}/shadow.db" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    )
    upgrade(url)
    engine = make_engine(url)
    pairs = [sample_pair(1), sample_pair(2, with_candidate=False)]
    pairs[0].extra = {"unknown_field": [1, "二"]}
    with engine.begin() as connection:
        connection.execute(pairs_table.insert(), [pair_to_row(p) for p in pairs])
    with engine.connect() as connection:
        rows = connection.execute(select(pairs_table).order_by(pairs_table.c.id)).mappings().all()
    engine.dispose()
    read_back = [row_to_pair(row) for row in rows]
    assert sorted(read_back, key=lambda p: p.id) == sorted(pairs, key=lambda p: p.id)
    assert all(p.created_at.tzinfo is not None for p in read_back)


def test_scores_helpers_and_cascade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shadow.db"
    upgrade(url)
    engine = make_engine(url)
    pair = sample_pair(1)
    with engine.begin() as connection:
        connection.execute(pairs_table.insert(), [pair_to_row(pair)])
    row = {"pair_id": pair.id, "evaluator": "exact", "version": "1", "result": {"match": True}}
    store_scores(engine, [row])
    store_scores(engine, [{**row, "result": {"match": False}}])  # already scored: kept as it was
    assert scored_pair_ids(engine, "exact", "1") == {pair.id}
    assert scored_pair_ids(engine, "exact", "2") == set()
    with engine.begin() as connection:
        assert connection.scalar(select(scores_table.c.result)) == {"match": True}
        connection.execute(delete(pairs_table))
        assert connection.scalar(select(scores_table.c.id)) is None  # foreign keys are on in SQLite
    engine.dispose()


# --- the writer on SQLite ----------------------------------------------------------------------------------


def test_sqlite_wal_default_with_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for settings in (Settings(), Settings(db="sqlite:///data/sub/shadow.db")):
        upgrade(settings.db)

        async def write_some(settings: Settings = settings) -> PairWriter:
            writer = PairWriter(settings)
            await writer.start()
            for i in range(5):
                writer.submit(sample_pair(i))
            await writer.close()
            return writer

        writer = asyncio.run(write_some())
        assert writer.written_total == 5 and writer.spooled_total == 0
        database = Path(settings.db.removeprefix("sqlite:///"))
        assert database.exists() and not database.is_absolute()
        engine = make_engine(settings.db)
        with engine.connect() as connection:
            assert connection.scalar(text("PRAGMA journal_mode")) == "wal"
            assert connection.scalar(text("PRAGMA foreign_keys")) == 1
            assert connection.scalar(text("PRAGMA busy_timeout")) > 0
        assert count_pairs(engine) == 5
        engine.dispose()
        assert not settings.resolved_spool_path.exists()


async def test_writer_flushes_a_full_batch_without_waiting(tmp_path: Path) -> None:
    settings = sqlite_settings(tmp_path, store_batch_size=10, store_flush_interval_s=30.0)
    upgrade(settings.db)
    engine = make_engine(settings.db)
    writer = PairWriter(settings, engine=engine)
    await writer.start()
    for i in range(10):
        writer.submit(sample_pair(i))
    await wait_until(lambda: writer.written_total == 10, timeout_s=5)
    writer.submit(sample_pair(10))
    await asyncio.sleep(0.2)
    assert writer.pending == 1  # below the batch size it waits for the interval...
    await writer.close()
    assert writer.pending == 0  # ...or for close
    assert count_pairs(engine) == 11
    engine.dispose()


async def test_submit_is_only_an_append(tmp_path: Path) -> None:
    settings = sqlite_settings(tmp_path, store_flush_interval_s=10.0, store_batch_size=100_000)
    upgrade(settings.db)
    writer = PairWriter(settings)
    await writer.start()
    pairs = [sample_pair(i) for i in range(5000)]
    started = time.perf_counter()
    for pair in pairs:
        writer.submit(pair)
    assert time.perf_counter() - started < 0.5  # an append, not I/O
    assert writer.pending == 5000
    await writer.close()
    engine = make_engine(settings.db)
    assert count_pairs(engine) == 5000
    engine.dispose()


async def test_pair_submitted_after_close_is_spooled(tmp_path: Path) -> None:
    settings = sqlite_settings(tmp_path)
    upgrade(settings.db)
    writer = PairWriter(settings)
    await writer.start()
    await writer.close()
    late = sample_pair(1)
    writer.submit(late)
    assert writer.spooled_total == 1
    assert late.id in settings.resolved_spool_path.read_text(encoding="utf-8")


async def test_unmigrated_database_keeps_pairs_in_the_spool(tmp_path: Path) -> None:
    settings = sqlite_settings(tmp_path)
    writer = PairWriter(settings)
    await writer.start()
    writer.submit(sample_pair(1))
    await writer.close()
    assert writer.spooled_total == 1 and not writer.db_available
    upgrade(settings.db)
    writer = PairWriter(settings)
    await writer.start()
    await writer.close()
    assert writer.replayed_total == 1
    assert not settings.resolved_spool_path.exists()


# --- recovery across writers -------------------------------------------------------------------------------


async def test_next_writer_replays_the_spool_of_the_last(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool_path = tmp_path / "spool" / "pairs.spool"
    down = Settings(db=closed_port_url(), spool_path=str(spool_path), store_flush_interval_s=0.05)
    writer = PairWriter(down)
    await writer.start()
    first = [sample_pair(i) for i in range(40)]
    for pair in first:
        writer.submit(pair)
        await asyncio.sleep(0.001)
    await writer.close()
    assert writer.spooled_total == 40 and writer.written_total == 0 and not writer.db_available
    assert len(spool_path.read_text(encoding="utf-8").splitlines()) == 40

    # A crash in the middle of a later replay left a .replaying file, and one more pair was spooled
    # after it, torn by a crash mid-write.
    spool = Spool(spool_path)
    spool_path.rename(spool.replaying_path)
    second = [sample_pair(100 + i) for i in range(5)]
    spool.append(second)
    with open(spool_path, "ab") as handle:
        handle.write(b'{"id":"01TORN","experiment":"exp-a","basel')

    up = sqlite_settings(tmp_path, spool_path=str(spool_path))
    upgrade(up.db)
    engine = make_engine(up.db)
    writer = PairWriter(up, engine=engine)
    with caplog.at_level(logging.WARNING, logger="shadow.store"):
        await writer.start()
        await wait_until(lambda: writer.replayed_total == 45, timeout_s=10)
        await writer.close()
    assert sorted(stored_ids(engine)) == sorted(p.id for p in first + second)
    assert not spool_path.exists() and not spool.replaying_path.exists()
    assert "torn last line" in caplog.text and "你好" not in caplog.text
    assert spool.rejected_path.read_bytes().startswith(b'{"id":"01TORN"')
    engine.dispose()


def test_append_after_a_torn_line_starts_a_new_line(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "pairs.spool")
    spool.path.write_bytes(b'{"id":"torn')
    spool.append([sample_pair(1)])
    lines = spool.path.read_bytes().split(b"\n")
    assert lines[0] == b'{"id":"torn' and lines[1].startswith(b'{"id":"')


def test_only_one_replay_at_a_time(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "pairs.spool")
    early, late = sample_pair(1), sample_pair(2)
    spool.append([early])
    first = spool.start_replay()
    assert first is not None
    spool.append([late])  # goes to a fresh file, not the one being replayed
    assert Spool(spool.path).start_replay() is None  # another process waits its turn
    assert [p.id for p in first.next_batch(10)] == [early.id]
    first.finish()
    second = spool.start_replay()
    assert second is not None
    assert [p.id for p in second.next_batch(10)] == [late.id]
    second.finish()
    assert not spool.has_pending()


# --- PostgreSQL --------------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_postgres_restart_during_a_stream_loses_nothing(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    upgrade(postgres_url)
    spool_path = tmp_path / "pairs.spool"
    settings = Settings(
        db=postgres_url, spool_path=str(spool_path), store_batch_size=16, store_flush_interval_s=0.1
    )
    writer = PairWriter(settings)
    await writer.start()

    async def restart_server() -> None:
        await asyncio.sleep(1.0)
        await asyncio.to_thread(postgres_server.stop)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(postgres_server.start)

    restart = asyncio.create_task(restart_server())
    submitted = []
    for i in range(300):  # about 3 s of steady traffic
        pair = sample_pair(i)
        submitted.append(pair.id)
        writer.submit(pair)
        await asyncio.sleep(0.01)
    await restart
    await writer.close(timeout_s=60)

    assert writer.spooled_total > 0, "the outage should have sent pairs to the spool"
    assert writer.pending == 0
    engine = make_engine(postgres_url)
    ids = stored_ids(engine)
    engine.dispose()
    assert len(ids) == 300
    assert set(ids) == set(submitted)
    assert not spool_path.exists()
    assert not Spool(spool_path).replaying_path.exists()


async def test_postgres_refused_pair_is_set_aside(postgres_url: str, tmp_path: Path) -> None:
    upgrade(postgres_url)
    settings = Settings(
        db=postgres_url, spool_path=str(tmp_path / "pairs.spool"), store_flush_interval_s=0.05
    )
    writer = PairWriter(settings)
    await writer.start()
    good = [sample_pair(i) for i in range(3)]
    bad = sample_pair(9, experiment="x" * 300)  # longer than the column
    for pair in [good[0], bad, *good[1:]]:
        writer.submit(pair)
    await writer.close()
    engine = make_engine(postgres_url)
    assert sorted(stored_ids(engine)) == sorted(p.id for p in good)
    engine.dispose()
    assert writer.rejected_total == 1 and writer.db_available
    assert bad.id in Spool(tmp_path / "pairs.spool").rejected_path.read_text(encoding="utf-8")
