"""The pair writer's spool side: into the spool when the database does not take a batch, and out of it,
back into the database, once the database answers.

`shadow.store.writer` decides where each batch goes (the database first) and runs the background task;
this is everything it does with the spool (`shadow.store.spool`): the spool's own backoff while its disk
fails (a full disk does not empty itself in milliseconds), the error `/healthz` shows meanwhile, spooling
what is left on close and pairs submitted after it, the pairs the spool could not keep either, and the
replay. Kept apart so that the writer's loop reads as the decisions it makes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from shadow.core.pairs import Pair, utc_now
from shadow.store.background import Backoff, Throttle, in_daemon_thread
from shadow.store.batch_write import WriteResult
from shadow.store.database import describe_error
from shadow.store.spool import Spool, SpoolReplay

log = logging.getLogger("shadow.store.writer")  # the writer's lines, whichever of its parts logs them

MIN_SPOOL_RETRY_DELAY_S = 0.5
MAX_SPOOL_RETRY_DELAY_S = 30.0
"""Backoff between spool writes while its disk fails: a full disk does not empty itself in milliseconds."""


class SpoolSide:
    """Writes batches to `spool` and replays it; `pending` says how many pairs the writer holds (for the
    log lines)."""

    def __init__(
        self, spool: Spool, *, pending: Callable[[], int], failure_log: Throttle, drop_log: Throttle
    ) -> None:
        self.spool = spool
        self._pending = pending
        self._failure_log = failure_log
        self._drop_log = drop_log
        self.backoff = Backoff(MIN_SPOOL_RETRY_DELAY_S, MAX_SPOOL_RETRY_DELAY_S)
        self.error: str | None = None
        """Why the spool cannot be written, and since when; None while it can (or is not needed)."""
        self.spooled_total = 0
        self.lost_total = 0
        """Pairs the spool did not take on close or after it: lost."""
        self.replayed_total = 0
        """Spooled pairs handed to the database again (a replay interrupted and restarted counts twice)."""
        self._replay: SpoolReplay | None = None

    def waiting(self, now: float) -> bool:
        """In its backoff: a write now would only fail again."""
        return self.backoff.waiting(now)

    async def put(self, batch: list[Pair], *, now_or_never: bool = False) -> list[Pair]:
        """Append the batch, fsynced; returns it back when the disk fails (or the backoff holds, unless
        `now_or_never`), else nothing."""
        if not now_or_never and self.backoff.waiting(time.monotonic()):
            return batch
        try:
            await in_daemon_thread(self.spool.append, batch)
        except OSError as exc:
            self._failed(exc, len(batch))
            return batch
        if self.error is not None:
            log.info("pair writer: the spool %s is writable again", self.spool.path)
        self.error = None
        self.backoff.succeeded()
        self.spooled_total += len(batch)
        return []

    def _failed(self, exc: OSError, count: int) -> None:
        delay_s = self.backoff.failed()
        reason = exc.strerror or describe_error(exc)
        if self.error is None:
            at = utc_now().isoformat(timespec="seconds")
            self.error = f"cannot write the spool {self.spool.path} ({reason}) since {at}"
        self._failure_log.error(
            "pair writer: cannot write the spool %s (%s); keeping %d pairs in memory (%d in all), "
            "next try in %.1fs",
            self.spool.path,
            reason,
            count,
            self._pending(),
            delay_s,
        )

    async def put_on_close(self, leftovers: list[Pair], deadline: float) -> None:
        """Spool what the database did not take before close's deadline; what the spool refuses is lost,
        and logged as such."""
        try:
            not_stored = await asyncio.wait_for(
                self.put(leftovers, now_or_never=True), max(deadline - time.monotonic(), 0.1)
            )
        except Exception as exc:  # noqa: BLE001 - a timeout, or anything else: say what is lost
            self.lost_total += len(leftovers)
            why = "within the close timeout" if isinstance(exc, TimeoutError) else f"({describe_error(exc)})"
            log.error(
                "pair writer: LOST %d pairs: the spool %s did not take them %s",
                len(leftovers),
                self.spool.path,
                why,
            )
            return
        if not_stored:
            self.lost_total += len(not_stored)
            log.error(
                "pair writer: LOST %d pairs: neither the database nor the spool %s took them",
                len(not_stored),
                self.spool.path,
            )
        else:
            log.info("pair writer: spooled %d pairs to %s on close", len(leftovers), self.spool.path)

    def put_after_close(self, pair: Pair) -> None:
        """A late pair (a mirror that finished after shutdown began) still must not be lost. A small
        synchronous append is acceptable on this rare path; the next start replays it. Never raises."""
        log.warning("pair writer: pair %s submitted after close; spooling it", pair.id)
        try:
            self.spool.append([pair])
        except Exception as exc:  # noqa: BLE001 - submit() never raises
            self.lost_total += 1
            self._drop_log.error(
                "pair writer: LOST pair %s: cannot write the spool %s (%s)",
                pair.id,
                self.spool.path,
                describe_error(exc),
            )
            return
        self.spooled_total += 1

    # --- out of the spool ------------------------------------------------------------------------------

    async def replay(
        self,
        write: Callable[[list[Pair]], Any],
        account: Callable[[WriteResult], None],
        *,
        batch_size: int,
        max_batches: int | None,
    ) -> None:
        """Hand up to `max_batches` spooled batches (None: all) to `write` (a blocking database write, run on
        a thread), each result to `account`. Stops at the first batch the database does not take: it stays
        in the `.replaying` file, and the next replay starts that file over."""
        replayed_batches = 0
        while max_batches is None or replayed_batches < max_batches:
            if self._replay is None:
                self._replay = await in_daemon_thread(self.spool.start_replay)
                if self._replay is None:
                    return
                log.info("pair writer: replaying spooled pairs from %s", self.spool.replaying_path)
            batch = await in_daemon_thread(self._replay.next_batch, batch_size)
            if not batch:
                await in_daemon_thread(self._replay.finish)
                self._replay = None
                log.info("pair writer: spool replayed (%d pairs so far)", self.replayed_total)
                continue
            result: WriteResult = await in_daemon_thread(write, batch)
            account(result)
            self.replayed_total += result.written
            if result.leftover:  # still in the .replaying file: the next replay starts it over
                self.abandon_replay()
                return
            replayed_batches += 1

    def abandon_replay(self) -> None:
        """Stop a replay in progress, keeping its file; the next replay starts it over."""
        if self._replay is not None:
            self._replay.abandon()
            self._replay = None


__all__ = ["MAX_SPOOL_RETRY_DELAY_S", "MIN_SPOOL_RETRY_DELAY_S", "SpoolSide"]
