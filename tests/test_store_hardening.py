"""Storage that cannot be poisoned, and a store independent of the users: odd text is stored sanitized and
noted, a pair the database refuses never blocks the others, the database may be down at start or its SQLite
file deleted, the spool's disk may fail, and close() keeps its deadline through all of it."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from evaluators.store_mode import load_scored_pairs
from shadow.core import pairs as pairs_module
from shadow.core.pairs import Pair, SideOutput
from shadow.core.settings import Settings
from shadow.core.storable import make_storable, storable_json, storable_text
from shadow.store import (
    PairWriter,
    batch_write,
    export_pairs,
    import_pairs,
    make_engine,
    pair_to_row,
    row_to_pair,
    upgrade,
)
from shadow.store.batch_write import MAX_PAIR_ATTEMPTS, BatchWriter
from shadow.store.database import current_revision
from shadow.store.models import pairs_table
from shadow.store.spool import Spool
from tests.fixtures_postgres import PostgresServer
from tests.test_migrations import HEAD
from tests.test_store import closed_port_url, sample_pair, wait_until

LONE_HIGH = "\ud83d"  # what json.loads makes of "\ud83d" with no low surrogate after it
HEADER_BYTE = b"caf\xff".decode("utf-8", "surrogateescape")  # aiohttp's decoding of a non-UTF-8 header


def settings_for(db: str, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "db": db,
        "spool_path": str(tmp_path / "spool" / "pairs.spool"),
        "store_batch_size": 64,
        "store_flush_interval_s": 0.02,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def stored(engine: Engine) -> dict[str, Pair]:
    with engine.connect() as connection:
        rows = connection.execute(select(pairs_table)).mappings().all()
    return {row["id"]: row_to_pair(row) for row in rows}


def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/pairs.db"
    return str(request.getfixturevalue("postgres_url"))


# --- storable: pure ----------------------------------------------------------------------------------------


def test_storable_text_replaces_each_bad_code_point_and_keeps_clean_text_as_is() -> None:
    clean = "答案 🌏 plain"
    assert storable_text(clean)[0] is clean and storable_text(clean) == (clean, False)
    assert storable_text("ascii")[1] is False
    assert storable_text(f"a{LONE_HIGH}b") == ("a\ufffdb", True)
    assert storable_text(HEADER_BYTE) == ("caf\ufffd", True)
    assert storable_text("nul\x00here\x00") == ("nul\ufffdhere\ufffd", True)
    assert storable_text("\ud83d\ude00")[0] == "\ufffd\ufffd"  # a split pair is two bad code points
    big = "x" * 5_000_000 + "好"
    started = time.perf_counter()
    assert storable_text(big)[0] is big
    assert time.perf_counter() - started < 0.1  # one C-speed check, no per-character Python work


def test_storable_json_walks_keys_values_and_lists() -> None:
    value = {"ok": [1, 2.5, None, True, "好"], "nested": {"k": "v"}}
    assert storable_json(value) == (value, False) and storable_json(value)[0] is value
    dirty = {f"k{LONE_HIGH}": ["a\x00", {"deep": HEADER_BYTE}], "n": float("nan"), "t": (1, 2), "o": object}
    cleaned, changed = storable_json(dirty)
    assert changed
    assert cleaned["k\ufffd"] == ["a\ufffd", {"deep": "caf\ufffd"}]
    assert cleaned["n"] is None and cleaned["t"] == [1, 2] and isinstance(cleaned["o"], str)
    json.dumps(cleaned, ensure_ascii=False, allow_nan=False).encode("utf-8")  # storable everywhere


def test_make_storable_notes_every_field_it_changed() -> None:
    pair = sample_pair(1)
    pair.candidate = SideOutput(text=f"bad {LONE_HIGH}", error="x\x00y", usage={"n": float("inf")})
    pair.segment = {"region": HEADER_BYTE, f"tag{LONE_HIGH}": "v"}
    pair.extra = {"label": "\x00"}
    pair.capture_notes = ["baseline truncated at 4194304 bytes of 10485760"]
    make_storable(pair)
    assert pair.candidate is not None and pair.candidate.text == "bad \ufffd"
    assert pair.segment == {"region": "caf\ufffd", "tag\ufffd": "v"}
    assert pair.capture_notes == [
        "baseline truncated at 4194304 bytes of 10485760",
        "segment: 2 invalid code points replaced with U+FFFD",
        "extra: 1 invalid code point replaced with U+FFFD",
        "candidate.text: 1 invalid code point replaced with U+FFFD",
        "candidate.error: 1 invalid code point replaced with U+FFFD",
        "candidate.usage: 1 non-finite number replaced with null",
    ]
    pairs_module.dumps(pair).encode("utf-8")
    before = list(pair.capture_notes)
    make_storable(pair)  # idempotent: a clean pair gets no new notes
    assert pair.capture_notes == before


def test_capture_notes_in_jsonl_and_old_lines_without_them() -> None:
    pair = sample_pair(1)
    pair.capture_notes = ["candidate truncated"]
    assert pairs_module.loads(pairs_module.dumps(pair)).capture_notes == ["candidate truncated"]
    old = {"experiment": "e", "baseline": "x"}
    assert pairs_module.loads(json.dumps(old)).capture_notes == []
    with pytest.raises(pairs_module.PairFormatError, match="capture_notes"):
        pairs_module.loads(json.dumps({**old, "capture_notes": "not a list"}))


# --- poisoned values through the writer, export and import -------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_poisoned_batch_is_stored_whole_and_exports(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    url = database_url(backend, tmp_path, request)
    upgrade(url)
    batch = [sample_pair(i) for i in range(50)]
    assert batch[25].candidate is not None
    batch[25].candidate.text = f"先说结论{LONE_HIGH}然后"
    batch[30].segment = {"region": HEADER_BYTE}
    batch[40].prompt = "nul\x00inside"  # PostgreSQL refuses NUL in text
    writer = PairWriter(settings_for(url, tmp_path))
    with caplog.at_level(logging.DEBUG, logger="shadow.store"):
        await writer.start()
        for pair in batch:
            writer.submit(pair)
        await writer.close()
    assert writer.written_total == 50 and writer.rejected_total == 0 and writer.spooled_total == 0

    engine = make_engine(url)
    rows = stored(engine)
    assert set(rows) == {p.id for p in batch}
    poisoned = rows[batch[25].id]
    assert poisoned.candidate is not None and poisoned.candidate.text == "先说结论\ufffd然后"
    assert poisoned.capture_notes == ["candidate.text: 1 invalid code point replaced with U+FFFD"]
    assert rows[batch[30].id].segment == {"region": "caf\ufffd"}
    assert rows[batch[30].id].capture_notes == ["segment: 1 invalid code point replaced with U+FFFD"]
    assert rows[batch[40].id].prompt == "nul\ufffdinside"
    assert rows[batch[1].id].capture_notes == []

    out = tmp_path / "export.jsonl"
    assert export_pairs(engine, out) == 50
    lines = out.read_bytes().decode("utf-8").splitlines()  # strict: valid UTF-8 throughout
    assert len(lines) == 50 and all(isinstance(json.loads(line), dict) for line in lines)
    engine.dispose()
    assert "先说结论" not in caplog.text and "caf" not in caplog.text


def test_old_rows_with_lone_surrogates_still_export_and_report(tmp_path: Path) -> None:
    # Rows from before sanitizing: SQLite keeps the JSON escape of a lone surrogate in a JSON column.
    url = f"sqlite:///{tmp_path}/old.db"
    upgrade(url)
    engine = make_engine(url)
    pair = sample_pair(1)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO pairs (id, experiment, created_at, route, stream, request, prompt, segment,"
                " user_cancelled, extra, has_candidate, has_secondary, baseline_text)"
                " VALUES (:id, 'exp-a', '2025-03-01 12:00:00', 'chat', 0, '{}', 'p',"
                " '{\"region\": \"caf\\udcff\"}', 0, '{}', 0, 0, 'ok')"
            ),
            {"id": pair.id},
        )
    out = tmp_path / "export.jsonl"
    assert export_pairs(engine, out, experiment="exp-a") == 1
    exported = json.loads(out.read_bytes().decode("utf-8"))
    assert exported["segment"] == {"region": "caf\ufffd"}
    assert exported["capture_notes"] == ["segment: 1 invalid code point replaced with U+FFFD"]
    records = list(load_scored_pairs(engine, "exp-a"))  # what `shadow report --db` reads
    assert records[0]["segment"] == {"region": "caf\ufffd"}
    json.dumps(records, ensure_ascii=False).encode("utf-8")
    engine.dispose()


def test_import_stores_a_lone_surrogate_line_sanitized_with_a_note(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/pairs.db"
    upgrade(url)
    engine = make_engine(url)
    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"experiment": "imp", "baseline": "a\\ud83d", "segment": {"t": "\\u0000"}}\n', encoding="utf-8"
    )
    report = import_pairs(engine, source)
    assert (report.imported, report.rejected) == (1, ())
    (pair,) = stored(engine).values()
    assert pair.baseline.text == "a\ufffd" and pair.segment == {"t": "\ufffd"}
    assert pair.capture_notes == [
        "segment: 1 invalid code point replaced with U+FFFD",
        "baseline.text: 1 invalid code point replaced with U+FFFD",
    ]
    engine.dispose()


# --- pairs the database refuses ----------------------------------------------------------------------------


async def test_a_pair_that_always_fails_is_set_aside_after_bounded_tries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path}/pairs.db"
    upgrade(url)
    batch = [sample_pair(i) for i in range(20)]
    bad = batch[5]
    tries = {"alone": 0}
    real_insert = batch_write.insert_pairs

    def insert_refusing_bad(connection: Any, to_insert: Any) -> None:
        to_insert = list(to_insert)
        if any(p.id == bad.id for p in to_insert):
            if len(to_insert) == 1:
                tries["alone"] += 1
            raise ValueError("value out of range for this column")  # not an availability problem
        real_insert(connection, to_insert)

    monkeypatch.setattr(batch_write, "insert_pairs", insert_refusing_bad)
    writer = PairWriter(settings_for(url, tmp_path, store_batch_size=8))
    with caplog.at_level(logging.WARNING, logger="shadow.store"):
        await writer.start()
        for pair in batch:
            writer.submit(pair)
        await wait_until(lambda: writer.rejected_total == 1, timeout_s=10)
        await writer.close()
    assert tries["alone"] == MAX_PAIR_ATTEMPTS
    engine = make_engine(url)
    assert set(stored(engine)) == {p.id for p in batch} - {bad.id}
    engine.dispose()
    rejected = Spool(Path(writer.spool_path)).rejected_path.read_text(encoding="utf-8").splitlines()
    assert len(rejected) == 1
    kept = pairs_module.loads(rejected[0])
    assert kept.id == bad.id and kept.capture_notes[-1].startswith(
        "set aside: ValueError: value out of range"
    )
    assert writer.db_available and writer.pending == 0
    assert bad.id in caplog.text and "你好" not in caplog.text


async def test_unsanitized_pair_cannot_wedge_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As before this fix: nothing sanitizes, the insert fails on the lone surrogate, and so would a fallback
    # that writes UTF-8. It is set aside in ASCII escapes and the pairs behind it are stored.
    url = f"sqlite:///{tmp_path}/pairs.db"
    upgrade(url)
    monkeypatch.setattr("shadow.store.writer.make_storable", lambda pair: pair)
    batch = [sample_pair(i) for i in range(10)]
    assert batch[3].candidate is not None
    batch[3].candidate.text = f"x{LONE_HIGH}"
    writer = PairWriter(settings_for(url, tmp_path, store_batch_size=4))
    await writer.start()
    for pair in batch:
        writer.submit(pair)
    await writer.close()
    assert writer.rejected_total == 1 and writer.written_total == 9 and writer.pending == 0
    raw = Spool(Path(writer.spool_path)).rejected_path.read_bytes()
    assert raw.isascii() and batch[3].id.encode() in raw and b"\\ud83d" in raw


async def test_unexpected_errors_do_not_loop_on_the_same_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/pairs.db"
    upgrade(url)
    batch = [sample_pair(i) for i in range(12)]
    bad = batch[2]
    real_write = BatchWriter.write
    calls = {"n": 0}

    def write_or_crash(self: BatchWriter, to_write: Any) -> Any:
        calls["n"] += 1
        if any(p.id == bad.id for p in to_write):
            raise RuntimeError("a bug outside the database code")
        return real_write(self, to_write)

    monkeypatch.setattr(BatchWriter, "write", write_or_crash)
    writer = PairWriter(settings_for(url, tmp_path, store_batch_size=6))
    await writer.start()
    for pair in batch:
        writer.submit(pair)
    await wait_until(lambda: writer.rejected_total == 1, timeout_s=10)
    await writer.close()
    engine = make_engine(url)
    assert set(stored(engine)) == {p.id for p in batch} - {bad.id}  # the innocent ones of its batch too
    engine.dispose()
    assert calls["n"] < 20  # back-off between failures, not a spin


# --- the database unreachable at start ---------------------------------------------------------------------


async def test_sqlite_unreachable_at_start_with_migrate(tmp_path: Path) -> None:
    blocker = tmp_path / "mnt"
    blocker.write_text("not a directory yet")  # the database's directory cannot be created
    db_path = blocker / "data" / "pairs.db"
    url = f"sqlite:///{db_path}"
    writer = PairWriter(settings_for(url, tmp_path), migrate=True)
    started = time.perf_counter()
    await writer.start()
    assert time.perf_counter() - started < 0.1
    batch = [sample_pair(i) for i in range(10)]
    for pair in batch:
        writer.submit(pair)
    await wait_until(lambda: writer.spooled_total == 10, timeout_s=5)
    assert not writer.db_available and writer.health()["db_available"] is False

    blocker.unlink()  # the volume appears
    await wait_until(lambda: writer.replayed_total == 10, timeout_s=15)
    assert writer.db_available
    await writer.close()
    assert current_revision(url) == HEAD
    engine = make_engine(url)
    assert set(stored(engine)) == {p.id for p in batch}
    engine.dispose()


@pytest.mark.timeout(120)
async def test_postgres_down_at_start_with_migrate(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    await asyncio.to_thread(postgres_server.stop)
    writer = PairWriter(settings_for(postgres_url, tmp_path), migrate=True)
    started = time.perf_counter()
    await writer.start()
    assert time.perf_counter() - started < 0.1
    batch = [sample_pair(i) for i in range(10)]
    for pair in batch:
        writer.submit(pair)
    await wait_until(lambda: writer.spooled_total == 10, timeout_s=10)
    assert not writer.db_available
    await asyncio.to_thread(postgres_server.start)
    await wait_until(lambda: writer.replayed_total == 10, timeout_s=30)
    await writer.close()
    assert current_revision(postgres_url) == HEAD
    engine = make_engine(postgres_url)
    assert set(stored(engine)) == {p.id for p in batch}
    engine.dispose()


# --- the SQLite file deleted or replaced -------------------------------------------------------------------


async def stream(writer: PairWriter, count: int, start: int) -> list[str]:
    ids = []
    for i in range(start, start + count):
        pair = sample_pair(i)
        ids.append(pair.id)
        writer.submit(pair)
        await asyncio.sleep(0.005)
    return ids


async def test_sqlite_file_deleted_mid_stream_loses_no_later_pair(tmp_path: Path) -> None:
    db_path = tmp_path / "pairs.db"
    url = f"sqlite:///{db_path}"
    writer = PairWriter(settings_for(url, tmp_path, store_batch_size=8), migrate=True)
    await writer.start()
    await stream(writer, 40, 0)
    await wait_until(lambda: writer.written_total >= 32, timeout_s=5)
    os.remove(db_path)  # `rm pairs.db` while serving; our connections keep the old inode open
    after = await stream(writer, 40, 100)
    await writer.close()

    engine = make_engine(url)
    assert set(after) <= set(stored(engine))
    engine.dispose()
    warnings = writer.health()["warnings"]
    assert len(warnings) == 1
    assert f"the SQLite file {db_path} was deleted at " in warnings[0] and "new file" in warnings[0]
    assert writer.dropped_total == 0


async def test_sqlite_file_replaced_mid_stream(tmp_path: Path) -> None:
    db_path = tmp_path / "pairs.db"
    url = f"sqlite:///{db_path}"
    restored_url = f"sqlite:///{tmp_path}/restored.db"
    upgrade(restored_url)
    restored_engine = make_engine(restored_url)
    old_pair = sample_pair(999)
    with restored_engine.begin() as connection:
        connection.execute(pairs_table.insert(), [pair_to_row(old_pair)])
    restored_engine.dispose()

    writer = PairWriter(settings_for(url, tmp_path, store_batch_size=8), migrate=True)
    await writer.start()
    await stream(writer, 20, 0)
    await wait_until(lambda: writer.written_total >= 16, timeout_s=5)
    os.replace(tmp_path / "restored.db", db_path)  # a restore renames another file over it
    after = await stream(writer, 20, 100)
    await writer.close()
    engine = make_engine(url)
    ids = set(stored(engine))
    engine.dispose()
    assert set(after) <= ids and old_pair.id in ids
    assert "was replaced at" in writer.health()["warnings"][0]


# --- the spool's disk failing ------------------------------------------------------------------------------


async def test_spool_disk_error_backs_off_and_bounds_the_backlog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    appends = {"n": 0}

    def disk_full(self: Spool, batch: Any) -> None:
        appends["n"] += 1
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Spool, "append", disk_full)
    ticks = {"n": 0}
    real_tick = PairWriter._tick

    async def counting_tick(self: PairWriter, *, final: bool) -> None:
        ticks["n"] += 1
        await real_tick(self, final=final)

    monkeypatch.setattr(PairWriter, "_tick", counting_tick)
    writer = PairWriter(
        settings_for(closed_port_url(), tmp_path, store_batch_size=8, store_flush_interval_s=0.01),
        max_backlog=100,
    )
    with caplog.at_level(logging.INFO, logger="shadow.store"):
        await writer.start()
        cpu_before = time.process_time()
        for i in range(300):  # 2 s of traffic, each submit filling a batch
            writer.submit(sample_pair(i))
            await asyncio.sleep(2.0 / 300)
        cpu_used = time.process_time() - cpu_before
        health = writer.health()
        assert writer.pending == 100 and writer.dropped_total == 200
        assert ticks["n"] < 25 and appends["n"] <= 5, (ticks, appends)
        assert cpu_used < 1.0  # the busy loop took a whole core
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) <= 3, [r.getMessage() for r in errors]  # one for the spool, one for the drops

        started = time.perf_counter()
        await writer.close(timeout_s=1.0)  # never raises, keeps its deadline
        assert time.perf_counter() - started < 1.5
    assert health["dropped_total"] == 200 and not health["db_available"]
    assert any("cannot write the spool" in w and "No space left" in w for w in health["warnings"])
    assert writer.dropped_total == 300  # the 100 in memory are lost on close, and said so
    assert "LOST 100 pairs" in caplog.text


# --- close() keeps its deadline ----------------------------------------------------------------------------


async def test_close_keeps_its_deadline_when_the_database_hangs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/pairs.db"
    upgrade(url)
    release = threading.Event()

    def hanging_insert(connection: Any, to_insert: Any) -> None:
        release.wait(30)  # a database that stopped answering; this thread cannot be interrupted

    monkeypatch.setattr(batch_write, "insert_pairs", hanging_insert)
    writer = PairWriter(settings_for(url, tmp_path, store_batch_size=4))
    await writer.start()
    batch = [sample_pair(i) for i in range(10)]
    try:
        for pair in batch:
            writer.submit(pair)
        await asyncio.sleep(0.2)
        started = time.perf_counter()
        await writer.close(timeout_s=1.0)
        assert time.perf_counter() - started < 1.4
    finally:
        release.set()
    assert writer.spooled_total == 10 and writer.pending == 0 and writer.dropped_total == 0
    spooled = Path(writer.spool_path).read_text(encoding="utf-8").splitlines()
    assert {pairs_module.loads(line).id for line in spooled} == {p.id for p in batch}


async def test_close_never_raises_when_nothing_takes_the_pairs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def read_only(self: Spool, batch: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Spool, "append", read_only)
    writer = PairWriter(settings_for(closed_port_url(), tmp_path))
    await writer.start()
    for i in range(5):
        writer.submit(sample_pair(i))
    started = time.perf_counter()
    with caplog.at_level(logging.ERROR, logger="shadow.store"):
        await writer.close(timeout_s=0.5)
        writer.submit(sample_pair(99))  # after close: still never raises
    assert time.perf_counter() - started < 1.0
    assert "LOST 5 pairs" in caplog.text and writer.dropped_total == 6


async def test_health_reports_the_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/pairs.db"
    writer = PairWriter(settings_for(url, tmp_path), migrate=True)
    await writer.start()
    writer.submit(sample_pair(1))
    await wait_until(lambda: writer.written_total == 1)
    assert writer.health() == {
        "db_available": True,
        "pending": 0,
        "written_total": 1,
        "spooled_total": 0,
        "replayed_total": 0,
        "rejected_total": 0,
        "dropped_total": 0,
        "warnings": [],
    }
    await writer.close()
