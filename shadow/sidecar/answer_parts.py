"""Every part of an answer: text, tool calls, refusal, reasoning, logprobs, each choice, and the Responses API.

`capture.parse_output` keeps only the first choice's plain text. This module reads the same complete body (a
JSON document or a whole SSE stream, already decompressed) into `AnswerParts`: one `Choice` per choice index,
each with its text, tool calls (arguments exactly as sent, deltas concatenated in order), refusal, reasoning
and logprobs, plus usage, id, model and a one-line error. Pure: no I/O, and it never raises on what an
upstream sent; what could be read is kept next to the `error` that says what could not.

Wire formats follow the openai SDK's types (`openai/types/chat/chat_completion*.py`,
`openai/types/responses/*.py`), plus the `reasoning_content` / `reasoning` fields that vLLM, DeepSeek and
llama.cpp add to chat messages and deltas.

Strings are what the upstream sent. JSON escapes can carry lone surrogates (`"\\ud800"`), which no UTF-8
encoder accepts; they are left as they are (shadow.core.storable replaces them and notes it), except that a
surrogate pair split across two stream deltas is joined back into its one character.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shadow.sidecar.sse import iter_sse_data

ROUTES = ("chat", "completions", "responses")

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


def parse_answer(body: bytes | str, *, route: str, streamed: bool) -> AnswerParts:
    """Read a complete answer of `route` ("chat", "completions" or "responses"), SSE when `streamed`."""
    try:
        return _parse(body, route, streamed)
    except Exception as exc:  # the promise is never to raise on what an upstream sent; this is the last net
        return AnswerParts(choices=(), error=_line(f"could not read the answer: {type(exc).__name__}: {exc}"))


# --- entry -------------------------------------------------------------------------------------------------


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


def _parse(body: bytes | str, route: str, streamed: bool) -> AnswerParts:
    if route not in ROUTES:
        return AnswerParts(choices=(), error=_line(f"unknown route {route!r}; expected one of {ROUTES}"))
    if isinstance(body, (bytes, bytearray, memoryview)):
        text = bytes(body).decode("utf-8", errors="replace")
    elif isinstance(body, str):
        text = body
    else:
        return AnswerParts(choices=(), error=f"body is {type(body).__name__}, not bytes or str")
    if text.startswith("\ufeff"):
        text = text[1:]
    problems = _Problems()
    if streamed:
        payloads = iter_sse_data(text)
        if not payloads and text.lstrip().startswith(("{", "[")):
            # An upstream that refuses a stream request answers with a plain JSON (error) body.
            return _parse_document(text, route, problems)
        if not payloads:
            problems.add("empty stream" if not text.strip() else "no SSE data lines in the stream")
            return AnswerParts(choices=(), error=problems.error)
        if route == "responses":
            return _ResponsesStream(problems).run(payloads)
        return _ChatStream(route, problems).run(payloads)
    return _parse_document(text, route, problems)


def _parse_document(text: str, route: str, problems: _Problems) -> AnswerParts:
    if not text.strip():
        problems.add("empty body")
        return AnswerParts(choices=(), error=problems.error)
    obj, failure = _loads(text)
    if failure is not None:
        stripped = text.lstrip()
        if stripped.startswith(("data:", "event:", ":")) and iter_sse_data(text):
            return _parse(text, route, True)  # an SSE body where JSON was expected: read what it is
        problems.add(f"response is not JSON ({failure}): {_preview(text)}")
        return AnswerParts(choices=(), error=problems.error)
    if not isinstance(obj, dict):
        problems.add(f"response JSON is {_json_type(obj)}, not an object")
        return AnswerParts(choices=(), error=problems.error)
    if route == "responses":
        return _parse_response_document(obj, problems)
    return _parse_chat_document(obj, route, problems)


# --- chat and completions, one JSON document ----------------------------------------------------------------


def _parse_chat_document(obj: dict[str, Any], route: str, problems: _Problems) -> AnswerParts:
    error = _error_object(obj)
    if error is not None:
        problems.add(error)
    choices: list[Choice] = []
    raw_choices = obj.get("choices")
    if raw_choices is not None and not isinstance(raw_choices, list):
        problems.add(f"choices is {_json_type(raw_choices)}, not an array")
    elif raw_choices is None and error is None:
        problems.add("response has no choices")
    for position, raw in enumerate(raw_choices if isinstance(raw_choices, list) else ()):
        if not isinstance(raw, dict):
            problems.add(f"choice {position} is {_json_type(raw)}, not an object")
            continue
        index = _int(raw.get("index"), position)
        if route == "completions":
            choices.append(
                Choice(
                    index=index,
                    text=_str(raw.get("text")),
                    finish_reason=_str(raw.get("finish_reason")),
                    logprobs=raw.get("logprobs"),
                )
            )
            continue
        message = raw.get("message")
        if message is None:
            message = {}
        if not isinstance(message, dict):
            problems.add(f"choice {index} message is {_json_type(message)}, not an object")
            message = {}
        text, refusal_parts = _content_text(message.get("content"))
        refusal = _str(message.get("refusal"))
        if refusal is None and refusal_parts is not None:
            refusal = refusal_parts
        raw_calls = message.get("tool_calls")
        if raw_calls is not None and not isinstance(raw_calls, list):
            problems.add(f"choice {index} tool_calls is {_json_type(raw_calls)}, not an array")
        calls = [_chat_tool_call(c, problems) for c in _list(raw_calls)]
        legacy = message.get("function_call")
        # Servers that speak both (llama-cpp-python) repeat the first tool call as the deprecated
        # `function_call`: it is a call of its own only when there are no tool calls.
        if isinstance(legacy, dict) and not any(calls):
            calls.append(ToolCall(None, _str(legacy.get("name")), _arguments(legacy.get("arguments"))))
        choices.append(
            Choice(
                index=index,
                text=text,
                tool_calls=tuple(c for c in calls if c is not None),
                refusal=refusal,
                reasoning=_reasoning_field(message),
                finish_reason=_str(raw.get("finish_reason")),
                logprobs=_chat_logprobs(raw.get("logprobs")),
            )
        )
    choices.sort(key=lambda c: c.index)
    return AnswerParts(
        choices=tuple(choices),
        usage=_dict(obj.get("usage")),
        response_id=_str(obj.get("id")),
        model=_str(obj.get("model")),
        error=problems.error,
    )


def _content_text(content: Any) -> tuple[str | None, str | None]:
    """(text, refusal) of a message's `content`: a string, null, or a list of typed parts."""
    if isinstance(content, str):
        return content, None
    if not isinstance(content, list):
        return None, None
    texts: list[str] = []
    refusals: list[str] = []
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in ("text", "output_text") and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            refusals.append(part["refusal"])
    return "".join(texts), ("".join(refusals) if refusals else None)


def _chat_tool_call(raw: Any, problems: _Problems) -> ToolCall | None:
    if not isinstance(raw, dict):
        problems.add(f"tool call is {_json_type(raw)}, not an object")
        return None
    kind = _str(raw.get("type")) or "function"
    custom = raw.get("custom")
    if isinstance(custom, dict) and not isinstance(raw.get("function"), dict):
        return ToolCall(_str(raw.get("id")), _str(custom.get("name")), _arguments(custom.get("input")), kind)
    function = raw.get("function")
    function = function if isinstance(function, dict) else {}
    return ToolCall(
        _str(raw.get("id")), _str(function.get("name")), _arguments(function.get("arguments")), kind
    )


def _reasoning_field(message: dict[str, Any]) -> str | None:
    """`reasoning_content` (DeepSeek, vLLM, llama.cpp) or `reasoning` (newer vLLM, OpenRouter). Servers in
    transition send both with the same text, so this takes one, never both."""
    value = message.get("reasoning_content")
    if isinstance(value, str):
        return value
    value = message.get("reasoning")
    return value if isinstance(value, str) else None


def _chat_logprobs(value: Any) -> Any | None:
    if isinstance(value, dict):
        content = value.get("content")
        return content if isinstance(content, list) else None
    return value if isinstance(value, list) else None


# --- chat and completions, SSE -------------------------------------------------------------------------------


class _CallAcc:
    __slots__ = ("arguments", "custom", "id", "name", "seq", "type", "wire_index")

    def __init__(self, wire_index: int, seq: int) -> None:
        self.wire_index = wire_index
        self.seq = seq
        self.id: str | None = None
        self.name: list[str] = []
        self.type: str | None = None
        self.custom = False
        self.arguments: list[str] = []

    def add_name(self, name: Any) -> None:
        # Names arrive whole in a call's first delta (the SDK would concatenate further pieces); a server that
        # repeats the name in every delta must not make "fnfn" of it.
        if isinstance(name, str) and name and _join(self.name) != name:
            self.name.append(name)

    def build(self) -> ToolCall:
        kind = self.type or ("custom" if self.custom else "function")
        return ToolCall(self.id, _join(self.name) if self.name else None, _join(self.arguments), kind)


class _ChoiceAcc:
    __slots__ = (
        "by_index",
        "calls",
        "finish_reason",
        "function_call",
        "index",
        "last_call",
        "logprobs",
        "reasoning",
        "refusal",
        "saw_text",
        "text",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.text: list[str] = []
        self.saw_text = False
        self.refusal: list[str] = []
        self.reasoning: list[str] = []
        self.finish_reason: str | None = None
        self.logprobs: Any | None = None
        self.calls: list[_CallAcc] = []
        self.by_index: dict[int, _CallAcc] = {}
        self.last_call: _CallAcc | None = None
        self.function_call: _CallAcc | None = None

    def _new_call(self, wire_index: int) -> _CallAcc:
        call = _CallAcc(wire_index, len(self.calls))
        self.calls.append(call)
        self.by_index[wire_index] = call
        return call

    def add_tool_delta(self, entry: Any, problems: _Problems) -> None:
        if not isinstance(entry, dict):
            problems.add(f"tool call delta is {_json_type(entry)}, not an object")
            return
        wire_index = _int(entry.get("index"), None)
        call_id = _str(entry.get("id")) or None
        call: _CallAcc | None
        if wire_index is None:
            # No `index` (some servers): an unseen id opens a new call; no id continues the last one.
            if call_id is not None:
                call = next((c for c in self.calls if c.id == call_id), None)
                if call is None:
                    call = self._new_call(max((c.wire_index for c in self.calls), default=-1) + 1)
            else:
                call = self.last_call or self._new_call(0)
        else:
            call = self.by_index.get(wire_index)
            if call is not None and call_id is not None and call.id is not None and call.id != call_id:
                call = None  # a server that numbers every call 0: a new id is a new call
            if call is None:
                call = self._new_call(wire_index)
        self.last_call = call
        if call_id is not None and call.id is None:
            call.id = call_id
        kind = _str(entry.get("type"))
        if kind:
            call.type = kind
        function = entry.get("function")
        custom = entry.get("custom")
        if isinstance(function, dict):
            call.add_name(function.get("name"))
            _add_piece(call.arguments, function.get("arguments"))
        elif isinstance(custom, dict):
            call.custom = True
            call.add_name(custom.get("name"))
            _add_piece(call.arguments, custom.get("input"))

    def add_function_call(self, delta: dict[str, Any]) -> None:
        """The deprecated `delta.function_call` ({name, arguments} in pieces): one call, after the tool calls."""
        if self.function_call is None:
            self.function_call = _CallAcc(0, 0)
        self.function_call.add_name(delta.get("name"))
        _add_piece(self.function_call.arguments, delta.get("arguments"))

    def build(self) -> Choice:
        calls = [c.build() for c in sorted(self.calls, key=lambda c: (c.wire_index, c.seq))]
        if self.function_call is not None and not calls:  # a repeat of the tool calls when both are sent
            calls.append(self.function_call.build())
        text = _join(self.text)
        refusal = _join(self.refusal) or None
        if not self.saw_text or (not text and (calls or refusal)):
            text_value: str | None = None  # the empty `content: ""` of a first delta is framing, not text
        else:
            text_value = text
        return Choice(
            index=self.index,
            text=text_value,
            tool_calls=tuple(calls),
            refusal=refusal,
            reasoning=_join(self.reasoning) or None,
            finish_reason=self.finish_reason,
            logprobs=self.logprobs,
        )


class _ChatStream:
    def __init__(self, route: str, problems: _Problems) -> None:
        self.route = route
        self.problems = problems
        self.choices: dict[int, _ChoiceAcc] = {}
        self.usage: dict[str, Any] | None = None
        self.response_id: str | None = None
        self.model: str | None = None

    def run(self, payloads: list[str]) -> AnswerParts:
        done = False
        events = 0
        for number, payload in enumerate(payloads, 1):
            if payload.strip() == "[DONE]":
                done = True
                break
            event, failure = _loads(payload)
            if failure is not None:
                self.problems.add(f"stream event {number} is not JSON ({failure}): {_preview(payload)}")
                continue
            if not isinstance(event, dict):
                self.problems.add(f"stream event {number} is {_json_type(event)}, not an object")
                continue
            events += 1
            self.event(event, number)
        built = [self.choices[i].build() for i in sorted(self.choices)]
        if not events:
            self.problems.add("stream carried no events" if done else "stream carried no readable events")
        elif not done and not any(c.finish_reason for c in built) and not self.problems.items:
            self.problems.add("stream ended without [DONE] and without a finish_reason (cut short?)")
        return AnswerParts(
            choices=tuple(built),
            usage=self.usage,
            response_id=self.response_id,
            model=self.model,
            error=self.problems.error,
        )

    def event(self, event: dict[str, Any], number: int) -> None:
        error = _error_object(event)
        if error is not None:
            self.problems.add(error)
        if self.response_id is None:
            self.response_id = _str(event.get("id"))
        if self.model is None:
            self.model = _str(event.get("model"))
        usage = _dict(event.get("usage"))
        if usage:  # `null` (or {}) on every chunk but the last
            self.usage = usage
        choices = event.get("choices")
        if choices is None:
            return
        if not isinstance(choices, list):
            self.problems.add(f"stream event {number}: choices is {_json_type(choices)}, not an array")
            return
        for raw in choices:
            if not isinstance(raw, dict):
                self.problems.add(f"stream event {number}: a choice is {_json_type(raw)}, not an object")
                continue
            self.choice(raw, number)

    def choice(self, raw: dict[str, Any], number: int) -> None:
        index = _int(raw.get("index"), 0)
        acc = self.choices.get(index)
        if acc is None:
            acc = self.choices[index] = _ChoiceAcc(index)
        finish = _str(raw.get("finish_reason"))
        if finish:
            acc.finish_reason = finish
        if self.route == "completions":
            piece = raw.get("text")
            if isinstance(piece, str):
                acc.saw_text = True
                acc.text.append(piece)
            _merge_completion_logprobs(acc, raw.get("logprobs"))
            return
        logprobs = _chat_logprobs(raw.get("logprobs"))
        if logprobs is not None:
            if acc.logprobs is None:
                acc.logprobs = []
            acc.logprobs.extend(logprobs)
        delta = raw.get("delta")
        if delta is None:
            return
        if not isinstance(delta, dict):
            self.problems.add(f"stream event {number}: delta is {_json_type(delta)}, not an object")
            return
        content = delta.get("content")
        if isinstance(content, str):
            acc.saw_text = True
            acc.text.append(content)
        elif isinstance(content, list):
            text, refusal = _content_text(content)
            acc.saw_text = True
            acc.text.append(text or "")
            if refusal:
                acc.refusal.append(refusal)
        _add_piece(acc.refusal, delta.get("refusal"))
        reasoning = _reasoning_field(delta)
        if reasoning:
            acc.reasoning.append(reasoning)
        tool_calls = delta.get("tool_calls")
        if isinstance(tool_calls, list):
            for entry in tool_calls:
                acc.add_tool_delta(entry, self.problems)
        elif tool_calls is not None:
            self.problems.add(f"stream event {number}: tool_calls is {_json_type(tool_calls)}, not an array")
        legacy = delta.get("function_call")
        if isinstance(legacy, dict):
            acc.add_function_call(legacy)


def _merge_completion_logprobs(acc: _ChoiceAcc, value: Any) -> None:
    """/v1/completions logprobs are parallel lists (tokens, token_logprobs, top_logprobs, text_offset)."""
    if not isinstance(value, dict):
        return
    if acc.logprobs is None:
        acc.logprobs = {}
    for key, item in value.items():
        if isinstance(item, list):
            previous = acc.logprobs.get(key)
            if isinstance(previous, list):
                previous.extend(item)
            else:
                acc.logprobs[key] = list(item)  # a copy: later chunks extend it
        elif key not in acc.logprobs:
            acc.logprobs[key] = item


# --- Responses API -------------------------------------------------------------------------------------------


def _parse_response_document(obj: dict[str, Any], problems: _Problems) -> AnswerParts:
    is_response = obj.get("object") == "response" or "output" in obj or "status" in obj
    if not is_response:
        error = _error_object(obj)
        problems.add(error or "response has no output")
        return AnswerParts(choices=(), error=problems.error)
    output = obj.get("output")
    if output is not None and not isinstance(output, list):
        problems.add(f"output is {_json_type(output)}, not an array")
    items = output if isinstance(output, list) else []
    choice = _response_choice(items, obj, problems)
    if not items and choice.text is None and isinstance(obj.get("output_text"), str):
        choice = dataclasses.replace(
            choice, text=obj["output_text"]
        )  # a server that sends only the SDK's shortcut
    _response_error(obj, problems)
    return AnswerParts(
        choices=(choice,),
        usage=_dict(obj.get("usage")),
        response_id=_str(obj.get("id")),
        model=_str(obj.get("model")),
        error=problems.error,
    )


def _response_error(response: dict[str, Any], problems: _Problems) -> None:
    error = response.get("error")
    if error:
        problems.add(_error_text(error))
    elif response.get("status") == "failed":
        problems.add("response failed")


def _response_choice(items: Iterable[Any], response: dict[str, Any], problems: _Problems) -> Choice:
    """The one choice of a Response: every output item, in order."""
    texts: list[str] = []
    saw_text = False
    refusals: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    logprobs: list[Any] = []
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            problems.add(f"output item {position} is {_json_type(item)}, not an object")
            continue
        kind = item.get("type")
        if kind == "message":
            content = item.get("content")
            if isinstance(content, str):
                texts.append(content)
                saw_text = True
            for part in _list(content):
                if not isinstance(part, dict):
                    continue
                part_kind = part.get("type")
                if part_kind in ("output_text", "text") and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                    saw_text = True
                    if isinstance(part.get("logprobs"), list):
                        logprobs.extend(part["logprobs"])
                elif part_kind == "refusal" and isinstance(part.get("refusal"), str):
                    refusals.append(part["refusal"])
        elif kind in ("function_call", "custom_tool_call"):
            call_id = _str(item.get("call_id")) or _str(item.get("id"))
            if kind == "function_call":
                calls.append(ToolCall(call_id, _str(item.get("name")), _arguments(item.get("arguments"))))
            else:
                calls.append(
                    ToolCall(call_id, _str(item.get("name")), _arguments(item.get("input")), "custom")
                )
        elif kind == "reasoning":
            for key in ("summary", "content"):
                for part in _list(item.get(key)):
                    if isinstance(part, dict) and isinstance(part.get("text"), str) and part["text"]:
                        reasoning.append(part["text"])
    return Choice(
        index=0,
        text="".join(texts) if saw_text else None,  # joined as the SDK's Response.output_text does
        tool_calls=tuple(calls),
        refusal="".join(refusals) if refusals else None,
        reasoning="\n\n".join(reasoning) if reasoning else None,
        finish_reason=_response_finish(response, bool(calls)),
        logprobs=logprobs or None,
    )


_INCOMPLETE_REASONS = {"max_output_tokens": "length", "content_filter": "content_filter"}


def _response_finish(response: dict[str, Any], has_calls: bool) -> str | None:
    status = _str(response.get("status"))
    if status == "completed":
        return "tool_calls" if has_calls else "stop"
    if status == "incomplete":
        details = response.get("incomplete_details")
        reason = _str(details.get("reason")) if isinstance(details, dict) else None
        return _INCOMPLETE_REASONS.get(reason or "", reason or "incomplete")
    if status in ("failed", "cancelled"):
        return status
    return None  # in_progress, queued, or no status: the answer did not finish


class _ItemAcc:
    """One output item as a Responses stream builds it, turned back into the item dict at the end."""

    __slots__ = ("added", "arguments", "arguments_done", "content", "reasoning", "summary", "type")

    def __init__(self, kind: str | None) -> None:
        self.type = kind
        self.added: dict[str, Any] = {}
        self.arguments: list[str] = []
        self.arguments_done: str | None = None
        # (content_index, "output_text" | "refusal") -> [pieces, done text or None, logprobs]
        self.content: dict[tuple[int, str], list[Any]] = {}
        self.summary: dict[int, list[Any]] = {}  # summary_index -> [pieces, done text or None]
        self.reasoning: dict[int, list[Any]] = {}  # content_index -> [pieces, done text or None]

    def part(self, table: dict[Any, list[Any]], key: Any) -> list[Any]:
        slot = table.get(key)
        if slot is None:
            slot = table[key] = [[], None, []]
        return slot

    def to_item(self) -> dict[str, Any]:
        item = dict(self.added)
        kind = self.type or _str(item.get("type"))
        item["type"] = kind
        if kind in ("function_call", "custom_tool_call"):
            key = "arguments" if kind == "function_call" else "input"
            if self.arguments_done is not None:
                item[key] = self.arguments_done
            elif self.arguments or not isinstance(item.get(key), str):
                item[key] = _join(self.arguments)
        elif kind == "message":
            parts = []
            for (_, part_kind), (pieces, done, logprobs) in sorted(self.content.items()):
                value = done if done is not None else _join(pieces)
                if part_kind == "refusal":
                    parts.append({"type": "refusal", "refusal": value})
                else:
                    parts.append({"type": "output_text", "text": value, "logprobs": logprobs})
            if parts or not isinstance(item.get("content"), list):
                item["content"] = parts
        elif kind == "reasoning":
            if self.summary:
                item["summary"] = [
                    {"type": "summary_text", "text": done if done is not None else _join(pieces)}
                    for _, (pieces, done, _lp) in sorted(self.summary.items())
                ]
            if self.reasoning:
                item["content"] = [
                    {"type": "reasoning_text", "text": done if done is not None else _join(pieces)}
                    for _, (pieces, done, _lp) in sorted(self.reasoning.items())
                ]
        return item


_TERMINAL = {
    "response.completed": "completed",
    "response.incomplete": "incomplete",
    "response.failed": "failed",
}


class _ResponsesStream:
    def __init__(self, problems: _Problems) -> None:
        self.problems = problems
        self.items: dict[int, _ItemAcc] = {}
        self.item_ids: dict[str, int] = {}
        self.done_items: dict[int, dict[str, Any]] = {}
        self.response: dict[str, Any] = {}
        self.final: dict[str, Any] | None = None
        self.errored = False

    def run(self, payloads: list[str]) -> AnswerParts:
        for number, payload in enumerate(payloads, 1):
            if payload.strip() == "[DONE]":
                break
            event, failure = _loads(payload)
            if failure is not None:
                self.problems.add(f"stream event {number} is not JSON ({failure}): {_preview(payload)}")
                continue
            if not isinstance(event, dict):
                self.problems.add(f"stream event {number} is {_json_type(event)}, not an object")
                continue
            self.event(event)
        response = self.final if self.final is not None else self.response
        if self.final is None and not (self.items or self.done_items or self.response):
            if not self.problems.items:
                self.problems.add("stream carried no Responses events")
            return AnswerParts(choices=(), error=self.problems.error)
        if self.final is None and not self.errored:
            self.problems.add("stream ended without response.completed, .incomplete or .failed (cut short?)")
        final_output = response.get("output") if self.final is not None else None
        final_output = final_output if isinstance(final_output, list) else []
        indices = sorted({*self.items, *self.done_items, *range(len(final_output))})
        items: list[Any] = []
        for index in indices:
            # The final Response is the whole answer; then the item each output_item.done sent; then the deltas.
            if 0 <= index < len(final_output) and isinstance(final_output[index], dict):
                items.append(final_output[index])
            elif index in self.done_items:
                items.append(self.done_items[index])
            elif index in self.items:
                items.append(self.items[index].to_item())
        if self.final is not None:
            _response_error(self.final, self.problems)
        return AnswerParts(
            choices=(_response_choice(items, response, self.problems),),
            usage=_dict(response.get("usage")),
            response_id=_str(response.get("id")) or _str(self.response.get("id")),
            model=_str(response.get("model")) or _str(self.response.get("model")),
            error=self.problems.error,
        )

    def locate(self, event: dict[str, Any], kind: str | None, item_id: str | None = None) -> int:
        """The output index an event is about: its `output_index`, else the index its `item_id` was seen at."""
        index = _int(event.get("output_index"), None)
        item_id = item_id or _str(event.get("item_id"))
        if index is None and item_id is not None:
            index = self.item_ids.get(item_id)
        if index is None and item_id is None and self.items:
            # Neither index nor id (a minimal server): the last item, while it is of the same kind.
            last = max(self.items)
            if self.items[last].type in (kind, None):
                index = last
        if index is None:
            index = max(self.items, default=-1) + 1
        if item_id is not None:
            self.item_ids.setdefault(item_id, index)
        acc = self.items.get(index)
        if acc is None:
            self.items[index] = _ItemAcc(kind)
        elif acc.type is None:
            acc.type = kind
        return index

    def item(self, event: dict[str, Any], kind: str | None) -> _ItemAcc:
        return self.items[self.locate(event, kind)]

    def event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if not isinstance(kind, str):
            error = _error_object(event)
            if error is not None:
                self.errored = True
                self.problems.add(error)
            return
        if kind == "error":
            self.errored = True
            inner = event.get("error")
            self.problems.add(_error_text(inner if inner is not None else event))
            return
        response = event.get("response")
        if kind in _TERMINAL:
            if isinstance(response, dict):
                self.final = {**response, "status": _str(response.get("status")) or _TERMINAL[kind]}
            else:
                self.final = {"status": _TERMINAL[kind]}
                self.problems.add(f"{kind} event without a response object")
            return
        if kind in ("response.created", "response.in_progress", "response.queued"):
            if isinstance(response, dict):
                self.response.update({k: v for k, v in response.items() if v is not None})
            return
        if kind in ("response.output_item.added", "response.output_item.done"):
            self.output_item(event, done=kind.endswith(".done"))
            return
        handler = _DELTA_HANDLERS.get(kind)
        if handler is not None:
            handler(self, event)

    def output_item(self, event: dict[str, Any], *, done: bool) -> None:
        item = event.get("item")
        if not isinstance(item, dict):
            self.problems.add(f"{event.get('type')} event without an item object")
            return
        kind = _str(item.get("type"))
        index = self.locate(event, kind, _str(item.get("id")))
        if done:
            self.done_items[index] = item
        else:
            acc = self.items[index]
            acc.added = item
            acc.type = kind or acc.type

    def text_delta(self, event: dict[str, Any]) -> None:
        acc = self.item(event, "message")
        slot = acc.part(acc.content, (_content_index(event), "output_text"))
        _add_piece(slot[0], event.get("delta"))
        if isinstance(event.get("logprobs"), list):
            slot[2].extend(event["logprobs"])

    def text_done(self, event: dict[str, Any]) -> None:
        acc = self.item(event, "message")
        slot = acc.part(acc.content, (_content_index(event), "output_text"))
        if isinstance(event.get("text"), str):
            slot[1] = event["text"]

    def refusal_delta(self, event: dict[str, Any]) -> None:
        acc = self.item(event, "message")
        _add_piece(acc.part(acc.content, (_content_index(event), "refusal"))[0], event.get("delta"))

    def refusal_done(self, event: dict[str, Any]) -> None:
        acc = self.item(event, "message")
        if isinstance(event.get("refusal"), str):
            acc.part(acc.content, (_content_index(event), "refusal"))[1] = event["refusal"]

    def arguments_delta(self, event: dict[str, Any], kind: str = "function_call") -> None:
        _add_piece(self.item(event, kind).arguments, event.get("delta"))

    def arguments_done(
        self, event: dict[str, Any], kind: str = "function_call", key: str = "arguments"
    ) -> None:
        value = event.get(key)
        if isinstance(value, str):
            self.item(event, kind).arguments_done = value

    def custom_delta(self, event: dict[str, Any]) -> None:
        self.arguments_delta(event, "custom_tool_call")

    def custom_done(self, event: dict[str, Any]) -> None:
        self.arguments_done(event, "custom_tool_call", "input")

    def summary_delta(self, event: dict[str, Any]) -> None:
        acc = self.item(event, "reasoning")
        _add_piece(acc.part(acc.summary, _int(event.get("summary_index"), 0))[0], event.get("delta"))

    def summary_done(self, event: dict[str, Any]) -> None:
        acc = self.item(event, "reasoning")
        if isinstance(event.get("text"), str):
            acc.part(acc.summary, _int(event.get("summary_index"), 0))[1] = event["text"]

    def reasoning_delta(self, event: dict[str, Any]) -> None:
        acc = self.item(event, "reasoning")
        _add_piece(acc.part(acc.reasoning, _content_index(event))[0], event.get("delta"))

    def reasoning_done(self, event: dict[str, Any]) -> None:
        acc = self.item(event, "reasoning")
        if isinstance(event.get("text"), str):
            acc.part(acc.reasoning, _content_index(event))[1] = event["text"]


_DELTA_HANDLERS = {
    "response.output_text.delta": _ResponsesStream.text_delta,
    "response.output_text.done": _ResponsesStream.text_done,
    "response.refusal.delta": _ResponsesStream.refusal_delta,
    "response.refusal.done": _ResponsesStream.refusal_done,
    "response.function_call_arguments.delta": _ResponsesStream.arguments_delta,
    "response.function_call_arguments.done": _ResponsesStream.arguments_done,
    "response.custom_tool_call_input.delta": _ResponsesStream.custom_delta,
    "response.custom_tool_call_input.done": _ResponsesStream.custom_done,
    "response.reasoning_summary_text.delta": _ResponsesStream.summary_delta,
    "response.reasoning_summary_text.done": _ResponsesStream.summary_done,
    "response.reasoning_text.delta": _ResponsesStream.reasoning_delta,
    "response.reasoning_text.done": _ResponsesStream.reasoning_done,
}


def _content_index(event: dict[str, Any]) -> int:
    return _int(event.get("content_index"), 0)


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


__all__ = ["ROUTES", "AnswerParts", "Choice", "ToolCall", "parse_answer"]
