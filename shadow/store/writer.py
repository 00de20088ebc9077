"""PairWriter: stores finished pairs off the request path, and never loses one the database cannot take.

`submit()` only appends to an in-memory buffer. A background task writes the buffer in batches every
`store_flush_interval_s` (sooner once `store_batch_size` pairs wait), in a thread, with plain SQLAlchemy.
While the database is unavailable each batch goes to the spool (`shadow.store.spool`), fsynced; the task
keeps probing the database with a capped backoff and, once it answers, replays the spool into it. Inserts
skip ids already stored, so a batch whose commit may or may not have landed can be replayed safely.

Loss bound:
- `close()` (SIGTERM, a normal shutdown): nothing is lost. What the database does not take within the
  timeout is spooled and fsynced, and the next writer's `start()` replays it.
- A hard crash (kill -9, OOM, power loss): the pairs still in memory are lost, i.e. those submitted in the
  last `store_flush_interval_s`, plus those submitted during a write still in progress (a slow database
  delays the flush; a reachable-but-silent PostgreSQL host can hold one for the connect timeout). Pairs
  already spooled are not lost; a line torn by the crash is set aside, not read as a pair.
- A pair the database refuses as such (a value too long for its column) is written to `<spool>.rejected`
  with an error in the log, instead of blocking the batches behind it.

Logs never contain pair contents or headers: only counts, ids, paths and the first line of a database
error (engines are made with `hide_parameters`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine, select

from shadow.pairs import Pair
from shadow.settings import Settings
from shadow.store.database import describe_error, insert_pairs, is_unavailable_error, make_engine
from shadow.store.models import pairs_table
from shadow.store.spool import Spool, SpoolReplay

log = logging.getLogger(__name__)

MIN_RETRY_DELAY_S = 0.25
MAX_RETRY_DELAY_S = 5.0
"""Backoff between database probes while it is unavailable; capped so recovery is noticed within seconds."""

REPLAY_BATCHES_PER_TICK = 8
"""Spool batches replayed between two flushes, so a long replay does not hold fresh pairs in memory."""

DEFAULT_CLOSE_TIMEOUT_S = 10.0


@dataclass(slots=True)
class _WriteResult:
    written: int = 0
    rejected: int = 0
    leftover: list[Pair] = field(default_factory=list)  # not written because the database went away
    error: BaseException | None = None


class PairWriter:
    def __init__(self, settings: Settings, *, engine: Engine | None = None) -> None:
        self._db_url = settings.db
        self._batch_size = settings.store_batch_size
        self._flush_interval_s = max(settings.store_flush_interval_s, 0.01)
        self._engine = engine
        self._owns_engine = engine is None
        self._spool = Spool(settings.resolved_spool_path)
        self._buffer: deque[Pair] = deque()
        self._in_flight: list[Pair] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._replay: SpoolReplay | None = None
        self._closing = False
        self._closed = False
        self._db_available = True
        self._retry_delay_s = 0.0
        self._next_probe_at = 0.0
        self.written_total = 0
        """Pairs written to the database from memory (not counting replays)."""
        self.spooled_total = 0
        self.replayed_total = 0
        """Spooled pairs handed to the database again (a replay interrupted and restarted counts twice)."""
        self.rejected_total = 0

    # --- the API the proxy uses ------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Pairs in memory, not yet in the database or the spool."""
        return len(self._buffer) + len(self._in_flight)

    @property
    def db_available(self) -> bool:
        return self._db_available

    @property
    def spool_path(self) -> str:
        return str(self._spool.path)

    async def start(self) -> None:
        """Start the background flushes; a spool left by an earlier run is replayed once the database answers.

        The schema must exist (`shadow.store.database.upgrade`); until it does, pairs wait in the spool."""
        if self._task is not None:
            raise RuntimeError("PairWriter.start() was already called")
        if self._engine is None:
            self._engine = make_engine(self._db_url)
        self._task = asyncio.create_task(self._run(), name="pair-writer")

    def submit(self, pair: Pair) -> None:
        """Queue a finished pair. Never blocks the event loop and never raises."""
        try:
            if self._closed:
                self._spool_after_close(pair)
                return
            self._buffer.append(pair)
            if len(self._buffer) >= self._batch_size:
                self._wakeup.set()
        except Exception:  # the request path must not fail because storing did
            log.exception("pair writer: could not queue pair %s", pair.id)

    async def close(self, timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S) -> None:
        """Write everything still in memory; what the database does not take within `timeout_s` is spooled."""
        if self._closed:
            return
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=timeout_s)
            if not done:
                log.warning("pair writer: the database did not take the last pairs within %.1fs", timeout_s)
                self._task.cancel()
                await asyncio.wait({self._task})
        if self._replay is not None:
            self._replay.abandon()
            self._replay = None
        leftovers = [*self._in_flight, *self._buffer]
        self._in_flight = []
        self._buffer.clear()
        self._closed = True  # from here on, submit() spools directly
        if leftovers:
            try:
                await asyncio.to_thread(self._spool.append, leftovers)
                self.spooled_total += len(leftovers)
                log.info("pair writer: spooled %d pairs to %s on close", len(leftovers), self._spool.path)
            except OSError as exc:
                log.error(
                    "pair writer: LOST %d pairs: cannot write the spool %s (%s)",
                    len(leftovers),
                    self._spool.path,
                    exc.strerror,
                )
        if self._owns_engine and self._engine is not None:
            self._engine.dispose()

    # --- the background task ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            final = self._closing
            try:
                await self._tick(final=final)
            except Exception:
                log.exception("pair writer: unexpected error; will retry")
                if self._in_flight:  # put the batch back so the next tick (or close) still has it
                    self._buffer.extendleft(reversed(self._in_flight))
                    self._in_flight = []
            if final:
                return
            await self._wait_for_work()

    async def _wait_for_work(self) -> None:
        self._wakeup.clear()
        if len(self._buffer) >= self._batch_size or self._closing:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout=self._flush_interval_s)

    async def _tick(self, *, final: bool) -> None:
        if not self._db_available and (final or time.monotonic() >= self._next_probe_at):
            await self._probe()
        while self._buffer:
            batch = [self._buffer.popleft() for _ in range(min(self._batch_size, len(self._buffer)))]
            self._in_flight = batch
            not_stored = await self._store(batch)
            self._in_flight = []
            if not_stored:  # neither the database nor the spool: keep them for the next tick or close
                self._buffer.extendleft(reversed(not_stored))
                return
        if self._db_available:
            await self._replay_spool(max_batches=None if final else REPLAY_BATCHES_PER_TICK)

    async def _store(self, batch: list[Pair]) -> list[Pair]:
        """Database first, spool second; returns the pairs neither took (none, unless the disk fails too)."""
        if self._db_available:
            result = await asyncio.to_thread(self._write, batch)
            self._account(result)
            self.written_total += result.written
            if not result.leftover:
                return []
            batch = result.leftover
        try:
            await asyncio.to_thread(self._spool.append, batch)
        except OSError as exc:
            log.error(
                "pair writer: cannot write the spool %s (%s); keeping %d pairs in memory",
                self._spool.path,
                exc.strerror,
                len(batch),
            )
            return batch
        self.spooled_total += len(batch)
        return []

    async def _probe(self) -> None:
        try:
            await asyncio.to_thread(self._check_database)
        except Exception as exc:
            self._mark_unavailable(exc)
        else:
            self._mark_available()

    async def _replay_spool(self, *, max_batches: int | None) -> None:
        replayed_batches = 0
        while max_batches is None or replayed_batches < max_batches:
            if self._replay is None:
                self._replay = await asyncio.to_thread(self._spool.start_replay)
                if self._replay is None:
                    return
                log.info("pair writer: replaying spooled pairs from %s", self._spool.replaying_path)
            batch = await asyncio.to_thread(self._replay.next_batch, self._batch_size)
            if not batch:
                await asyncio.to_thread(self._replay.finish)
                self._replay = None
                log.info("pair writer: spool replayed (%d pairs so far)", self.replayed_total)
                continue
            result = await asyncio.to_thread(self._write, batch)
            self._account(result)
            self.replayed_total += result.written
            if result.leftover:  # still in the .replaying file: the next replay starts it over
                self._replay.abandon()
                self._replay = None
                return
            replayed_batches += 1

    def _account(self, result: _WriteResult) -> None:
        self.rejected_total += result.rejected
        if result.leftover:
            self._mark_unavailable(result.error)
        elif result.written:
            self._mark_available()

    def _mark_unavailable(self, error: BaseException | None) -> None:
        self._retry_delay_s = min(max(self._retry_delay_s * 2, MIN_RETRY_DELAY_S), MAX_RETRY_DELAY_S)
        self._next_probe_at = time.monotonic() + self._retry_delay_s
        if self._db_available:
            reason = describe_error(error) if error is not None else "unknown error"
            log.warning(
                "pair writer: database unavailable (%s); spooling pairs to %s until it answers",
                reason,
                self._spool.path,
            )
        self._db_available = False

    def _mark_available(self) -> None:
        if not self._db_available:
            log.info("pair writer: database reachable again")
        self._db_available = True
        self._retry_delay_s = 0.0

    # --- blocking work, run in a thread ----------------------------------------------------------------

    def _check_database(self) -> None:
        assert self._engine is not None
        with self._engine.connect() as connection:
            connection.execute(select(pairs_table.c.id).limit(0))

    def _write(self, batch: Sequence[Pair]) -> _WriteResult:
        assert self._engine is not None
        try:
            with self._engine.begin() as connection:
                insert_pairs(connection, batch)
        except Exception as exc:
            if is_unavailable_error(exc):
                return _WriteResult(leftover=list(batch), error=exc)
            log.warning(
                "pair writer: the database refused a batch of %d (%s); writing its pairs one by one",
                len(batch),
                describe_error(exc),
            )
            return self._write_one_by_one(batch)
        return _WriteResult(written=len(batch))

    def _write_one_by_one(self, batch: Sequence[Pair]) -> _WriteResult:
        """Isolate the pair the database refuses, so one bad value does not hold back the others."""
        assert self._engine is not None
        result = _WriteResult()
        for index, pair in enumerate(batch):
            try:
                with self._engine.begin() as connection:
                    insert_pairs(connection, [pair])
            except Exception as exc:
                if is_unavailable_error(exc):
                    result.leftover = list(batch[index:])
                    result.error = exc
                    return result
                log.error(
                    "pair writer: pair %s cannot be stored (%s); kept in %s",
                    pair.id,
                    describe_error(exc),
                    self._spool.rejected_path,
                )
                self._spool.reject_pair(pair)
                result.rejected += 1
            else:
                result.written += 1
        return result

    def _spool_after_close(self, pair: Pair) -> None:
        # Late pairs (a mirror that finished after shutdown began) still must not be lost. A small
        # synchronous append is acceptable on this rare path; the next start replays it.
        log.warning("pair writer: pair %s submitted after close; spooling it", pair.id)
        self._spool.append([pair])
        self.spooled_total += 1
