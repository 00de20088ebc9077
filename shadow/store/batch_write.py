"""The pair writer's blocking half: write one batch into the database, on a thread (`shadow.store.writer`).

A batch the database refuses is written again pair by pair, so the one pair it refuses is found and the
others go in. That pair is tried again later (a transient refusal heals) and after `MAX_PAIR_ATTEMPTS` it is
set aside in the spool's `.rejected` file with its reason. "Unavailable" errors (the database is down, the
schema is missing) are different: the whole rest of the batch is handed back, to be spooled.

Before each batch it makes sure the statement reaches the right database: the schema migrated when asked,
and for SQLite, the file at the path still the one first connected to (`shadow.store.sqlite_file`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine, select

from shadow.core.pairs import Pair, utc_now
from shadow.store.background import Throttle
from shadow.store.database import (
    StoreError,
    create_sqlite_parent,
    describe_error,
    insert_pairs,
    is_unavailable_error,
    sqlite_file,
    upgrade,
)
from shadow.store.models import pairs_table
from shadow.store.spool import Spool
from shadow.store.sqlite_file import SqliteFileWatch

log = logging.getLogger("shadow.store.writer")

MAX_PAIR_ATTEMPTS = 3
"""Tries for a pair the database refuses (or that fails unexpectedly) before it is set aside."""

REJECT_LOG_INTERVAL_S = 5.0


@dataclass(slots=True)
class WriteResult:
    written: int = 0
    rejected: int = 0  # set aside in the .rejected file
    lost: int = 0  # could not even be set aside
    retry: list[Pair] = field(default_factory=list)  # refused, to be tried again in a later tick
    leftover: list[Pair] = field(default_factory=list)  # not written because the database is unavailable
    error: BaseException | None = None


class BatchWriter:
    """Blocking; one call at a time (the writer's task awaits each before the next)."""

    def __init__(
        self, engine: Engine, url: str, spool: Spool, *, migrate: bool, warnings: deque[str]
    ) -> None:
        self.engine = engine
        self.url = url  # for `upgrade`, which makes an engine of its own
        self.spool = spool
        self.schema_ready = not migrate
        self.warnings = warnings
        path = sqlite_file(engine)
        self.sqlite = SqliteFileWatch(path) if path is not None else None
        self.failures: dict[str, int] = {}  # pair id -> failed attempts so far
        self._reject_log = Throttle(log, REJECT_LOG_INTERVAL_S)
        self._refused_log = Throttle(log, REJECT_LOG_INTERVAL_S)

    def check(self) -> None:
        """Raise unless a write could succeed now (the probe while the database is unavailable)."""
        self._before_database()
        with self.engine.connect() as connection:
            connection.execute(select(pairs_table.c.id).limit(0))
        self._after_success()

    def write(self, batch: Sequence[Pair]) -> WriteResult:
        try:
            self._before_database()
            self._insert(batch)
        except Exception as exc:
            if is_unavailable(exc):
                return WriteResult(leftover=list(batch), error=exc)
            if len(batch) == 1:  # already isolated: this was its attempt
                result = WriteResult()
                self._refused(batch[0], exc, result)
                return result
            self._refused_log.warning(
                "pair writer: the database refused a batch of %d (%s); writing its pairs one by one",
                len(batch),
                describe_error(exc),
            )
            return self._write_one_by_one(batch)
        for pair in batch:
            self.failures.pop(pair.id, None)
        return WriteResult(written=len(batch))

    def count_failure(self, pair: Pair) -> bool:
        """Count a failed attempt; True while the pair has attempts left."""
        attempts = self.failures.get(pair.id, 0) + 1
        self.failures[pair.id] = attempts
        return attempts < MAX_PAIR_ATTEMPTS

    def set_aside(self, batch: Sequence[Pair], reason: str) -> WriteResult:
        result = WriteResult()
        for pair in batch:
            self._set_aside(pair, reason, result)
        return result

    # --- internals -------------------------------------------------------------------------------------

    def _before_database(self) -> None:
        if self.sqlite is not None:
            create_sqlite_parent(str(self.sqlite.path))  # SQLite creates a file, not its directory
            self._follow_sqlite_file()
        if not self.schema_ready:
            upgrade(self.url)
            self.schema_ready = True

    def _follow_sqlite_file(self) -> None:
        watch = self.sqlite
        assert watch is not None
        if not watch.lost:
            change = watch.change()
            if change is None:
                return
            at = utc_now().isoformat(timespec="seconds")
            message = f"the SQLite file {watch.path} was {change} at {at}; writing into " + (
                "a new file" if change == "deleted" else "the file now at that path"
            )
            log.warning("pair writer: %s", message)
            self.warnings.append(message)
            watch.lost = True
            # Pooled connections still point at the old inode; drop them before anything connects again.
            self.engine.dispose()
            watch.remove_stale_wal()
        upgrade(self.url)  # creates the new file's schema; raises (and is retried) while it cannot
        watch.record()

    def _after_success(self) -> None:
        if self.sqlite is None:
            return
        if self.sqlite.identity is None:
            self.sqlite.record()  # the file this writer first connected to
        else:
            self.sqlite.note_wal()

    def _insert(self, batch: Sequence[Pair]) -> None:
        with self.engine.begin() as connection:
            insert_pairs(connection, batch)
        if self.sqlite is not None and self.sqlite.change() is not None:
            # Deleted or replaced during the write: the batch went into the old file. Write it again into
            # the file now at the path (inserts skip the ids already there).
            self._follow_sqlite_file()
            with self.engine.begin() as connection:
                insert_pairs(connection, batch)
        self._after_success()

    def _write_one_by_one(self, batch: Sequence[Pair]) -> WriteResult:
        """Isolate the pair the database refuses, so one bad value does not hold back the others."""
        result = WriteResult()
        for index, pair in enumerate(batch):
            try:
                self._insert([pair])
            except Exception as exc:
                if is_unavailable(exc):
                    result.leftover = list(batch[index:])
                    result.error = exc
                    return result
                self._refused(pair, exc, result)
            else:
                self.failures.pop(pair.id, None)
                result.written += 1
        return result

    def _refused(self, pair: Pair, exc: Exception, result: WriteResult) -> None:
        if self.count_failure(pair):
            result.retry.append(pair)
        else:
            self._set_aside(pair, describe_error(exc), result)

    def _set_aside(self, pair: Pair, reason: str, result: WriteResult) -> None:
        self.failures.pop(pair.id, None)
        try:
            self.spool.reject_pair(pair, reason)
        except Exception as exc:  # noqa: BLE001 - one line in the log is all that is left to do
            result.lost += 1
            log.error(
                "pair writer: LOST pair %s: it cannot be stored (%s) nor kept in %s (%s)",
                pair.id,
                reason,
                self.spool.rejected_path,
                describe_error(exc),
            )
            return
        result.rejected += 1
        self._reject_log.error(
            "pair writer: pair %s cannot be stored after %d tries (%s); set aside in %s",
            pair.id,
            MAX_PAIR_ATTEMPTS,
            reason,
            self.spool.rejected_path,
        )


def is_unavailable(exc: BaseException) -> bool:
    """Errors that are waited out (the pairs spool) rather than blamed on a pair. Besides the database's own:
    StoreError, the schema could not be brought to head (migrate=True, or a new SQLite file); OSError, the
    SQLite file's directory cannot be created or examined."""
    return isinstance(exc, (StoreError, OSError)) or is_unavailable_error(exc)


__all__ = ["MAX_PAIR_ATTEMPTS", "BatchWriter", "WriteResult", "is_unavailable"]
