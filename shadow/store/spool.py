"""The spool: an append-only JSONL file holding finished pairs while the database is unavailable.

Files, all next to `path`:
- `path` receives new batches (`append`), one `pairs.dumps` line per pair, flushed and fsynced per batch.
- `path.replaying` is the file being written to the database. `start_replay` renames `path` to it, so pairs
  spooled during a replay go to a fresh `path`; it is deleted once every line is in the database, and a
  leftover one (crash mid-replay) is replayed first on the next start. Replays insert idempotently, so
  replaying a line twice is harmless.
- `path.rejected` collects what cannot go to the database: lines that cannot be read back (a torn last
  line after a crash mid-write) and pairs the database refused; kept there for a person to look at.
- `path.lock` is held by the one process replaying (several processes may share a spool); the empty file
  stays behind.

Appends and the replay rename are coordinated with `flock` and an inode check, so an append that raced a
rename lands in the new file instead of one already read. All methods block: call them from a thread.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from shadow.core import pairs
from shadow.core.pairs import Pair, PairFormatError
from shadow.core.storable import make_storable

log = logging.getLogger(__name__)


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.replaying_path = path.with_name(path.name + ".replaying")
        self.rejected_path = path.with_name(path.name + ".rejected")
        self.lock_path = path.with_name(path.name + ".lock")

    def append(self, batch: Sequence[Pair]) -> None:
        """Append the pairs and fsync before returning: once this returns they survive a crash."""
        if not batch:
            return
        # backslashreplace: a lone surrogate (only in a pair that skipped make_storable) becomes its JSON
        # escape instead of failing the whole batch; the replay sanitizes it.
        data = "".join(pairs.dumps(pair) + "\n" for pair in batch).encode("utf-8", "backslashreplace")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if not _same_file(fd, self.path):
                    continue  # renamed for replay between our open and our lock: use the new file
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    # A crash tore the last line; end it so our first line is not glued onto it.
                    data = b"\n" + data
                _write_all(fd, data)
                os.fsync(fd)
                if size == 0:
                    _fsync_directory(self.path.parent)  # make the new file's name durable too
                return
            finally:
                os.close(fd)  # closing also releases the flock

    def has_pending(self) -> bool:
        return self.path.exists() or self.replaying_path.exists()

    def start_replay(self) -> SpoolReplay | None:
        """Claim the spooled pairs for replay; None when there are none or another process is replaying."""
        if not self.has_pending():
            return None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            return None
        try:
            if not self.replaying_path.exists():
                if not self.path.exists():
                    os.close(lock_fd)
                    return None
                os.rename(self.path, self.replaying_path)
                _fsync_directory(self.path.parent)
            handle = open(self.replaying_path, "rb")  # noqa: SIM115 - owned by the SpoolReplay
            # Wait for an append that locked the file before the rename to finish writing into it.
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        except BaseException:
            os.close(lock_fd)
            raise
        return SpoolReplay(self, handle, lock_fd)

    def reject_pair(self, pair: Pair, reason: str | None = None) -> None:
        """Keep a pair the database refused (a value it cannot hold) where a person can find it; the reason
        goes into its `capture_notes`, so the line is still a pair that `shadow import` reads.

        Raises only OSError (the file cannot be written) or for a pair no JSON can describe."""
        if reason:
            pair.capture_notes = [*pair.capture_notes, f"set aside: {reason}"]
        try:
            line = pairs.dumps(pair).encode("utf-8")
        except (TypeError, ValueError, RecursionError):
            # Odd text or a value JSON cannot hold: ASCII escapes and repr() can show anything.
            line = json.dumps(pair.to_json(), ensure_ascii=True, default=repr).encode("ascii")
        self.reject(line)

    def reject(self, raw: bytes) -> None:
        line = raw if raw.endswith(b"\n") else raw + b"\n"
        self.rejected_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.rejected_path, "ab") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())


class SpoolReplay:
    """Reads a claimed `.replaying` file batch by batch; `finish()` deletes it, `abandon()` keeps it."""

    def __init__(self, spool: Spool, handle: BinaryIO, lock_fd: int) -> None:
        self.spool = spool
        self._handle = handle
        self._lock_fd = lock_fd
        self._line_number = 0

    def next_batch(self, size: int) -> list[Pair]:
        """Up to `size` pairs; an empty list at the end of the file. Unreadable lines are set aside."""
        batch: list[Pair] = []
        while len(batch) < size:
            raw = self._handle.readline()
            if not raw:
                break
            self._line_number += 1
            if not raw.strip():
                continue
            try:
                # A spool written by an older version may hold text no database takes.
                batch.append(make_storable(pairs.loads(raw.decode("utf-8"))))
            except (PairFormatError, UnicodeDecodeError) as exc:
                torn = not raw.endswith(b"\n")
                what = "torn last line (a crash while writing)" if torn else "unreadable line"
                # The reason names a field or a JSON position, never pair content.
                reason = exc.reason if isinstance(exc, UnicodeDecodeError) else str(exc)
                log.warning(
                    "spool %s: skipping %s %d (%s); kept in %s",
                    self.spool.replaying_path,
                    what,
                    self._line_number,
                    reason,
                    self.spool.rejected_path,
                )
                self.spool.reject(raw)
        return batch

    def finish(self) -> None:
        """Every line is in the database: delete the file and let another replay start."""
        try:
            self.spool.replaying_path.unlink(missing_ok=True)
            _fsync_directory(self.spool.replaying_path.parent)
        finally:
            self._close()

    def abandon(self) -> None:
        """The database went away mid-replay: keep the file; the next replay starts it over."""
        self._close()

    def _close(self) -> None:
        if self._lock_fd < 0:
            return
        self._handle.close()
        os.close(self._lock_fd)
        self._lock_fd = -1


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (opened.st_dev, opened.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
