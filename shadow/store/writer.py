"""PairWriter: stores finished pairs off the request path, and never loses one the database cannot take.

`submit()` makes the pair storable (`shadow.core.storable`) and appends it to an in-memory buffer. A background
task writes the buffer in batches every `store_flush_interval_s` (sooner once `store_batch_size` pairs wait),
each batch on a thread of its own (`shadow.store.batch_write`), with plain SQLAlchemy. While the database is
unavailable each batch goes to the spool (`shadow.store.spool`, kept by `shadow.store.spool_side`),
fsynced; the task keeps probing the database
with a capped backoff (bringing the schema to head first when made with `migrate=True`) and, once it answers,
replays the spool into it. Inserts skip ids already stored, so a batch whose commit may or may not have
landed can be written again safely.

Loss bound:
- `close()` (SIGTERM, a normal shutdown): nothing is lost while the spool's disk works. It returns within its
  timeout whatever the database does (a call hanging in a thread is abandoned, not awaited); what the
  database did not take is spooled, and the next writer's `start()` replays it.
- A hard crash (kill -9, OOM, power loss): the pairs still in memory are lost, i.e. those submitted in the
  last `store_flush_interval_s`, plus those submitted during a write still in progress. Pairs already
  spooled are not lost; a line torn by the crash is set aside, not read as a pair.
- A pair that cannot be written for any reason but an unavailable database is tried `MAX_PAIR_ATTEMPTS`
  times, then set aside in `<spool>.rejected` with its reason; it never holds back the pairs behind it.
- A spool that cannot be written (disk full, read-only): pairs wait in memory, at most `max_backlog`; past
  that new pairs are dropped and counted (`dropped_total`), as are pairs `close()` could not keep anywhere.
- A SQLite file deleted or replaced while serving: noticed before the next write (and after each commit);
  the writer starts a new file at the path, and `health()` says so.

Logs never contain pair contents or headers: only counts, ids, paths and the first line of a database
error (engines are made with `hide_parameters`). Repeated conditions are logged at most every
`REPEAT_LOG_INTERVAL_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

from sqlalchemy import Engine

from shadow.core.pairs import Pair
from shadow.core.settings import Settings
from shadow.core.storable import make_storable
from shadow.store.background import Backoff, Throttle, in_daemon_thread
from shadow.store.batch_write import MAX_PAIR_ATTEMPTS, BatchWriter, WriteResult
from shadow.store.database import describe_error, make_engine
from shadow.store.spool import Spool
from shadow.store.spool_side import SpoolSide

log = logging.getLogger(__name__)

MIN_RETRY_DELAY_S = 0.25
MAX_RETRY_DELAY_S = 5.0
"""Backoff between database probes while it is unavailable; capped so recovery is noticed within seconds."""

MAX_BACKLOG_PAIRS = 50_000
"""Pairs held in memory at most when neither the database nor the spool takes them; newer ones are dropped."""

REPEAT_LOG_INTERVAL_S = 30.0

REPLAY_BATCHES_PER_TICK = 8
"""Spool batches replayed between two flushes, so a long replay does not hold fresh pairs in memory."""

DEFAULT_CLOSE_TIMEOUT_S = 10.0
CLOSE_SPOOL_RESERVE_S = 1.0
"""Part of close()'s timeout kept for spooling what the database did not take."""

MAX_WARNINGS = 20


class PairWriter:
    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        migrate: bool = False,
        max_backlog: int | None = None,
    ) -> None:
        self._db_url = settings.db
        self._batch_size = settings.store_batch_size
        self._flush_interval_s = max(settings.store_flush_interval_s, 0.01)
        self._engine = engine
        self._owns_engine = engine is None
        self._migrate = migrate
        self._max_backlog = MAX_BACKLOG_PAIRS if max_backlog is None else max(max_backlog, 1)
        self._spool = Spool(settings.resolved_spool_path)
        self._batches: BatchWriter | None = None  # made in start(), with the engine
        self._buffer: deque[Pair] = deque()
        self._in_flight: list[Pair] = []
        self._retry: list[Pair] = []
        self._suspects: deque[Pair] = deque()  # from a batch that failed unexpectedly: stored one at a time
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        # None: not known yet. With migrate=True the first tick probes (and migrates) before any write.
        self._db_available: bool | None = None if migrate else True
        self._probe_backoff = Backoff(MIN_RETRY_DELAY_S, MAX_RETRY_DELAY_S)
        self._error_backoff = Backoff(MIN_RETRY_DELAY_S, MAX_RETRY_DELAY_S)  # unexpected errors in a tick
        self._warnings: deque[str] = deque(maxlen=MAX_WARNINGS)
        self._drop_log = Throttle(log, REPEAT_LOG_INTERVAL_S)
        self._error_log = Throttle(log, REPEAT_LOG_INTERVAL_S)
        self._spool_side = SpoolSide(
            self._spool,
            pending=lambda: self.pending,
            failure_log=Throttle(log, REPEAT_LOG_INTERVAL_S),
            drop_log=self._drop_log,
        )
        self._dropped = 0  # lost here (backlog bound, the database writes); the spool side counts its own
        self.written_total = 0
        """Pairs written to the database from memory (not counting replays)."""
        self.rejected_total = 0

    # --- the API the proxy uses ------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Pairs in memory, not yet in the database or the spool."""
        return len(self._buffer) + len(self._in_flight) + len(self._retry) + len(self._suspects)

    @property
    def spooled_total(self) -> int:
        return self._spool_side.spooled_total

    @property
    def replayed_total(self) -> int:
        """Spooled pairs handed to the database again (a replay interrupted and restarted counts twice)."""
        return self._spool_side.replayed_total

    @property
    def dropped_total(self) -> int:
        """Pairs lost: past the backlog bound, or kept by none of the database, the spool, the reject file."""
        return self._dropped + self._spool_side.lost_total

    @property
    def db_available(self) -> bool:
        return self._db_available is True

    @property
    def spool_path(self) -> str:
        return str(self._spool.path)

    def health(self) -> dict[str, Any]:
        """For /healthz: the store's state, and one line per thing an operator should know about."""
        warnings = list(self._warnings)
        if self._spool_side.error is not None:
            warnings.append(self._spool_side.error)
        if self.dropped_total:
            warnings.append(f"{self.dropped_total} pairs were lost since start; the log says why")
        return {
            "db_available": self.db_available,
            "pending": self.pending,
            "written_total": self.written_total,
            "spooled_total": self.spooled_total,
            "replayed_total": self.replayed_total,
            "rejected_total": self.rejected_total,
            "dropped_total": self.dropped_total,
            "warnings": warnings,
        }

    async def start(self) -> None:
        """Start the background flushes and return at once: the database is first touched in the background
        (migrated there with `migrate=True`), and a spool left by an earlier run is replayed once it answers.

        Raises StoreError only for a database URL that cannot work (malformed, unknown driver)."""
        if self._task is not None:
            raise RuntimeError("PairWriter.start() was already called")
        if self._engine is None:
            self._engine = make_engine(self._db_url, create_parent=False)  # no I/O
        else:
            self._db_url = self._engine.url.render_as_string(hide_password=False)
        self._batches = BatchWriter(
            self._engine, self._db_url, self._spool, migrate=self._migrate, warnings=self._warnings
        )
        self._task = asyncio.create_task(self._run(), name="pair-writer")

    def submit(self, pair: Pair) -> None:
        """Queue a finished pair. Never blocks the event loop and never raises."""
        try:
            try:
                make_storable(pair)  # one bad string must not fail a batch, the spool or an export
            except Exception:  # noqa: BLE001 - storing still tries; a pair that fails is set aside
                log.warning("pair writer: could not sanitize pair %s; storing it as it is", pair.id)
            if self._closed:
                self._spool_side.put_after_close(pair)
                return
            if self.pending >= self._max_backlog:
                self._dropped += 1
                self._drop_log.error(
                    "pair writer: LOST pair %s: %d pairs already wait in memory (neither the database nor "
                    "the spool %s takes them); %d lost so far",
                    pair.id,
                    self.pending,
                    self._spool.path,
                    self.dropped_total,
                )
                return
            self._buffer.append(pair)
            if len(self._buffer) >= self._batch_size:
                self._wakeup.set()
        except Exception:  # the request path must not fail because storing did
            log.exception("pair writer: could not queue pair %s", getattr(pair, "id", "?"))

    async def close(self, timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S) -> None:
        """Write everything still in memory; what the database does not take within `timeout_s` is spooled.
        Returns within `timeout_s` (plus a fraction of a second) and never raises."""
        if self._closed:
            return
        try:
            await self._close(max(timeout_s, 0.0))
        except Exception as exc:  # noqa: BLE001 - shutdown goes on whatever the store does
            log.error("pair writer: closing failed (%s)", describe_error(exc))
            self._closed = True

    # --- the background task ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            final = self._closing
            try:
                await self._tick(final=final)
            except Exception as exc:
                await self._tick_failed(exc)
            else:
                self._error_backoff.succeeded()
            if final:
                return
            await self._wait_for_work()

    async def _wait_for_work(self) -> None:
        deadline = time.monotonic() + self._flush_interval_s
        while not self._closing:
            self._wakeup.clear()
            now = time.monotonic()
            held_until = self._held_until(now)
            if now >= held_until and (now >= deadline or len(self._buffer) >= self._batch_size):
                return
            # While nothing can take pairs, a submit filling a batch must not wake the loop: that spun a
            # core (and logged hundreds of lines a second) when the spool's disk was full.
            timeout = held_until - now if now < held_until else deadline - now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=max(timeout, 0.001))

    def _held_until(self, now: float) -> float:
        """Before this moment no store attempt can succeed: after an unexpected error, or while the database
        is unavailable and the spool in its backoff (until the earlier of the next probe and spool try)."""
        held = self._error_backoff.next_at
        if self._db_available is not True and self._spool_side.waiting(now):
            held = max(held, min(self._probe_backoff.next_at, self._spool_side.backoff.next_at))
        return held

    async def _tick(self, *, final: bool) -> None:
        if self._db_available is not True and (final or not self._probe_backoff.waiting(time.monotonic())):
            await self._probe()
        # Refused pairs are tried again one tick later; on close, until each is stored or set aside.
        for _ in range(MAX_PAIR_ATTEMPTS if final else 1):
            self._buffer.extend(self._retry)
            self._retry = []
            if not await self._drain_buffer() or not (final and self._retry):
                break
        if self._db_available:
            await self._spool_side.replay(
                self._require_batches().write,
                self._account,
                batch_size=self._batch_size,
                max_batches=None if final else REPLAY_BATCHES_PER_TICK,
            )

    async def _drain_buffer(self) -> bool:
        """Store the buffer batch by batch; False when a batch could go nowhere (it is kept in memory).
        Suspects (see `_tick_failed`) go first, one per batch."""
        while self._suspects or self._buffer:
            source = self._suspects if self._suspects else self._buffer
            size = 1 if source is self._suspects else min(self._batch_size, len(source))
            batch = [source.popleft() for _ in range(size)]
            self._in_flight = batch
            not_stored = await self._store(batch)
            self._in_flight = []
            if not_stored:
                source.extendleft(reversed(not_stored))
                return False
        return True

    async def _store(self, batch: list[Pair]) -> list[Pair]:
        """Database first, spool second; returns the pairs neither took (none, unless the disk fails too)."""
        if self._db_available:
            result = await in_daemon_thread(self._require_batches().write, batch)
            self._account(result)
            self.written_total += result.written
            if not result.leftover:
                return []
            batch = result.leftover
        return await self._spool_side.put(batch)

    async def _tick_failed(self, exc: Exception) -> None:
        """A bug or an unforeseen error: back off, so a repeating error does not spin, and make sure the same
        batch cannot fail forever. The pairs of a failed batch become suspects, stored one per batch; a
        single pair that fails is counted against its attempts, and set aside once they run out."""
        delay_s = self._error_backoff.failed()
        self._error_log.error(
            "pair writer: unexpected error (%s); retrying in %.1fs", describe_error(exc), delay_s
        )
        log.debug("pair writer: unexpected error", exc_info=True)
        batch, self._in_flight = self._in_flight, []
        self._spool_side.abandon_replay()  # keeps the replaying file; the next replay starts it over
        if len(batch) > 1:
            self._suspects.extendleft(reversed(batch))
            return
        keep: list[Pair] = []
        exhausted: list[Pair] = []
        for pair in batch:
            (keep if self._require_batches().count_failure(pair) else exhausted).append(pair)
        self._suspects.extendleft(reversed(keep))
        if exhausted:
            self._in_flight = exhausted  # so that a close() cancelling us still spools them
            result = await in_daemon_thread(self._require_batches().set_aside, exhausted, describe_error(exc))
            self._in_flight = []
            self._account(result)

    async def _probe(self) -> None:
        try:
            await in_daemon_thread(self._require_batches().check)
        except Exception as exc:
            self._mark_unavailable(exc)
        else:
            self._mark_available()

    def _account(self, result: WriteResult) -> None:
        self.rejected_total += result.rejected
        self._dropped += result.lost
        self._retry.extend(result.retry)
        if result.leftover:
            self._mark_unavailable(result.error)
        elif result.written:
            self._mark_available()

    def _mark_unavailable(self, error: BaseException | None) -> None:
        self._probe_backoff.failed()
        if self._db_available is not False:
            reason = describe_error(error) if error is not None else "unknown error"
            log.warning(
                "pair writer: database unavailable (%s); spooling pairs to %s until it answers",
                reason,
                self._spool.path,
            )
        self._db_available = False

    def _mark_available(self) -> None:
        if self._db_available is False:
            log.info("pair writer: database reachable again")
        self._db_available = True
        self._probe_backoff.succeeded()
        # The spool is not needed now; its failure stays in the log, not on /healthz as a current problem.
        # (Its backoff stays: the next outage does not start by hammering a disk known to fail.)
        self._spool_side.error = None

    # --- closing ---------------------------------------------------------------------------------------

    async def _close(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            reserve = min(CLOSE_SPOOL_RESERVE_S, timeout_s / 4)
            done, _ = await asyncio.wait({self._task}, timeout=max(deadline - reserve - time.monotonic(), 0))
            if not done:
                log.warning("pair writer: the database did not take the last pairs within %.1fs", timeout_s)
                # The task waits on a thread; cancelling abandons that call (it cannot be interrupted) and
                # its batch, still in `_in_flight`, is spooled below. Should the call still land, the replay
                # skips the ids it finds stored.
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=0.5)
        self._spool_side.abandon_replay()
        leftovers = [*self._in_flight, *self._suspects, *self._retry, *self._buffer]
        self._in_flight, self._retry = [], []
        self._suspects.clear()
        self._buffer.clear()
        self._closed = True  # from here on, submit() spools directly
        if leftovers:
            await self._spool_side.put_on_close(leftovers, deadline)
        if self._owns_engine and self._engine is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    in_daemon_thread(self._engine.dispose), max(deadline - time.monotonic(), 0.05)
                )

    def _require_batches(self) -> BatchWriter:
        if self._batches is None:
            raise RuntimeError("PairWriter.start() was not called")
        return self._batches
