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

This module picks the reader; `answer_chat.py` reads chat / completions, `answer_responses.py` the Responses
API, and the types and shared helpers live in `answer_common.py` (re-exported here).
"""

from __future__ import annotations

from shadow.sidecar.answer_chat import _ChatStream, _parse_chat_document
from shadow.sidecar.answer_common import (
    AnswerParts,
    Choice,
    ToolCall,
    _json_type,
    _line,
    _loads,
    _preview,
    _Problems,
)
from shadow.sidecar.answer_responses import _parse_response_document, _ResponsesStream
from shadow.sidecar.sse import iter_sse_data

ROUTES = ("chat", "completions", "responses")


def parse_answer(body: bytes | str, *, route: str, streamed: bool) -> AnswerParts:
    """Read a complete answer of `route` ("chat", "completions" or "responses"), SSE when `streamed`."""
    try:
        return _parse(body, route, streamed)
    except Exception as exc:  # the promise is never to raise on what an upstream sent; this is the last net
        return AnswerParts(choices=(), error=_line(f"could not read the answer: {type(exc).__name__}: {exc}"))


# --- entry -------------------------------------------------------------------------------------------------


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


__all__ = ["ROUTES", "AnswerParts", "Choice", "ToolCall", "parse_answer"]
