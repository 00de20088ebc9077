"""JSONL export and import of stored pairs, in the interchange format of `shadow.core.pairs`.

Both directions stream: export reads the table in chunks ordered by id, import inserts in batches, so
memory stays flat whatever the file size. Exporting, importing into an empty store and exporting again
gives the same bytes.

Import never loses a line: a line that is not a pair is reported with its number and copied verbatim to
`<file>.rejected.jsonl`, next to the file, to be fixed and imported again; the good lines are imported.
Ids already stored are skipped, so importing the same file twice is harmless. Text no database can store
(a lone surrogate, NUL) is replaced with U+FFFD on the way in and out, and noted in `capture_notes`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, TextIO

from sqlalchemy import Engine, Float, Integer, String, select
from sqlalchemy.exc import DBAPIError, StatementError

from shadow.core import pairs
from shadow.core.pairs import Pair, PairFormatError
from shadow.core.storable import make_storable
from shadow.store.database import (
    StoreError,
    describe_error,
    existing_pair_ids,
    insert_pairs,
    is_unavailable_error,
    redact_url,
)
from shadow.store.models import pair_to_row, pairs_table, row_to_pair

EXPORT_CHUNK_SIZE = 500
IMPORT_BATCH_SIZE = 500


@dataclass(frozen=True, slots=True)
class ImportReport:
    imported: int
    duplicates: int
    """Pairs whose id was already stored (or appeared earlier in the file); left as they were."""
    rejected: tuple[str, ...]
    """One message per rejected line, starting with `line N:`."""
    rejected_path: Path | None
    """Where the rejected lines were copied verbatim; None when every line was good."""

    def summary(self, *, max_reasons: int = 20) -> str:
        """For people: the counts, then why each rejected line was rejected (the first `max_reasons`)."""
        text = f"imported {self.imported} pairs, skipped {self.duplicates} already stored"
        if not self.rejected:
            return text
        lines = [f"{text}, rejected {len(self.rejected)} lines (copied to {self.rejected_path}):"]
        lines += [f"  {reason}" for reason in self.rejected[:max_reasons]]
        if len(self.rejected) > max_reasons:
            lines.append(f"  ... and {len(self.rejected) - max_reasons} more")
        return "\n".join(lines)


def export_pairs(
    engine: Engine, output: str | os.PathLike[str] | TextIO, *, experiment: str | None = None
) -> int:
    """Write the stored pairs (of one experiment, or all) as JSONL ordered by id; returns how many."""
    if isinstance(output, (str, os.PathLike)):
        # Rows come out storable (`row_to_pair`); the handler is a second line of defence, so that one odd
        # value could never stop an export halfway.
        with open(output, "w", encoding="utf-8", errors="backslashreplace", newline="\n") as handle:
            return _export(engine, handle, experiment)
    return _export(engine, output, experiment)


def _export(engine: Engine, handle: IO[str], experiment: str | None) -> int:
    query = select(pairs_table).order_by(pairs_table.c.id)
    if experiment is not None:
        query = query.where(pairs_table.c.experiment == experiment)
    count = 0
    with engine.connect() as connection:
        # yield_per streams (a server-side cursor on PostgreSQL) instead of loading the whole table.
        result = connection.execution_options(yield_per=EXPORT_CHUNK_SIZE).execute(query)
        for row in result.mappings():
            handle.write(pairs.dumps(row_to_pair(row)) + "\n")
            count += 1
    return count


@dataclass(slots=True)
class _Line:
    number: int
    raw: bytes
    pair: Pair


class _Importer:
    def __init__(self, engine: Engine, path: Path, experiment: str | None) -> None:
        self.engine = engine
        self.path = path
        self.experiment = experiment
        self.rejected_path = path.with_name(path.name + ".rejected.jsonl")
        self.imported = 0
        self.duplicates = 0
        self.messages: list[str] = []
        self._rejected_file: BinaryIO | None = None

    def run(self) -> ImportReport:
        batch: list[_Line] = []
        try:
            with open(self.path, "rb") as source:
                for number, raw in enumerate(source, start=1):
                    line = self._parse(number, raw)
                    if line is None:
                        continue
                    batch.append(line)
                    if len(batch) >= IMPORT_BATCH_SIZE:
                        self._insert(batch)
                        batch = []
            self._insert(batch)
        finally:
            if self._rejected_file is not None:
                self._rejected_file.close()
        return ImportReport(
            imported=self.imported,
            duplicates=self.duplicates,
            rejected=tuple(self.messages),
            rejected_path=self.rejected_path if self._rejected_file is not None else None,
        )

    def _parse(self, number: int, raw: bytes) -> _Line | None:
        if not raw.strip():
            return None
        try:
            pair = pairs.loads(raw.decode("utf-8"), line_number=number)
        except UnicodeDecodeError as exc:
            self._reject(number, raw, f"not valid UTF-8 (byte {exc.start + 1})")
            return None
        except PairFormatError as exc:
            self._reject(number, raw, str(exc).removeprefix(f"line {number}: "))
            return None
        if self.experiment is not None:
            pair.experiment = self.experiment
        # A `\ud83d` or `\u0000` escape decodes fine but no database stores it: replace it, note it.
        make_storable(pair)
        problem = row_problem(pair_to_row(pair))
        if problem is not None:
            self._reject(number, raw, problem)
            return None
        return _Line(number, raw, pair)

    def _insert(self, batch: list[_Line]) -> None:
        if not batch:
            return
        try:
            self._insert_new(batch)
        except (DBAPIError, StatementError) as exc:
            if is_unavailable_error(exc):
                raise self._unreachable(exc) from exc
            # One pair the database will not hold (e.g. NaN inside JSONB): find it, keep the others.
            for line in batch:
                try:
                    self._insert_new([line])
                except (DBAPIError, StatementError) as line_exc:
                    if is_unavailable_error(line_exc):
                        raise self._unreachable(line_exc) from line_exc
                    self._reject(
                        line.number, line.raw, f"the database refused it ({describe_error(line_exc)})"
                    )

    def _insert_new(self, batch: list[_Line]) -> None:
        with self.engine.begin() as connection:
            existing = existing_pair_ids(connection, (line.pair.id for line in batch))
            fresh: dict[str, Pair] = {}
            duplicates = 0
            for line in batch:
                if line.pair.id in existing or line.pair.id in fresh:
                    duplicates += 1
                else:
                    fresh[line.pair.id] = line.pair
            insert_pairs(connection, fresh.values())
        self.imported += len(fresh)
        self.duplicates += duplicates

    def _reject(self, number: int, raw: bytes, reason: str) -> None:
        self.messages.append(f"line {number}: {reason}")
        if self._rejected_file is None:
            self._rejected_file = open(self.rejected_path, "wb")  # noqa: SIM115 - closed in run()
        self._rejected_file.write(raw if raw.endswith(b"\n") else raw + b"\n")

    def _unreachable(self, exc: BaseException) -> StoreError:
        return StoreError(
            f"importing {self.path} stopped: the database {redact_url(str(self.engine.url))!r} failed "
            f"({describe_error(exc)}) after {self.imported} pairs; run it again: stored pairs are skipped"
        )


def import_pairs(
    engine: Engine, path: str | os.PathLike[str], *, experiment: str | None = None
) -> ImportReport:
    """Import a JSONL file of pairs. `experiment`, when given, replaces the experiment of every pair."""
    path = Path(path)
    if path.is_dir():
        raise StoreError(f"cannot import {path}: it is a directory; give a pairs JSONL file")
    if not path.is_file():
        raise StoreError(f"cannot import {path}: no such file; give the path of a pairs JSONL file")
    return _Importer(engine, path, experiment).run()


def row_problem(row: Mapping[str, Any]) -> str | None:
    """Why the database would refuse this row, found before asking it (SQLite would accept it silently)."""
    for column in pairs_table.columns:
        value = row.get(column.key)
        if value is None:
            continue
        name = _field_name(column.key)
        if isinstance(column.type, String):  # Text included
            if not isinstance(value, str):
                return f"field {name!r} must be a string, got {type(value).__name__}"
            if column.type.length and len(value) > column.type.length:
                return f"field {name!r} is longer than {column.type.length} characters"
        elif isinstance(column.type, Integer) and (not isinstance(value, int) or isinstance(value, bool)):
            return f"field {name!r} must be an integer, got {type(value).__name__}"
        elif isinstance(column.type, Float) and (
            not isinstance(value, (int, float)) or isinstance(value, bool)
        ):
            return f"field {name!r} must be a number, got {type(value).__name__}"
    return None


def _field_name(column: str) -> str:
    # The side texts are columns `<side>_text` but JSONL fields `<side>`; report what the user wrote.
    for side in pairs.SIDES:
        if column == f"{side}_text":
            return side
    return column
