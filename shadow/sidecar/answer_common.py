"""The pieces every route's reader shares: the answer types, the problems collector and small JSON helpers.

`shadow.sidecar.answer_parts` reads an answer; `answer_chat.py` (chat / completions) and
`answer_responses.py` (the Responses API) do the route-specific work. What both need lives here, so that
neither route module imports the other and this one imports neither: the `ToolCall` / `Choice` /
`AnswerParts` dataclasses (re-exported by `shadow.sidecar.answer_parts`, their public home), `_Problems`,
and the helpers that read loosely typed wire values without raising.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_ERROR_LIMIT = 300
_UNSAFE_IN_ERROR = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str | None
    """Chat: `tool_calls[].id`. Responses: the item's `call_id` (what a function_call_output refers to), else
    its item `id`."""
    name: str | None
    arguments: str
    """The arguments exactly as sent: chat `function.arguments` (deltas concatenated), Responses `arguments`;
    for custom tools, their free-form `input`."""
    type: str = "function"
    """"function" (chat tool calls, the legacy `function_call`, Responses `function_call` items) or what the
    upstream named otherwise ("custom" for custom tools in both APIs)."""

    @property
    def parsed(self) -> Any | None:
        """`arguments` decoded, when they are strict JSON; None otherwise (and for a JSON `null`)."""
        return _strict_json(self.arguments)[0]

    @property
    def valid_json(self) -> bool:
        return _strict_json(self.arguments)[1]


@dataclass(frozen=True, slots=True)
class Choice:
    index: int
    text: str | None
    """None when the choice carried no text at all (a tool-only or refusal turn); "" for empty content."""
    tool_calls: tuple[ToolCall, ...] = ()
    refusal: str | None = None
    reasoning: str | None = None
    """Chat: `reasoning_content` (or `reasoning`). Responses: the reasoning items' summary parts, then their
    reasoning text, joined with a blank line."""
    finish_reason: str | None = None
    """Chat/completions: `finish_reason` (the last one a stream sent). Responses: "stop", "tool_calls" when
    the answer calls a tool, "length" / "content_filter" from `incomplete_details.reason`, or the status
    itself ("failed", "cancelled")."""
    logprobs: Any | None = None
    """Chat: `logprobs.content` (token list); completions: the `logprobs` object; Responses: the output_text
    parts' token lists. Streams: the lists of every chunk, in order."""


@dataclass(frozen=True, slots=True)
class AnswerParts:
    choices: tuple[Choice, ...]
    usage: dict[str, Any] | None = None
    response_id: str | None = None
    model: str | None = None
    error: str | None = None
    """One line, set when (part of) the body could not be understood or is an error object or event."""

    def first(self) -> Choice | None:
        return self.choices[0] if self.choices else None


class _Problems:
    """What could not be understood; `error` is the first, with a count of the others."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)

    @property
    def error(self) -> str | None:
        if not self.items:
            return None
        more = len(self.items) - 1
        return _line(self.items[0] + (f" (and {more} more problem{'s' * (more > 1)})" if more else ""))


# --- small helpers -------------------------------------------------------------------------------------------


_MISSING = object()


def _loads(text: str) -> tuple[Any, str | None]:
    try:
        return json.loads(text), None
    except RecursionError:
        return _MISSING, "nested too deeply"
    except ValueError as exc:  # JSONDecodeError, and int() past sys.get_int_max_str_digits()
        return _MISSING, str(exc)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _strict_json(text: str) -> tuple[Any, bool]:
    """(value, True) when `text` is strict JSON (no NaN/Infinity, which json.loads would accept)."""
    try:
        return json.loads(text, parse_constant=_reject_constant), True
    except (ValueError, RecursionError, TypeError):
        return None, False


def _error_object(obj: dict[str, Any]) -> str | None:
    """The message of an error body or event: {"error": {...}} (OpenAI) or {"object": "error", ...} (vLLM)."""
    error = obj.get("error")
    if error:
        return _error_text(error)
    if obj.get("object") == "error" or obj.get("type") == "error":
        return _error_text(obj)
    return None


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        message = error.get("message")
        code = error.get("code")
        if isinstance(message, str) and message:
            prefix = code if isinstance(code, str) and code and code not in message else None
            return _line(f"{prefix}: {message}" if prefix else message)
        kind = error.get("type") or error.get("code")
        return _line(str(kind) if kind else f"error object: {_preview(json.dumps(error, default=str))}")
    return _line(str(error))


def _arguments(value: Any) -> str:
    """Arguments as sent; a server that sends an object instead of a JSON string gets it written as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return ""


def _add_piece(pieces: list[str], value: Any) -> None:
    if isinstance(value, str):
        if value:
            pieces.append(value)
    elif isinstance(value, (dict, list)):
        pieces.append(_arguments(value))


def _join(pieces: list[str]) -> str:
    """Concatenate stream pieces; a surrogate pair that two pieces split is joined into its character."""
    text = "".join(pieces)
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return text


def _int(value: Any, default: Any) -> Any:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _dict(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _preview(text: str) -> str:
    return repr(text[:80]) + ("…" if len(text) > 80 else "")


def _line(text: str) -> str:
    """One short, storable line."""
    flat = " ".join(_UNSAFE_IN_ERROR.sub("\ufffd", str(text)).split())
    return flat if len(flat) <= _ERROR_LIMIT else flat[: _ERROR_LIMIT - 1] + "…"
