"""The one reader's view of a pair record (a line of a pairs or scores file, or a row from the store).

Every reader — the gate's collection, the report, the export table, the frame, replay — asks these
questions here, so they cannot disagree: did a side answer, did it error, which language is the pair in,
when was it created. Records are plain dicts (the JSONL field names); nothing here does I/O.

>>> record = {"prompt": "用 pandas 读取 CSV", "baseline": "可以这样做", "candidate": "好"}
>>> side_answered(record, "candidate"), side_error(record, "candidate"), pair_language(record)
(True, False, 'zh')
>>> side_answered({"candidate_status": 503}, "candidate"), side_answered({}, "candidate")
(False, None)
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shadow.core.prompts import follows_tool_results
from shadow.core.text import language_of
from shadow.core.timeparse import parse_instant

LANGUAGE_SAMPLE_CHARS = 300
"""`language_of` reads only the start of a text: enough to tell zh from en, and cheap at 100,000 pairs."""


def answered(status: Any, error: Any) -> bool:
    """The one rule for "this side answered": no transport error, and a 2xx status or none recorded.

    A missing status is an answer: files from other tools (or written before statuses were captured)
    carry only the texts, and the text is the answer.
    """
    if error is not None:
        return False
    if status is None:
        return True
    # A whole float (200.0) is a status too: pandas turns an int column with gaps into floats.
    is_number = isinstance(status, int | float) and not isinstance(status, bool)
    return is_number and status == int(status) and 200 <= status < 300


def has_side(record: Mapping[str, Any], side: str) -> bool:
    """Whether the pair has this side at all (its text, a status or an error)."""
    return any(
        record.get(key) is not None
        for key in (side, f"{side}_status", f"{side}_error", f"{side}_tool_calls", f"{side}_refusal")
    )


def side_answered(record: Mapping[str, Any], side: str) -> bool | None:
    """`answered` for one side of a record; None when the pair has no such side."""
    if not has_side(record, side):
        return None
    return answered(record.get(f"{side}_status"), record.get(f"{side}_error"))


def side_error(record: Mapping[str, Any], side: str) -> bool:
    """What canary analysis calls an error: a transport error or a 5xx (a 4xx is the request's fault)."""
    status = record.get(f"{side}_status")
    is_number = isinstance(status, int | float) and not isinstance(status, bool)
    return record.get(f"{side}_error") is not None or (is_number and status >= 500)


def error_kind(record: Mapping[str, Any], side: str) -> str:
    """A short name for a side's error, for reasons: its message, else its HTTP status."""
    error = record.get(f"{side}_error")
    return str(error if error is not None else f"HTTP {record.get(f'{side}_status')}")[:80]


def pair_language(record: Mapping[str, Any]) -> str:
    """zh / en / other: the prompt's language, else the primary's answer's (for a prompt without letters)."""
    for field in ("prompt", "baseline"):
        text = record.get(field)
        if isinstance(text, str):
            language = language_of(text[:LANGUAGE_SAMPLE_CHARS])
            if language != "other":
                return language
    return "other"


DERIVED_SEGMENTS = ("lang", "route", "tools", "after_tool")
"""Segments every pair has without a tag: its language, its route (chat / completions / responses), whether
the request offered tools ("yes" / "no"), and whether it answers after tool results ("yes" / "no")."""


def segment_value(record: Mapping[str, Any], key: str) -> str | None:
    """A segment dimension's value: the pair's tag, else one of `DERIVED_SEGMENTS`."""
    tags = record.get("segment")
    tags = tags if isinstance(tags, Mapping) else {}
    if key in tags:
        return str(tags[key])
    if key == "lang":
        return pair_language(record)
    if key == "route":
        return str(record.get("route") or "chat")
    request = record.get("request")
    request = request if isinstance(request, Mapping) else {}
    if key == "tools":
        return "yes" if has_tools(request) else "no"
    if key == "after_tool":
        return "yes" if follows_tool_results(request) else "no"
    return None


def has_tools(request: Mapping[str, Any]) -> bool:
    tools = request.get("tools") or request.get("functions")
    return isinstance(tools, list) and len(tools) > 0


def created_at(record: Mapping[str, Any]) -> datetime | None:
    return parse_instant(record.get("created_at"))


__all__ = [
    "LANGUAGE_SAMPLE_CHARS",
    "answered",
    "DERIVED_SEGMENTS",
    "created_at",
    "has_tools",
    "error_kind",
    "has_side",
    "pair_language",
    "segment_value",
    "side_answered",
    "side_error",
]
