"""Responses API answers: one Response document, or an SSE stream of events rebuilt into output items.

Split from `shadow.sidecar.answer_parts` (which picks the route and calls in here) so that each API's wire
format is read in one module; the types and shared helpers come from `shadow.sidecar.answer_common`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from shadow.sidecar.answer_common import (
    AnswerParts,
    Choice,
    ToolCall,
    _add_piece,
    _arguments,
    _dict,
    _error_object,
    _error_text,
    _int,
    _join,
    _json_type,
    _list,
    _loads,
    _preview,
    _Problems,
    _str,
)

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
