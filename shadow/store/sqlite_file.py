"""Notice a SQLite database file deleted or replaced under a running writer.

SQLite keeps writing through the connections it has open: after `rm pairs.db` (or a restore that renames
another file over it) every insert goes on succeeding into the unlinked inode, and is lost with it. The
writer compares the file's identity (device, inode) with the one it first saw before each write and, when it
changed, starts over on the file now at the path (`shadow.store.writer`).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def file_identity(path: Path) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the file at `path`; None when there is none."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_dev, stat.st_ino)


class SqliteFileWatch:
    """The identity of the database file the writer writes into, and whether the path still leads to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.identity: tuple[int, int] | None = None
        self.wal_identity: tuple[int, int] | None = None
        self.lost = False
        """The file changed and the writer has not yet got a working file at the path again."""

    def record(self) -> None:
        """Remember the file now at the path as the one being written (after a successful connection)."""
        self.identity = file_identity(self.path)
        self.note_wal()
        self.lost = False

    def note_wal(self) -> None:
        """Remember which WAL file our connections use (after each write: SQLite may have recreated it)."""
        self.wal_identity = file_identity(self._sibling("-wal"))

    def change(self) -> str | None:
        """'deleted' or 'replaced' when the path no longer leads to the recorded file, else None."""
        if self.identity is None:
            return None  # never connected yet: nothing to compare with
        now = file_identity(self.path)
        if now == self.identity:
            return None
        return "deleted" if now is None else "replaced"

    def remove_stale_wal(self) -> None:
        """After our connections to the old file are closed: remove the WAL they leave at the path.

        SQLite neither checkpoints nor deletes the WAL of a database file that moved, and the WAL is found
        by path: the new file would recover the old file's pages into itself. The WAL is removed when it is
        the one our connections used, or when no database file is left for it; a WAL that came with a
        replacement file (another inode) is kept."""
        wal = self._sibling("-wal")
        if self.path.exists() and (self.wal_identity is None or file_identity(wal) != self.wal_identity):
            return
        for leftover in (wal, self._sibling("-shm")):
            # Should this fail, the new file's first connection reports the problem with the directory.
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)

    def _sibling(self, suffix: str) -> Path:
        return self.path.with_name(self.path.name + suffix)


__all__ = ["SqliteFileWatch", "file_identity"]
