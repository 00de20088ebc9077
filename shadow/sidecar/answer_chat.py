"""Chat and completions answers: one JSON document, or an SSE stream of chunks with their accumulators.

Split from `shadow.sidecar.answer_parts` (which picks the route and calls in here) so that each API's wire
format is read in one module; the types and shared helpers come from `shadow.sidecar.answer_common`.
"""

from __future__ import annotations

from typing import Any

from shadow.sidecar.answer_common import (
    AnswerParts,
    Choice,
    ToolCall,
    _add_piece,
    _arguments,
    _dict,
    _error_object,
    _int,
    _join,
    _json_type,
    _list,
    _loads,
    _preview,
    _Problems,
    _str,
)

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
