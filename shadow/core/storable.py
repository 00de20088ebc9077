"""Make untrusted text and JSON storable: valid UTF-8 without NUL, JSON without NaN, on every backend.

Python strings can hold what no database column and no UTF-8 file can: lone surrogates (JSON `"\\ud83d"`
decodes to one; aiohttp decodes header bytes with surrogateescape, so a header byte 0xff becomes '\\udcff')
and NUL, which PostgreSQL refuses in text and JSONB. One such value used to fail a whole batch insert, its
fallback, and every export of the experiment. Here each bad code point becomes U+FFFD, a non-finite number
(which json.loads accepts but JSONB refuses) becomes null, and a value JSON cannot hold becomes its text.

`make_storable(pair)` applies this to every field of a pair and records on the pair what it changed, so the
change is visible in the data rather than silent. Pure, no I/O; clean values cost one fast check each.
"""

from __future__ import annotations

import math
import re
from typing import Any

from shadow.core.pairs import SIDES, Pair

REPLACEMENT = "\ufffd"

# Surrogates (lone, or a pair left split, neither of which UTF-8 can encode) and NUL.
_BAD_CODE_POINT = re.compile("[\x00\ud800-\udfff]")

_JSON_SCALARS = (bool, int, type(None))


def storable_text(text: str) -> tuple[str, bool]:
    """`text` with every lone surrogate and NUL replaced by U+FFFD; the flag says whether anything changed."""
    cleaned, replaced = _clean_text(text)
    return cleaned, replaced > 0


def storable_json(value: Any) -> tuple[Any, bool]:
    """`value` (dicts, lists and scalars, as json.loads returns them) with its keys and strings made storable,
    non-finite floats turned into None and values JSON cannot hold into their text. Unchanged containers are
    returned as they are, not copied."""
    if _is_clean(value):
        return value, False
    fixes = _Fixes()
    cleaned = _clean_json(value, fixes)
    return cleaned, bool(fixes)


def make_storable(pair: Pair) -> Pair:
    """Sanitize every text and JSON field of `pair` in place, add a `capture_notes` line per field changed,
    and return the pair. A pair that is already storable is left exactly as it was."""
    notes: list[str] = []
    for name in ("id", "experiment", "route", "prompt", "user_key_hash"):
        setattr(pair, name, _text_field(getattr(pair, name), name, notes))
    for name in ("request", "segment", "extra"):
        setattr(pair, name, _json_field(getattr(pair, name), name, notes))
    for side_name in SIDES:
        side = pair.side(side_name)
        if side is None:
            continue
        for name in ("text", "error", "model", "finish_reason", "refusal", "reasoning"):
            setattr(side, name, _text_field(getattr(side, name), f"{side_name}.{name}", notes))
        # Tool-call arguments and names, the other choices' texts, logprob tokens: every string inside.
        for name in ("usage", "tool_calls", "choices", "logprobs"):
            setattr(side, name, _json_field(getattr(side, name), f"{side_name}.{name}", notes))
    if not _is_clean(pair.capture_notes):  # our own lines; but they may quote something from outside
        pair.capture_notes = [_clean_json(str(note), _Fixes()) for note in pair.capture_notes]
    if notes:
        pair.capture_notes = [*pair.capture_notes, *notes]
    return pair


# --- internals ---------------------------------------------------------------------------------------------


class _Fixes:
    __slots__ = ("code_points", "non_finite", "not_json")

    def __init__(self) -> None:
        self.code_points = 0
        self.non_finite = 0
        self.not_json = 0

    def __bool__(self) -> bool:
        return bool(self.code_points or self.non_finite or self.not_json)

    def describe(self, field: str) -> str:
        parts = []
        if self.code_points:
            parts.append(f"{_count(self.code_points, 'invalid code point')} replaced with U+FFFD")
        if self.non_finite:
            parts.append(f"{_count(self.non_finite, 'non-finite number')} replaced with null")
        if self.not_json:
            parts.append(f"{_count(self.not_json, 'value')} JSON cannot hold replaced with its text")
        return f"{field}: {'; '.join(parts)}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _text_is_clean(text: str) -> bool:
    if text.isascii():
        return "\x00" not in text
    try:
        encoded = text.encode("utf-8")  # fails at the first surrogate
    except UnicodeEncodeError:
        return False
    return b"\x00" not in encoded  # memchr on bytes; `in` on a wide str is several times slower


def _is_clean(value: Any) -> bool:
    """The check alone, without building anything: almost every value passes it, and that is all it costs."""
    kind = type(value)
    if kind is str:
        return _text_is_clean(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not _text_is_clean(key) or not _is_clean(item):
                return False
        return True
    if kind is list:
        return all(map(_is_clean, value))
    if kind is float:
        return math.isfinite(value)
    return kind is int or kind is bool or value is None


def _clean_text(text: str) -> tuple[str, int]:
    # The fast check decides almost every string without looking at its characters one by one.
    if _text_is_clean(text):
        return text, 0
    return _BAD_CODE_POINT.subn(REPLACEMENT, text)


def _clean_json(value: Any, fixes: _Fixes) -> Any:
    if isinstance(value, str):
        cleaned, replaced = _clean_text(value)
        fixes.code_points += replaced
        return cleaned
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        fixes.non_finite += 1
        return None
    if isinstance(value, _JSON_SCALARS):
        return value
    if isinstance(value, dict):
        changed = False
        items = []
        for key, item in value.items():
            new_key = _clean_json(key if isinstance(key, str) else str(key), fixes)
            new_item = _clean_json(item, fixes)
            changed = changed or new_key is not key or new_item is not item
            items.append((new_key, new_item))
        return dict(items) if changed else value
    if isinstance(value, (list, tuple)):
        cleaned_items = [_clean_json(item, fixes) for item in value]
        unchanged = isinstance(value, list) and all(
            new is old for new, old in zip(cleaned_items, value, strict=True)
        )
        return value if unchanged else cleaned_items
    fixes.not_json += 1
    return _clean_json(str(value), fixes)


def _text_field(value: Any, field: str, notes: list[str]) -> Any:
    if not isinstance(value, str) or _text_is_clean(value):
        return value  # None, or a wrong type the database will refuse with its own reason, or clean
    cleaned, replaced = _BAD_CODE_POINT.subn(REPLACEMENT, value)
    if replaced:
        notes.append(f"{field}: {_count(replaced, 'invalid code point')} replaced with U+FFFD")
    return cleaned


def _json_field(value: Any, field: str, notes: list[str]) -> Any:
    try:
        if _is_clean(value):
            return value
    except RecursionError:
        pass  # the walk below says so
    fixes = _Fixes()
    try:
        cleaned = _clean_json(value, fixes)
    except RecursionError:
        # json.loads accepts nesting about as deep as the interpreter allows; the encoder on the way to the
        # database would not. Nothing that deep is worth keeping whole.
        notes.append(f"{field}: nested too deeply to store; dropped")
        return {} if isinstance(value, dict) else None
    if fixes:
        notes.append(fixes.describe(field))
    return cleaned


__all__ = ["REPLACEMENT", "make_storable", "storable_json", "storable_text"]
