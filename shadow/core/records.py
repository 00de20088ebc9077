"""Reading JSON Lines of pairs or scored pairs: one object a line, errors that name the line.

Every file-reading step (`score`, `gate`, `report`) reads through here, so a bad file gets the same clear
message wherever it is used.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from shadow.core.pairs import TOO_DEEP, PairFormatError


def iter_json_objects(
    lines: Iterable[str | bytes], *, source: str = "", first_line: int = 1
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line. Raises `PairFormatError` naming the bad line."""
    where = f"{source} " if source else ""
    for number, raw in enumerate(lines, start=first_line):
        try:
            line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError as exc:
            raise PairFormatError(f"{where}line {number}: not UTF-8 text ({exc.reason})") from exc
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PairFormatError(
                f"{where}line {number}: not valid JSON ({exc.msg} at column {exc.colno})"
            ) from exc
        except RecursionError:
            raise PairFormatError(f"{where}line {number}: {TOO_DEEP}") from None
        if not isinstance(obj, dict):
            raise PairFormatError(f"{where}line {number}: not a JSON object")
        yield number, obj
