"""The pair: one user exchange as the primary answered it, and as the candidate (and maybe a second primary
call, the *secondary*) answered the same request.

This module owns the JSONL interchange format that every later step (score, gate, report, replay) reads.
It is pure: no I/O beyond turning dicts into records and back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ulid import ULID

from shadow.core.errors import UserError
from shadow.core.prompts import content_text, prompt_of
from shadow.core.timeparse import TimeFormatError, format_time, parse_time
from shadow.core.view import answered

SIDES = ("baseline", "candidate", "secondary")
"""The three sides of a pair. `baseline` is the primary's answer, the one the user received."""

SIDE_FIELDS = ("status", "latency_ms", "ttft_ms", "finish_reason", "usage", "error", "model", "started_at")
"""Per-side operational fields; in JSONL each is written as `<side>_<field>`."""

PART_FIELDS = ("tool_calls", "refusal", "reasoning", "choices", "logprobs")
"""Per-side parts of an answer beyond the first choice's text (`SideOutput` documents each). In JSONL each is
`<side>_<field>`, written only when not None, so pairs without them (and files from before) look as before."""

CORE_FIELDS = (
    "id",
    "experiment",
    "created_at",
    "route",
    "stream",
    "request",
    "prompt",
    "user_key_hash",
    "user_bucket",
    "segment",
    "user_cancelled",
    "capture_notes",
)


TEXT_FIELDS = ("prompt", *SIDES)
"""Fields that hold text: a string, or null (a side that produced no text)."""

TOO_DEEP = "JSON nested too deeply to read (a pair is only a few levels deep)"
"""What a line gets when `json` gives up on its nesting (RecursionError), wherever it is read."""


class PairFormatError(UserError, ValueError):
    """A JSONL line that is not a pair; the message says which field is wrong."""


def new_pair_id() -> str:
    """ULIDs sort by creation time, so ids double as a cheap time index."""
    return str(ULID())


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class SideOutput:
    """What one upstream answered: the assembled text and the facts around it."""

    text: str | None = None
    status: int | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    error: str | None = None
    model: str | None = None
    started_at: datetime | None = None
    tool_calls: list[dict[str, Any]] | None = None
    """The first choice's tool calls in order, each `{"id", "type", "name", "arguments"}`: `type` is
    "function", "custom" or what the upstream named; `arguments` is the string exactly as sent (not
    necessarily valid JSON); `id` and `name` may be None."""
    refusal: str | None = None
    """The first choice's refusal text."""
    reasoning: str | None = None
    """The first choice's reasoning text (`reasoning_content`, or the Responses API's reasoning summaries)."""
    choices: list[dict[str, Any]] | None = None
    """Every choice after the first (n > 1), each `{"index", "text", "tool_calls", "refusal", "reasoning",
    "finish_reason"}`; the first choice is the side's own fields."""
    logprobs: Any | None = None
    """The first choice's logprobs as sent: a token list (chat, Responses) or an object (completions)."""

    @property
    def ok(self) -> bool:
        """`shadow.core.view.answered`: the one rule every reader uses."""
        return answered(self.status, self.error)


@dataclass(slots=True)
class Pair:
    experiment: str
    request: dict[str, Any]
    prompt: str
    route: str = "chat"  # "chat" for /v1/chat/completions, "completions" for /v1/completions
    stream: bool = False
    baseline: SideOutput = field(default_factory=SideOutput)
    candidate: SideOutput | None = None
    secondary: SideOutput | None = None
    user_key_hash: str | None = None
    user_bucket: int | None = None
    segment: dict[str, str] = field(default_factory=dict)
    user_cancelled: bool = False
    id: str = field(default_factory=new_pair_id)
    created_at: datetime = field(default_factory=utc_now)
    extra: dict[str, Any] = field(default_factory=dict)
    """Fields this version does not know (from an import, or added by `shadow score`); kept verbatim."""
    capture_notes: list[str] = field(default_factory=list)
    """One line per thing capture or storage changed in this pair (a truncated body, an invalid character
    replaced), so that a reader can tell an altered pair from a faithful one."""

    def side(self, name: str) -> SideOutput | None:
        if name not in SIDES:
            raise KeyError(name)
        return getattr(self, name)

    # --- JSONL ---------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "experiment": self.experiment,
            "created_at": format_time(self.created_at),
            "route": self.route,
            "stream": self.stream,
            "request": self.request,
            "prompt": self.prompt,
            "user_key_hash": self.user_key_hash,
            "user_bucket": self.user_bucket,
            "segment": dict(self.segment),
            "user_cancelled": self.user_cancelled,
            "capture_notes": list(self.capture_notes),
        }
        for name in SIDES:
            side = self.side(name)
            if side is None:
                continue
            out[name] = side.text
            for f in SIDE_FIELDS:
                value = getattr(side, f)
                out[f"{name}_{f}"] = format_time(value) if isinstance(value, datetime) else value
            for f in PART_FIELDS:
                value = getattr(side, f)
                if value is not None:
                    out[f"{name}_{f}"] = value
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    @classmethod
    def from_json(cls, obj: Any) -> Pair:
        if not isinstance(obj, dict):
            raise PairFormatError(f"expected a JSON object, got {type(obj).__name__}")
        for required in ("experiment", "baseline"):
            if required not in obj:
                raise PairFormatError(f"missing required field {required!r}")
        request = obj.get("request") or {}
        if not isinstance(request, dict):
            raise PairFormatError("field 'request' must be an object (the request body as sent)")
        segment = obj.get("segment") or {}
        if not isinstance(segment, dict):
            raise PairFormatError("field 'segment' must be an object of tag names to values")
        notes = obj.get("capture_notes") or []  # files written before the field existed have none
        if not isinstance(notes, list):
            raise PairFormatError("field 'capture_notes' must be a list of strings")
        for name in TEXT_FIELDS:
            text = obj.get(name)
            if text is not None and not isinstance(text, str):
                raise PairFormatError(
                    f"field {name!r} must be a string (or null), got {_json_type(text)}: {_preview(text)}"
                )
        per_side = (*SIDE_FIELDS, *PART_FIELDS)
        known = set(CORE_FIELDS) | set(SIDES) | {f"{s}_{f}" for s in SIDES for f in per_side}
        sides: dict[str, SideOutput | None] = {}
        for name in SIDES:
            if name not in obj and not any(f"{name}_{f}" in obj for f in per_side):
                sides[name] = None
                continue
            values: dict[str, Any] = {"text": obj.get(name)}
            for f in per_side:
                values[f] = obj.get(f"{name}_{f}")
            if values["started_at"] is not None:
                values["started_at"] = _parse_time(values["started_at"], f"{name}_started_at")
            _check_parts(values, name)
            sides[name] = SideOutput(**values)
        return cls(
            id=str(obj.get("id") or new_pair_id()),
            experiment=str(obj["experiment"]),
            created_at=_parse_time(obj["created_at"], "created_at") if obj.get("created_at") else utc_now(),
            route=str(obj.get("route") or "chat"),
            stream=bool(obj.get("stream", False)),
            request=request,
            prompt=str(obj.get("prompt") or prompt_of(request)),
            baseline=sides["baseline"] or SideOutput(),
            candidate=sides["candidate"],
            secondary=sides["secondary"],
            user_key_hash=obj.get("user_key_hash"),
            user_bucket=obj.get("user_bucket"),
            segment={str(k): str(v) for k, v in segment.items()},
            user_cancelled=bool(obj.get("user_cancelled", False)),
            capture_notes=[str(note) for note in notes],
            extra={k: v for k, v in obj.items() if k not in known},
        )


def dumps(pair: Pair) -> str:
    """One JSONL line (without the newline). Non-ASCII stays readable: the files are for people too."""
    return json.dumps(pair.to_json(), ensure_ascii=False, separators=(",", ":"))


def loads(line: str, *, line_number: int | None = None) -> Pair:
    where = f"line {line_number}: " if line_number is not None else ""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise PairFormatError(f"{where}not valid JSON ({exc.msg} at column {exc.colno})") from exc
    except RecursionError:
        raise PairFormatError(f"{where}{TOO_DEEP}") from None
    try:
        return Pair.from_json(obj)
    except PairFormatError as exc:
        raise PairFormatError(f"{where}{exc}") from exc


def _check_parts(values: dict[str, Any], side: str) -> None:
    """The answer parts of one side have the documented shapes; else a PairFormatError naming the field."""
    _check_tool_calls(values["tool_calls"], f"{side}_tool_calls")
    for name in ("refusal", "reasoning"):
        _check_optional_text(values[name], f"{side}_{name}")
    choices = values["choices"]
    if choices is None:
        return
    field_name = f"{side}_choices"
    if not isinstance(choices, list):
        raise PairFormatError(
            f"field {field_name!r} must be a list of choice objects (or null), got {_json_type(choices)}: "
            f"{_preview(choices)}"
        )
    for number, choice in enumerate(choices):
        where = f"{field_name}[{number}]"
        if not isinstance(choice, dict):
            raise PairFormatError(
                f"field {where!r} must be a choice object, got {_json_type(choice)}: {_preview(choice)}"
            )
        index = choice.get("index")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
            raise PairFormatError(
                f"field {where + '.index'!r} must be an integer (or null), got {_json_type(index)}: "
                f"{_preview(index)}"
            )
        for name in ("text", "refusal", "reasoning", "finish_reason"):
            _check_optional_text(choice.get(name), f"{where}.{name}")
        _check_tool_calls(choice.get("tool_calls"), f"{where}.tool_calls")


def _check_tool_calls(calls: Any, field_name: str) -> None:
    if calls is None:
        return
    if not isinstance(calls, list):
        raise PairFormatError(
            f"field {field_name!r} must be a list of tool-call objects (or null), got {_json_type(calls)}: "
            f"{_preview(calls)}"
        )
    for number, call in enumerate(calls):
        where = f"{field_name}[{number}]"
        if not isinstance(call, dict):
            raise PairFormatError(
                f"field {where!r} must be a tool-call object, got {_json_type(call)}: {_preview(call)}"
            )
        arguments = call.get("arguments")
        if not isinstance(arguments, str):
            got = "nothing" if "arguments" not in call else f"{_json_type(arguments)}: {_preview(arguments)}"
            raise PairFormatError(
                f"field {where + '.arguments'!r} must be a string (the arguments exactly as sent), got {got}"
            )
        for name in ("id", "name", "type"):
            _check_optional_text(call.get(name), f"{where}.{name}")


def _check_optional_text(value: Any, field_name: str) -> None:
    if value is not None and not isinstance(value, str):
        raise PairFormatError(
            f"field {field_name!r} must be a string (or null), got {_json_type(value)}: {_preview(value)}"
        )


def _parse_time(value: Any, name: str) -> datetime:
    try:
        return parse_time(value, name)
    except TimeFormatError as exc:
        raise PairFormatError(str(exc)) from None


def _json_type(value: Any) -> str:
    names = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        list: "a list",
        dict: "an object",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def _preview(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, dict | list) else ""
    return text[:40] if text else ("[...]" if isinstance(value, list) else "{...}")


__all__ = [
    "Pair",
    "PairFormatError",
    "SideOutput",
    "SIDES",
    "SIDE_FIELDS",
    "PART_FIELDS",
    "dumps",
    "loads",
    "prompt_of",
    "content_text",
    "new_pair_id",
    "utc_now",
]
