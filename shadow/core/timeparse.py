"""The one way to read times and durations, for every command and reader.

- `parse_instant` reads a pair's `created_at` (ISO 8601, `Z` allowed, naive means UTC) and is lenient:
  a reader that meets a bad value gets None and decides what that means.
- `parse_time` is the strict form for input files: it raises with the field's name.
- `parse_duration` reads `90s`, `15m`, `2h`, `1d` (a bare number is seconds) for `--since`, `--older-than`
  and the gate API.

>>> parse_instant("2026-01-02T03:04:05Z").isoformat()
'2026-01-02T03:04:05+00:00'
>>> parse_instant("not a time") is None
True
>>> parse_duration("15m").total_seconds()
900.0
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from shadow.core.errors import UserError

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION = timedelta(days=36500)
"""A hundred years: longer is a typo, and `datetime` arithmetic would overflow soon after."""


class TimeFormatError(UserError, ValueError):
    """A time or duration that cannot be read; the message shows the expected form."""


def parse_instant(value: Any) -> datetime | None:
    """An aware datetime in UTC, or None when `value` is not a time (or not one UTC can hold: an offset
    that pushes it past year 9999 or before year 1)."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00-05:00 is a valid ISO time but no datetime in UTC
        return None


def parse_time(value: Any, name: str) -> datetime:
    """Like `parse_instant`, but a bad value raises `TimeFormatError` naming the field."""
    parsed = parse_instant(value if isinstance(value, datetime) else str(value))
    if parsed is None:
        raise TimeFormatError(
            f"field {name!r} is not an ISO 8601 time between years 1 and 9999 (UTC), "
            f"such as 2026-01-02T03:04:05Z: {str(value)[:60]!r}"
        )
    return parsed


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `2h`, `1d`, or a bare number of seconds; at most `MAX_DURATION`."""
    match = _DURATION_RE.fullmatch(str(text))
    if not match:
        raise TimeFormatError(f"{str(text)[:60]!r} is not a duration; use e.g. 90s, 15m, 2h or 1d")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not math.isfinite(seconds) or seconds > MAX_DURATION.total_seconds():
        raise TimeFormatError(f"{str(text)[:60]!r} is longer than {MAX_DURATION.days} days")
    return timedelta(seconds=seconds)


def format_time(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and `Z`, as the pair format writes it."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


__all__ = ["MAX_DURATION", "TimeFormatError", "format_time", "parse_duration", "parse_instant", "parse_time"]
