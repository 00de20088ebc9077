"""answer_parts: every part of an answer, read from wire bytes built the way the openai SDK's types write them.

Streams are serialized as SSE from real chunk/event objects: the SDK's pydantic models dumped with
`model_dump_json(exclude_none=True)`, or plain dicts shaped like them where a server adds fields the SDK does
not know (reasoning_content) or breaks the format on purpose.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.chat.chat_completion import Choice as CompletionChoice
from openai.types.chat.chat_completion import ChoiceLogprobs
from openai.types.chat.chat_completion_chunk import (
    Choice as ChunkChoice,
)
from openai.types.chat.chat_completion_chunk import (
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
)
from openai.types.chat.chat_completion_message import ChatCompletionMessage
from openai.types.chat.chat_completion_message_custom_tool_call import (
    ChatCompletionMessageCustomToolCall,
    Custom,
)
from openai.types.chat.chat_completion_message_function_tool_call import (
    ChatCompletionMessageFunctionToolCall,
    Function,
)
from openai.types.chat.chat_completion_token_logprob import ChatCompletionTokenLogprob
from openai.types.completion_usage import CompletionUsage
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseCreatedEvent,
    ResponseErrorEvent,
    ResponseFailedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseFunctionToolCall,
    ResponseIncompleteEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputRefusal,
    ResponseOutputText,
    ResponseReasoningItem,
    ResponseReasoningSummaryTextDeltaEvent,
    ResponseReasoningTextDeltaEvent,
    ResponseRefusalDeltaEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
    ResponseUsage,
)
from openai.types.responses.response import IncompleteDetails
from openai.types.responses.response_error import ResponseError
from openai.types.responses.response_reasoning_item import Content as ReasoningContent
from openai.types.responses.response_reasoning_item import Summary
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails
from pydantic import BaseModel

from shadow.sidecar.answer_parts import AnswerParts, Choice, ToolCall, parse_answer

# --- wire helpers -------------------------------------------------------------------------------------------


def wire(obj: Any) -> str:
    if isinstance(obj, BaseModel):
        return obj.model_dump_json(exclude_none=True)
    if isinstance(obj, str):
        return obj
    return json.dumps(obj, ensure_ascii=False)


def sse(*events: Any, done: bool = True, named: bool = False) -> bytes:
    """An SSE body: one `data:` event per chunk, `event:` names too when `named` (as the Responses API does)."""
    out = []
    for event in events:
        text = wire(event)
        if named:
            out.append(f"event: {json.loads(text)['type']}\n")
        out.append(f"data: {text}\n\n")
    if done:
        out.append("data: [DONE]\n\n")
    return "".join(out).encode("utf-8")


def chunk(
    *choices: ChunkChoice, usage: CompletionUsage | None = None, model: str = "gpt-4o-mini"
) -> ChatCompletionChunk:
    return ChatCompletionChunk(
        id="chatcmpl-1",
        created=1700000000,
        model=model,
        object="chat.completion.chunk",
        choices=list(choices),
        usage=usage,
    )


def delta(index: int = 0, finish_reason: str | None = None, **fields: Any) -> ChunkChoice:
    return ChunkChoice(index=index, delta=ChoiceDelta(**fields), finish_reason=finish_reason)


def call_delta(
    index: int, *, id: str | None = None, name: str | None = None, args: str | None = None
) -> ChoiceDeltaToolCall:
    return ChoiceDeltaToolCall(
        index=index,
        id=id,
        type="function" if id else None,
        function=ChoiceDeltaToolCallFunction(name=name, arguments=args),
    )


def pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


USAGE = CompletionUsage(prompt_tokens=12, completion_tokens=30, total_tokens=42)


def chat(body: bytes | str, streamed: bool = True) -> AnswerParts:
    return parse_answer(body, route="chat", streamed=streamed)


def only(parts: AnswerParts) -> Choice:
    assert len(parts.choices) == 1, parts
    return parts.choices[0]


# --- ToolCall ------------------------------------------------------------------------------------------------


def test_tool_call_parsed_and_valid_json() -> None:
    call = ToolCall("call_1", "get_weather", '{"city": "北京", "days": 3}')
    assert call.type == "function"
    assert call.valid_json and call.parsed == {"city": "北京", "days": 3}
    assert not ToolCall(None, "f", '{"city": "Par').valid_json
    assert ToolCall(None, "f", '{"city": "Par').parsed is None
    assert not ToolCall(None, "f", "").valid_json  # some servers send "" for a call without arguments
    assert ToolCall(None, "f", "null").valid_json and ToolCall(None, "f", "null").parsed is None
    # json.loads accepts NaN and Infinity; JSON does not.
    assert not ToolCall(None, "f", '{"x": NaN}').valid_json
    deep = "[" * 5000 + "]" * 5000
    assert not ToolCall(None, "f", deep).valid_json and ToolCall(None, "f", deep).parsed is None
    assert not ToolCall(None, "f", "9" * 5000).valid_json  # past Python's int digit limit


def test_answer_parts_first() -> None:
    assert AnswerParts(choices=()).first() is None
    choice = Choice(index=0, text="x")
    assert AnswerParts(choices=(choice,)).first() is choice


# --- chat, one JSON document ---------------------------------------------------------------------------------


def test_chat_json_text_usage_and_logprobs() -> None:
    logprob = ChatCompletionTokenLogprob(token="Hi", bytes=[72, 105], logprob=-0.1, top_logprobs=[])
    completion = ChatCompletion(
        id="chatcmpl-9",
        created=1,
        model="gpt-4o-2024-08-06",
        object="chat.completion",
        choices=[
            CompletionChoice(
                index=0,
                finish_reason="stop",
                message=ChatCompletionMessage(role="assistant", content="Hi 你好"),
                logprobs=ChoiceLogprobs(content=[logprob]),
            )
        ],
        usage=USAGE,
    )
    parts = chat(completion.model_dump_json(exclude_none=True).encode(), streamed=False)
    assert parts.error is None
    assert parts.response_id == "chatcmpl-9" and parts.model == "gpt-4o-2024-08-06"
    assert parts.usage == {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42}
    choice = only(parts)
    assert choice == Choice(
        index=0,
        text="Hi 你好",
        finish_reason="stop",
        logprobs=[{"token": "Hi", "bytes": [72, 105], "logprob": -0.1, "top_logprobs": []}],
    )


def test_chat_json_parallel_tool_calls_and_no_text() -> None:
    calls = [
        ChatCompletionMessageFunctionToolCall(
            id="call_a", type="function", function=Function(name="get_weather", arguments='{"city":"Paris"}')
        ),
        ChatCompletionMessageFunctionToolCall(
            id="call_b",
            type="function",
            function=Function(name="get_time", arguments='{"tz":"Asia/Shanghai"}'),
        ),
    ]
    completion = ChatCompletion(
        id="c",
        created=1,
        model="m",
        object="chat.completion",
        choices=[
            CompletionChoice(
                index=0,
                finish_reason="tool_calls",
                message=ChatCompletionMessage(role="assistant", content=None, tool_calls=calls),
            )
        ],
    )
    # exclude_none would drop `content: null`; the API sends it, so keep it here.
    choice = only(chat(completion.model_dump_json().encode(), streamed=False))
    assert choice.text is None
    assert choice.finish_reason == "tool_calls"
    assert choice.tool_calls == (
        ToolCall("call_a", "get_weather", '{"city":"Paris"}'),
        ToolCall("call_b", "get_time", '{"tz":"Asia/Shanghai"}'),
    )
    assert [c.parsed for c in choice.tool_calls] == [{"city": "Paris"}, {"tz": "Asia/Shanghai"}]


def test_chat_json_custom_tool_call_and_legacy_function_call() -> None:
    custom = ChatCompletionMessageCustomToolCall(
        id="call_c", type="custom", custom=Custom(name="run_sql", input="SELECT 1")
    )
    message = ChatCompletionMessage(role="assistant", tool_calls=[custom])
    body = {
        "id": "c",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "finish_reason": "tool_calls", "message": message.model_dump(exclude_none=True)},
            {
                "index": 1,
                "finish_reason": "function_call",
                "message": {"role": "assistant", "function_call": {"name": "f", "arguments": '{"a":1}'}},
            },
        ],
    }
    parts = chat(json.dumps(body), streamed=False)
    assert parts.choices[0].tool_calls == (ToolCall("call_c", "run_sql", "SELECT 1", "custom"),)
    assert not parts.choices[0].tool_calls[0].valid_json
    assert parts.choices[1].tool_calls == (ToolCall(None, "f", '{"a":1}'),)


def test_chat_json_refusal_reasoning_content_parts_and_n2_sorted() -> None:
    body = {
        "id": "c",
        "model": "deepseek-reasoner",
        "choices": [
            {
                "index": 2,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": None, "refusal": "I can't help with that."},
            },
            {
                "index": 0,
                "finish_reason": "stop",
                # vLLM in transition sends both fields with the same text: take it once.
                "message": {"content": "42", "reasoning_content": "6*7", "reasoning": "6*7"},
            },
            {
                "index": 1,
                "finish_reason": "length",
                "message": {
                    "content": [
                        {"type": "text", "text": "第一"},
                        {"type": "image_url", "image_url": {"url": "x"}},
                        {"type": "text", "text": "段"},
                    ],
                    "reasoning": "only reasoning",
                },
            },
            {"index": 3, "finish_reason": "stop", "message": {"content": ""}},
        ],
    }
    parts = chat(json.dumps(body), streamed=False)
    assert parts.error is None
    assert [c.index for c in parts.choices] == [0, 1, 2, 3]
    first, second, third, fourth = parts.choices
    assert (first.text, first.reasoning, first.refusal) == ("42", "6*7", None)
    assert (second.text, second.reasoning, second.finish_reason) == ("第一段", "only reasoning", "length")
    assert (third.text, third.refusal) == (None, "I can't help with that.")
    assert fourth.text == ""
    assert parts.first() is first


def test_chat_json_error_object() -> None:
    body = {
        "error": {
            "message": "Rate limit reached\nfor gpt-4o",
            "type": "requests",
            "code": "rate_limit_exceeded",
        }
    }
    parts = chat(json.dumps(body), streamed=False)
    assert parts.choices == ()
    assert parts.error == "rate_limit_exceeded: Rate limit reached for gpt-4o"
    vllm = {"object": "error", "message": "This model's maximum context length is 4096", "code": 400}
    assert chat(json.dumps(vllm), streamed=False).error == "This model's maximum context length is 4096"


def test_stream_request_answered_with_json_error_body() -> None:
    body = json.dumps({"error": {"message": "invalid api key", "type": "invalid_request_error"}})
    parts = chat(body.encode(), streamed=True)
    assert parts.choices == () and parts.error == "invalid api key"


# --- chat, SSE -----------------------------------------------------------------------------------------------


def test_chat_stream_text_finish_usage_only_chunk_and_done() -> None:
    body = sse(
        chunk(delta(role="assistant", content="", refusal=None)),
        *(chunk(delta(content=p)) for p in ["Hel", "lo", ", ", "世界", "!"]),
        chunk(delta(finish_reason="stop")),
        chunk(usage=USAGE),  # stream_options.include_usage: choices is []
    )
    assert b'"choices":[]' in body
    parts = chat(body)
    assert parts.error is None
    assert parts.response_id == "chatcmpl-1" and parts.model == "gpt-4o-mini"
    assert parts.usage == USAGE.model_dump(exclude_none=True)
    assert only(parts) == Choice(index=0, text="Hello, 世界!", finish_reason="stop")


def test_chat_stream_parallel_tool_calls_split_and_interleaved() -> None:
    args_a = '{"location": "San Francisco, CA", "unit": "celsius"}'
    args_b = '{"query": "天气 北京", "limit": 5}'
    a, b = pieces(args_a, 3), pieces(args_b, 2)
    chunks = [
        chunk(delta(role="assistant", tool_calls=[call_delta(0, id="call_A", name="get_weather", args="")])),
        chunk(delta(tool_calls=[call_delta(1, id="call_B", name="search", args="")])),
    ]
    for i in range(max(len(a), len(b))):
        if i < len(b):  # index 1 first in each round: the order within a chunk must not matter
            chunks.append(chunk(delta(tool_calls=[call_delta(1, args=b[i])])))
        if i < len(a):
            chunks.append(chunk(delta(tool_calls=[call_delta(0, args=a[i])])))
    # One chunk may also carry several fragments, even for the same call (the SDK's accumulate_delta notes it).
    chunks.append(chunk(delta(tool_calls=[call_delta(0, args=""), call_delta(1, args="")])))
    chunks.append(chunk(delta(finish_reason="tool_calls")))
    assert len(chunks) > 30
    choice = only(chat(sse(*chunks)))
    assert choice.text is None
    assert choice.finish_reason == "tool_calls"
    assert choice.tool_calls == (
        ToolCall("call_A", "get_weather", args_a),
        ToolCall("call_B", "search", args_b),
    )
    assert choice.tool_calls[1].parsed == {"query": "天气 北京", "limit": 5}


def test_chat_stream_tool_calls_without_index_or_all_numbered_zero() -> None:
    no_index = [
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{"}}]},
                }
            ]
        },
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"function": {"arguments": "}"}}]}}]},
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"id": "c2", "function": {"name": "g", "arguments": "[]"}}]},
                }
            ]
        },
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    calls = only(chat(sse(*no_index))).tool_calls
    assert calls == (ToolCall("c1", "f", "{}"), ToolCall("c2", "g", "[]"))
    zeros = [
        {
            "choices": [
                {"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f"}}]}}
            ]
        },
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}}]},
        {
            "choices": [
                {"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c2", "function": {"name": "g"}}]}}
            ]
        },
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}}]},
    ]
    assert only(chat(sse(*zeros))).tool_calls == (ToolCall("c1", "f", "{}"), ToolCall("c2", "g", "{}"))
    repeated = [  # a server that repeats id and name in every delta
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"index": 0, "id": "c", "function": {"name": "f", "arguments": '{"a"'}}
                        ]
                    },
                }
            ]
        },
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": ":1}"}}]
                    },
                }
            ]
        },
    ]
    assert only(chat(sse(*repeated))).tool_calls == (ToolCall("c", "f", '{"a":1}'),)


def test_chat_stream_legacy_function_call_deltas() -> None:
    body = sse(
        {
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "function_call": {"name": "f", "arguments": ""}}}
            ]
        },
        {"choices": [{"index": 0, "delta": {"function_call": {"arguments": '{"x":'}}}]},
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"function_call": {"arguments": " 1}"}},
                    "finish_reason": "function_call",
                }
            ]
        },
    )
    assert only(chat(body)).tool_calls == (ToolCall(None, "f", '{"x": 1}'),)


def test_chat_stream_multibyte_characters_split_across_network_chunks() -> None:
    text = "你好，世界。🙂 Ünïcödé"
    args = '{"城市": "北京"}'
    body = sse(
        *(chunk(delta(content=p)) for p in pieces(text, 2)),
        chunk(delta(tool_calls=[call_delta(0, id="call_1", name="天气", args=args[:4])])),
        chunk(delta(tool_calls=[call_delta(0, args=args[4:])])),
        chunk(delta(finish_reason="stop")),
    )
    for size in (1, 2, 5, 7, 13):
        network = [body[i : i + size] for i in range(0, len(body), size)]
        # Decoding each network chunk on its own would corrupt the 3- and 4-byte characters it splits...
        if size in (1, 2, 5, 7):
            assert "\ufffd" in "".join(c.decode("utf-8", errors="replace") for c in network)
        # ...the body assembled from them is the same bytes, and parses whole.
        choice = only(chat(b"".join(network)))
        assert choice.text == text
        assert choice.tool_calls == (ToolCall("call_1", "天气", args),)


def test_chat_stream_surrogate_pair_split_across_deltas_is_joined() -> None:
    # A server escaping non-BMP characters as UTF-16 may cut between the two halves of a pair.
    body = (
        'data: {"choices":[{"index":0,"delta":{"content":"a\\ud83d"}}]}\n\n'
        'data: {"choices":[{"index":0,"delta":{"content":"\\ude00b"}}]}\n\n'
        'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    )
    assert only(chat(body.encode())).text == "a😀b"


def test_chat_stream_n2_choices_interleaved() -> None:
    body = sse(
        chunk(delta(0, role="assistant", content=""), delta(1, role="assistant", content="")),
        chunk(delta(1, content="B1 ")),
        chunk(delta(0, content="A1 ")),
        chunk(delta(0, content="A2"), delta(1, content="B2")),
        chunk(delta(1, finish_reason="length")),
        chunk(delta(0, finish_reason="stop")),
        chunk(usage=USAGE),
    )
    parts = chat(body)
    assert [(c.index, c.text, c.finish_reason) for c in parts.choices] == [
        (0, "A1 A2", "stop"),
        (1, "B1 B2", "length"),
    ]
    assert parts.usage is not None and parts.usage["total_tokens"] == 42


def test_chat_stream_refusal() -> None:
    body = sse(
        chunk(delta(role="assistant", content="", refusal=None)),
        *(chunk(delta(refusal=p)) for p in ["I'm sorry, ", "I can't ", "help with that."]),
        chunk(delta(finish_reason="stop")),
    )
    choice = only(chat(body))
    assert choice.refusal == "I'm sorry, I can't help with that."
    assert choice.text is None  # the first delta's `content: ""` is framing, not text


def test_chat_stream_reasoning_content_and_reasoning() -> None:
    body = sse(
        chunk(delta(role="assistant", content="", reasoning_content="Let me ")),
        chunk(delta(reasoning_content="think.")),
        chunk(delta(content="Answer: 4")),
        chunk(delta(finish_reason="stop")),
    )
    choice = only(chat(body))
    assert (choice.reasoning, choice.text) == ("Let me think.", "Answer: 4")
    both = sse(  # vLLM during the rename: the same piece under both names, once each delta
        {"choices": [{"index": 0, "delta": {"reasoning_content": "a", "reasoning": "a"}}]},
        {"choices": [{"index": 0, "delta": {"reasoning_content": "b", "reasoning": "b"}}]},
        {"choices": [{"index": 0, "delta": {"reasoning": "c"}}]},
        {"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": "stop"}]},
    )
    assert only(chat(both)).reasoning == "abc"


def test_chat_stream_logprobs_assembled() -> None:
    def lp(token: str) -> dict[str, Any]:
        return {"token": token, "bytes": list(token.encode()), "logprob": -0.5, "top_logprobs": []}

    body = sse(
        *(
            {
                "choices": [
                    {"index": 0, "delta": {"content": t}, "logprobs": {"content": [lp(t)], "refusal": None}}
                ]
            }
            for t in ["a", "b", "c"]
        ),
        {"choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]},
    )
    assert only(chat(body)).logprobs == [lp("a"), lp("b"), lp("c")]


def test_chat_stream_missing_done() -> None:
    finished = sse(chunk(delta(content="ok")), chunk(delta(finish_reason="stop")), done=False)
    parts = chat(finished)
    assert parts.error is None and only(parts).text == "ok"
    cut = sse(chunk(delta(content="half an ans")), done=False)
    parts = chat(cut)
    assert only(parts).text == "half an ans" and only(parts).finish_reason is None
    assert parts.error is not None and "[DONE]" in parts.error


def test_chat_stream_malformed_line_keeps_the_rest() -> None:
    body = (
        sse(chunk(delta(content="before ")), done=False)
        + b'data: {"choices": [{"index": 0, "delta": {"content": "bro\n\n'
        + sse(chunk(delta(content="after")), chunk(delta(finish_reason="stop")))
    )
    parts = chat(body)
    assert only(parts).text == "before after"
    assert only(parts).finish_reason == "stop"
    assert parts.error is not None and parts.error.startswith("stream event 2 is not JSON")
    assert "\n" not in parts.error


def test_chat_stream_error_object_mid_stream() -> None:
    body = sse(
        chunk(delta(content="partial")),
        {
            "error": {
                "message": "The server had an error while processing your request.",
                "type": "server_error",
            }
        },
        done=False,
    )
    parts = chat(body)
    assert only(parts).text == "partial"
    assert parts.error == "The server had an error while processing your request."


def test_chat_stream_crlf_comments_and_multiline_data() -> None:
    first = wire(chunk(delta(content="a")))
    body = (
        ": keep-alive\r\n\r\n"
        f"data: {first}\r\n\r\n"
        'data: {"choices": [{"index": 0,\r\ndata: "delta": {"content": "b"}, "finish_reason": "stop"}]}\r\n\r\n'
        "data: [DONE]\r\n\r\n"
        'data: {"choices": [{"index": 0, "delta": {"content": "after done"}}]}\r\n\r\n'
    )
    parts = chat(body.encode())
    assert parts.error is None and only(parts).text == "ab"


def test_stream_body_parsed_when_json_was_expected() -> None:
    body = sse(chunk(delta(content="x")), chunk(delta(finish_reason="stop")))
    assert only(chat(body, streamed=False)).text == "x"


# --- completions ---------------------------------------------------------------------------------------------


def test_completions_json_n2_with_logprobs() -> None:
    logprobs = {
        "tokens": ["Hi"],
        "token_logprobs": [-0.2],
        "top_logprobs": [{"Hi": -0.2}],
        "text_offset": [0],
    }
    body = {
        "id": "cmpl-1",
        "object": "text_completion",
        "model": "gpt-3.5-turbo-instruct",
        "choices": [
            {"index": 1, "text": " there", "finish_reason": "length", "logprobs": None},
            {"index": 0, "text": "Hi", "finish_reason": "stop", "logprobs": logprobs},
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    parts = parse_answer(json.dumps(body), route="completions", streamed=False)
    assert parts.error is None and parts.model == "gpt-3.5-turbo-instruct"
    assert parts.choices == (
        Choice(index=0, text="Hi", finish_reason="stop", logprobs=logprobs),
        Choice(index=1, text=" there", finish_reason="length"),
    )


def test_completions_stream_n2_and_logprobs_merged() -> None:
    def event(index: int, text: str, finish: str | None = None, offset: int = 0) -> dict[str, Any]:
        lp = {"tokens": [text], "token_logprobs": [-1.0], "top_logprobs": None, "text_offset": [offset]}
        return {"id": "cmpl-2", "object": "text_completion", "choices": [
            {"index": index, "text": text, "finish_reason": finish, "logprobs": lp}
        ]}  # fmt: skip

    body = sse(
        event(0, "一"),
        event(1, "x"),
        event(0, "二", offset=1),
        event(1, "y", "length", 1),
        event(0, "", "stop"),
    )
    parts = parse_answer(body, route="completions", streamed=True)
    assert parts.error is None and parts.response_id == "cmpl-2"
    first, second = parts.choices
    assert (first.text, first.finish_reason, second.text, second.finish_reason) == (
        "一二",
        "stop",
        "xy",
        "length",
    )
    assert first.logprobs == {
        "tokens": ["一", "二", ""],
        "token_logprobs": [-1.0, -1.0, -1.0],
        "top_logprobs": None,
        "text_offset": [0, 1, 0],
    }


# --- Responses API -------------------------------------------------------------------------------------------


def response_usage() -> ResponseUsage:
    return ResponseUsage(
        input_tokens=20,
        input_tokens_details=InputTokensDetails(cache_write_tokens=0, cached_tokens=4),
        output_tokens=50,
        output_tokens_details=OutputTokensDetails(reasoning_tokens=16),
        total_tokens=70,
    )


def response(output: list[Any], status: str = "completed", **fields: Any) -> Response:
    return Response(
        id="resp_1",
        created_at=1700000000.0,
        model="gpt-5-mini",
        object="response",
        output=output,
        parallel_tool_calls=True,
        tool_choice="auto",
        tools=[],
        status=status,
        **fields,
    )


REASONING = ResponseReasoningItem(
    id="rs_1",
    type="reasoning",
    summary=[
        Summary(type="summary_text", text="**Planning** the answer."),
        Summary(type="summary_text", text="Checking the weather tool."),
    ],
)
MESSAGE = ResponseOutputMessage(
    id="msg_1",
    type="message",
    role="assistant",
    status="completed",
    content=[ResponseOutputText(type="output_text", text="北京今天晴。", annotations=[])],
)
CALL_1 = ResponseFunctionToolCall(
    id="fc_1", call_id="call_1", type="function_call", name="get_weather", arguments='{"city":"北京"}'
)
CALL_2 = ResponseFunctionToolCall(
    id="fc_2", call_id="call_2", type="function_call", name="get_time", arguments='{"tz":"Asia/Shanghai"}'
)


def test_responses_json_text_calls_reasoning_usage() -> None:
    body = response([REASONING, MESSAGE, CALL_1, CALL_2], usage=response_usage()).model_dump_json()
    parts = parse_answer(body.encode(), route="responses", streamed=False)
    assert parts.error is None
    assert (parts.response_id, parts.model) == ("resp_1", "gpt-5-mini")
    assert parts.usage is not None
    assert (parts.usage["input_tokens"], parts.usage["output_tokens"], parts.usage["total_tokens"]) == (
        20,
        50,
        70,
    )
    assert parts.usage["output_tokens_details"] == {"reasoning_tokens": 16}
    choice = only(parts)
    assert choice.text == "北京今天晴。"
    assert choice.reasoning == "**Planning** the answer.\n\nChecking the weather tool."
    assert choice.finish_reason == "tool_calls"
    # The id is the call_id (what a function_call_output answers), not the item id fc_...
    assert choice.tool_calls == (
        ToolCall("call_1", "get_weather", '{"city":"北京"}'),
        ToolCall("call_2", "get_time", '{"tz":"Asia/Shanghai"}'),
    )


def test_responses_json_refusal_reasoning_text_custom_call_and_stop() -> None:
    refusal = ResponseOutputMessage(
        id="msg_2",
        type="message",
        role="assistant",
        status="completed",
        content=[ResponseOutputRefusal(type="refusal", refusal="I can't help with that.")],
    )
    thinking = ResponseReasoningItem(
        id="rs_2",
        type="reasoning",
        summary=[],
        content=[ReasoningContent(type="reasoning_text", text="The user asks for something unsafe.")],
    )
    choice = only(
        parse_answer(response([thinking, refusal]).model_dump_json(), route="responses", streamed=False)
    )
    assert (choice.text, choice.refusal) == (None, "I can't help with that.")
    assert choice.reasoning == "The user asks for something unsafe."
    assert choice.finish_reason == "stop"
    custom = {
        "type": "custom_tool_call",
        "id": "ctc_1",
        "call_id": "call_9",
        "name": "sql",
        "input": "SELECT 1",
    }
    body = json.dumps({"object": "response", "status": "completed", "output": [custom]})
    choice = only(parse_answer(body, route="responses", streamed=False))
    assert choice.tool_calls == (ToolCall("call_9", "sql", "SELECT 1", "custom"),)
    assert choice.finish_reason == "tool_calls"


def test_responses_json_incomplete_and_failed() -> None:
    partial = ResponseOutputMessage(
        id="msg_1",
        type="message",
        role="assistant",
        status="incomplete",
        content=[ResponseOutputText(type="output_text", text="The first half", annotations=[])],
    )
    incomplete = response(
        [partial], status="incomplete", incomplete_details=IncompleteDetails(reason="max_output_tokens")
    )
    parts = parse_answer(incomplete.model_dump_json(), route="responses", streamed=False)
    assert parts.error is None
    assert (only(parts).text, only(parts).finish_reason) == ("The first half", "length")
    filtered = response(
        [], status="incomplete", incomplete_details=IncompleteDetails(reason="content_filter")
    )
    assert only(
        parse_answer(filtered.model_dump_json(), route="responses", streamed=False)
    ).finish_reason == ("content_filter")
    failed = response(
        [], status="failed", error=ResponseError(code="server_error", message="The model crashed.")
    )
    parts = parse_answer(failed.model_dump_json(), route="responses", streamed=False)
    assert only(parts).finish_reason == "failed"
    assert parts.error == "server_error: The model crashed."
    http_error = json.dumps(
        {"error": {"message": "Unsupported parameter: 'temperature'", "type": "invalid_request_error"}}
    )
    parts = parse_answer(http_error, route="responses", streamed=False)
    assert parts.choices == () and parts.error == "Unsupported parameter: 'temperature'"


def responses_stream_events(*, final_output: list[Any] | None = None) -> list[BaseModel]:
    """A full stream: reasoning summary, text, two function calls with their arguments in pieces, completed."""
    seq = iter(range(1000))
    events: list[BaseModel] = [
        ResponseCreatedEvent(
            type="response.created", sequence_number=next(seq), response=response([], "in_progress")
        )
    ]
    # reasoning, output_index 0
    events.append(
        ResponseOutputItemAddedEvent(
            type="response.output_item.added",
            sequence_number=next(seq),
            output_index=0,
            item=ResponseReasoningItem(id="rs_1", type="reasoning", summary=[]),
        )
    )
    for summary_index, summary in enumerate(["**Planning** the answer.", "Checking the weather tool."]):
        for piece in pieces(summary, 4):
            events.append(
                ResponseReasoningSummaryTextDeltaEvent(
                    type="response.reasoning_summary_text.delta",
                    sequence_number=next(seq),
                    item_id="rs_1",
                    output_index=0,
                    summary_index=summary_index,
                    delta=piece,
                )
            )
    # message, output_index 1
    events.append(
        ResponseOutputItemAddedEvent(
            type="response.output_item.added",
            sequence_number=next(seq),
            output_index=1,
            item=ResponseOutputMessage(
                id="msg_1", type="message", role="assistant", status="in_progress", content=[]
            ),
        )
    )
    events.append(
        ResponseContentPartAddedEvent(
            type="response.content_part.added",
            sequence_number=next(seq),
            item_id="msg_1",
            output_index=1,
            content_index=0,
            part=ResponseOutputText(type="output_text", text="", annotations=[]),
        )
    )
    for piece in pieces("北京今天晴。", 2):
        events.append(
            ResponseTextDeltaEvent(
                type="response.output_text.delta",
                sequence_number=next(seq),
                item_id="msg_1",
                output_index=1,
                content_index=0,
                delta=piece,
                logprobs=[],
            )
        )
    # two function calls, output_index 2 and 3, arguments interleaved
    for index, call in ((2, CALL_1), (3, CALL_2)):
        added = call.model_copy(update={"arguments": "", "status": "in_progress"})
        events.append(
            ResponseOutputItemAddedEvent(
                type="response.output_item.added", sequence_number=next(seq), output_index=index, item=added
            )
        )
    a, b = pieces(CALL_1.arguments, 3), pieces(CALL_2.arguments, 5)
    for i in range(max(len(a), len(b))):
        for index, item_id, parts in ((3, "fc_2", b), (2, "fc_1", a)):
            if i < len(parts):
                events.append(
                    ResponseFunctionCallArgumentsDeltaEvent(
                        type="response.function_call_arguments.delta",
                        sequence_number=next(seq),
                        item_id=item_id,
                        output_index=index,
                        delta=parts[i],
                    )
                )
    for index, call in ((2, CALL_1), (3, CALL_2)):
        events.append(
            ResponseFunctionCallArgumentsDoneEvent(
                type="response.function_call_arguments.done",
                sequence_number=next(seq),
                item_id=call.id or "",
                output_index=index,
                arguments=call.arguments,
            )
        )
    output = [REASONING, MESSAGE, CALL_1, CALL_2] if final_output is None else final_output
    events.append(
        ResponseCompletedEvent(
            type="response.completed",
            sequence_number=next(seq),
            response=response(output, usage=response_usage()),
        )
    )
    return events


def test_responses_stream_full() -> None:
    events = responses_stream_events()
    for final_output in (None, []):  # the final Response's output, or (if it is empty) the deltas
        events = responses_stream_events(final_output=final_output)
        parts = parse_answer(sse(*events, done=False, named=True), route="responses", streamed=True)
        assert parts.error is None, parts.error
        assert (parts.response_id, parts.model) == ("resp_1", "gpt-5-mini")
        assert parts.usage is not None and parts.usage["output_tokens"] == 50
        choice = only(parts)
        assert choice.text == "北京今天晴。"
        assert choice.reasoning == "**Planning** the answer.\n\nChecking the weather tool."
        assert choice.tool_calls == (
            ToolCall("call_1", "get_weather", '{"city":"北京"}'),
            ToolCall("call_2", "get_time", '{"tz":"Asia/Shanghai"}'),
        )
        assert choice.finish_reason == "tool_calls"


def test_responses_stream_arguments_done_is_authoritative() -> None:
    events = [
        ResponseOutputItemAddedEvent(
            type="response.output_item.added",
            sequence_number=0,
            output_index=0,
            item=CALL_1.model_copy(update={"arguments": ""}),
        ),
        ResponseFunctionCallArgumentsDeltaEvent(
            type="response.function_call_arguments.delta",
            sequence_number=1,
            item_id="fc_1",
            output_index=0,
            delta='{"ci',
        ),
        # a delta was lost on the way
        ResponseFunctionCallArgumentsDoneEvent(
            type="response.function_call_arguments.done",
            sequence_number=2,
            item_id="fc_1",
            output_index=0,
            arguments='{"city":"北京"}',
        ),
        ResponseCompletedEvent(type="response.completed", sequence_number=3, response=response([])),
    ]
    choice = only(parse_answer(sse(*events), route="responses", streamed=True))
    assert choice.tool_calls == (ToolCall("call_1", "get_weather", '{"city":"北京"}'),)
    # without the .done event, the deltas are what there is
    partial = only(parse_answer(sse(*events[:2], events[3]), route="responses", streamed=True))
    assert partial.tool_calls == (ToolCall("call_1", "get_weather", '{"ci'),)
    assert not partial.tool_calls[0].valid_json


def test_responses_stream_completed_output_is_the_truth_when_deltas_were_missed() -> None:
    events = [
        ResponseCreatedEvent(
            type="response.created", sequence_number=0, response=response([], "in_progress")
        ),
        ResponseCompletedEvent(
            type="response.completed",
            sequence_number=1,
            response=response([REASONING, MESSAGE, CALL_1], usage=response_usage()),
        ),
    ]
    choice = only(parse_answer(sse(*events), route="responses", streamed=True))
    assert choice.text == "北京今天晴。" and choice.tool_calls == (
        ToolCall("call_1", "get_weather", '{"city":"北京"}'),
    )
    assert choice.reasoning is not None and choice.reasoning.startswith("**Planning**")


def test_responses_stream_output_item_done_refusal_and_reasoning_text() -> None:
    events = [
        ResponseReasoningTextDeltaEvent(
            type="response.reasoning_text.delta", sequence_number=0, item_id="rs_1", output_index=0, content_index=0, delta="Unsafe "
        ),
        ResponseReasoningTextDeltaEvent(
            type="response.reasoning_text.delta", sequence_number=1, item_id="rs_1", output_index=0, content_index=0, delta="request."
        ),
        *(
            ResponseRefusalDeltaEvent(
                type="response.refusal.delta", sequence_number=2 + i, item_id="msg_1", output_index=1, content_index=0, delta=p
            )
            for i, p in enumerate(["I can't ", "help."])
        ),
        ResponseTextDeltaEvent(
            type="response.output_text.delta", sequence_number=5, item_id="msg_2", output_index=2, content_index=0, delta="draft", logprobs=[]
        ),
        ResponseTextDoneEvent(
            type="response.output_text.done", sequence_number=6, item_id="msg_2", output_index=2, content_index=0, text="final", logprobs=[]
        ),
        ResponseOutputItemDoneEvent(type="response.output_item.done", sequence_number=7, output_index=3, item=CALL_2),
        ResponseCompletedEvent(type="response.completed", sequence_number=8, response=response([])),
    ]  # fmt: skip
    choice = only(parse_answer(sse(*events, named=True), route="responses", streamed=True))
    assert choice.reasoning == "Unsafe request."
    assert choice.refusal == "I can't help."
    assert choice.text == "final"
    assert choice.tool_calls == (ToolCall("call_2", "get_time", '{"tz":"Asia/Shanghai"}'),)
    assert choice.finish_reason == "tool_calls"


def test_responses_stream_text_logprobs() -> None:
    lp = {"token": "Hi", "logprob": -0.01, "top_logprobs": []}
    events = [
        ResponseTextDeltaEvent.model_validate(
            {"type": "response.output_text.delta", "sequence_number": 0, "item_id": "msg_1", "output_index": 0,
             "content_index": 0, "delta": "Hi", "logprobs": [lp]}
        ),
        ResponseCompletedEvent(type="response.completed", sequence_number=1, response=response([])),
    ]  # fmt: skip
    choice = only(parse_answer(sse(*events), route="responses", streamed=True))
    assert (choice.text, choice.logprobs, choice.finish_reason) == ("Hi", [lp], "stop")


def test_responses_stream_incomplete_max_output_tokens() -> None:
    events = [
        ResponseTextDeltaEvent(
            type="response.output_text.delta", sequence_number=0, item_id="msg_1", output_index=0, content_index=0, delta="Once upon a", logprobs=[]
        ),
        ResponseIncompleteEvent(
            type="response.incomplete",
            sequence_number=1,
            response=response([], "incomplete", incomplete_details=IncompleteDetails(reason="max_output_tokens"), usage=response_usage()),
        ),
    ]  # fmt: skip
    parts = parse_answer(sse(*events, done=False), route="responses", streamed=True)
    assert parts.error is None
    assert (only(parts).text, only(parts).finish_reason) == ("Once upon a", "length")
    assert parts.usage is not None and parts.usage["total_tokens"] == 70


def test_responses_stream_failed_and_error_event() -> None:
    failed = ResponseFailedEvent(
        type="response.failed",
        sequence_number=1,
        response=response(
            [], "failed", error=ResponseError(code="server_error", message="Something went wrong.")
        ),
    )
    parts = parse_answer(sse(failed, done=False), route="responses", streamed=True)
    assert only(parts).finish_reason == "failed"
    assert parts.error == "server_error: Something went wrong."
    # ResponseErrorEvent carries code/message at the top level, not under "error"
    error = ResponseErrorEvent(
        type="error", sequence_number=0, code="rate_limit_exceeded", message="Slow down."
    )
    assert '"error":' not in wire(error)
    delta_event = ResponseTextDeltaEvent(
        type="response.output_text.delta", sequence_number=0, item_id="m", output_index=0, content_index=0, delta="par", logprobs=[]
    )  # fmt: skip
    parts = parse_answer(sse(delta_event, error, done=False), route="responses", streamed=True)
    assert parts.error == "rate_limit_exceeded: Slow down."
    assert only(parts).text == "par" and only(parts).finish_reason is None


def test_responses_stream_cut_short() -> None:
    events = responses_stream_events()[:-1]  # no response.completed
    parts = parse_answer(sse(*events, done=False), route="responses", streamed=True)
    assert parts.error is not None and "response.completed" in parts.error
    choice = only(parts)
    assert choice.text == "北京今天晴。" and len(choice.tool_calls) == 2 and choice.finish_reason is None
    assert parts.response_id == "resp_1"  # from response.created


# --- hostile input -------------------------------------------------------------------------------------------

HOSTILE = [
    b"",
    b"   \n",
    b"[]",
    b"null",
    b"42",
    b'"a string"',
    b"{}",
    b"[" * 5000 + b"]" * 5000,
    b'{"choices": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b"\xff\xfe\x00garbage\x80",
    b"data: \xff\xfe\n\n",
    b"data: [DONE]\n\n",
    b"data: null\n\ndata: []\n\ndata: 1\n\n",
    b'{"choices": {"0": {"message": "hi"}}}',
    b'{"choices": [1, "two", null, [3]], "usage": [], "id": 5, "model": {}}',
    b'{"choices": [{"index": "0", "message": [], "delta": 7, "logprobs": "x", "finish_reason": 3}]}',
    b'{"choices": [{"message": {"content": 5, "tool_calls": "nope", "refusal": [], "reasoning": {}}}]}',
    b'{"choices": [{"message": {"tool_calls": [null, 1, {"function": []}, {"function": {"arguments": {"a": [1]}}}]}}]}',
    b'{"choices": [{"index": ' + b"9" * 5000 + b', "message": {"content": "x"}}]}',
    b'{"choices": [{"index": 100000000000000000000000000000, "message": {"content": "x"}}]}',
    b'{"output": {"type": "message"}, "status": 5, "incomplete_details": "max"}',
    b'{"output": [null, {"type": "message", "content": [null, {"type": "output_text", "text": 1}]}]}',
    b'{"type": "response.completed", "response": []}',
    b'data: {"type": "response.output_text.delta", "output_index": "x", "delta": 5}\n\n',
    b'data: {"type": "response.output_item.added", "item": null}\n\ndata: {"type": "response.completed"}\n\n',
    b'data: {"type": "response.function_call_arguments.done", "arguments": null}\n\n',
    b'data: {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 1e400}]}}]}\n\n',
]


@pytest.mark.parametrize("route", ["chat", "completions", "responses"])
@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("body", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_bodies_never_raise(body: bytes, route: str, streamed: bool) -> None:
    parts = parse_answer(body, route=route, streamed=streamed)
    assert isinstance(parts, AnswerParts) and isinstance(parts.choices, tuple)
    assert all(isinstance(c, Choice) for c in parts.choices)
    if parts.error is not None:
        assert "\n" not in parts.error and len(parts.error) <= 300
        parts.error.encode("utf-8")  # the one line is always storable


@pytest.mark.parametrize("body", [b"", b"[]", b"null", b"[" * 5000 + b"]" * 5000, b"\xff\xfe"])
def test_hostile_bodies_say_why(body: bytes) -> None:
    for streamed in (False, True):
        parts = chat(body, streamed=streamed)
        assert parts.choices == () and parts.error


def test_invalid_utf8_is_replaced() -> None:
    body = b'{"choices": [{"index": 0, "message": {"content": "ok \xff\xfe end"}, "finish_reason": "stop"}]}'
    parts = chat(body, streamed=False)
    assert parts.error is None and only(parts).text == "ok \ufffd\ufffd end"


def test_lone_surrogate_escapes_are_kept_as_sent() -> None:
    body = b'{"choices": [{"index": 0, "message": {"content": "a\\ud800b", "tool_calls": [{"id": "c", "function": {"name": "\\udfff", "arguments": "{\\"k\\": \\"\\ud800\\"}"}}]}}]}'
    choice = only(chat(body, streamed=False))
    assert choice.text == "a\ud800b"
    assert choice.tool_calls[0].name == "\udfff"
    assert choice.tool_calls[0].parsed == {"k": "\ud800"}
    stream = (
        b'data: {"choices": [{"index": 0, "delta": {"content": "\\ud800"}, "finish_reason": "stop"}]}\n\n'
    )
    assert only(chat(stream)).text == "\ud800"


def test_wrong_types_keep_what_is_right() -> None:
    body = {
        "id": ["not", "a", "string"],
        "usage": "lots",
        "choices": [
            "junk",
            {"index": 0, "message": {"content": "kept", "tool_calls": [None, {"id": "c", "function": {"name": "f", "arguments": {"a": 1}}}]}},
        ],
    }  # fmt: skip
    parts = chat(json.dumps(body), streamed=False)
    assert parts.response_id is None and parts.usage is None
    choice = only(parts)
    assert choice.text == "kept"
    assert choice.tool_calls == (ToolCall("c", "f", '{"a": 1}'),)  # an object where a string belongs: as JSON
    assert parts.error is not None and "(and 1 more problem)" in parts.error


def test_body_as_str_and_unknown_route() -> None:
    assert only(chat('{"choices": [{"message": {"content": "s"}}]}', streamed=False)).text == "s"
    parts = parse_answer(b"{}", route="embeddings", streamed=False)
    assert parts.choices == () and parts.error is not None and "route" in parts.error


def test_truncated_and_corrupted_streams_never_raise() -> None:
    chat_body = sse(
        chunk(delta(role="assistant", content="你好", reasoning_content="想")),
        chunk(delta(tool_calls=[call_delta(0, id="call_1", name="f", args='{"a": "北')])),
        chunk(delta(tool_calls=[call_delta(0, args='京"}')])),
        chunk(delta(finish_reason="tool_calls")),
        chunk(usage=USAGE),
    )
    responses_body = sse(*responses_stream_events(), named=True)
    rng = random.Random(20240601)
    for route, body in (("chat", chat_body), ("responses", responses_body)):
        for cut in range(0, len(body), 7):
            parse_answer(body[:cut], route=route, streamed=True)
        for _ in range(200):
            mutated = bytearray(body)
            for _ in range(3):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            parse_answer(bytes(mutated), route=route, streamed=True)
            parse_answer(bytes(mutated), route=route, streamed=False)


def test_only_done_is_an_empty_answer() -> None:
    parts = chat(b"data: [DONE]\n\n")
    assert parts.choices == () and parts.error == "stream carried no events"


def test_responses_stream_from_a_minimal_server_without_indices() -> None:
    events = [
        {"type": "response.output_text.delta", "delta": "Hel"},
        {"type": "response.output_text.delta", "delta": "lo"},
        {"type": "response.function_call_arguments.delta", "delta": '{"a"'},
        {"type": "response.function_call_arguments.delta", "delta": ": 1}"},
        {"type": "response.completed", "response": {"id": "r", "status": "completed"}},
    ]
    parts = parse_answer(sse(*events, done=False), route="responses", streamed=True)
    assert parts.error is None and parts.response_id == "r"
    choice = only(parts)
    assert choice.text == "Hello"
    assert choice.tool_calls == (ToolCall(None, None, '{"a": 1}'),)
    assert choice.finish_reason == "tool_calls"


def test_long_streams_stay_linear() -> None:
    n = 10_000
    body = sse(
        *(
            {
                "choices": [
                    {"index": 0, "delta": {"content": "字"}, "logprobs": {"content": [{"token": "字"}]}}
                ]
            }
            for _ in range(n)
        ),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
    )
    choice = only(chat(body))
    assert choice.text == "字" * n and len(choice.logprobs) == n


def test_a_deprecated_function_call_repeating_the_tool_calls_is_not_a_second_call():
    """llama-cpp-python sends both `tool_calls` and the deprecated `function_call` for the same call."""
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
        ],
        "function_call": {"name": "get_weather:", "arguments": "{}"},
    }
    body = json.dumps({"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": message}]})
    parts = parse_answer(body.encode(), route="chat", streamed=False)
    assert [(c.name, c.arguments) for c in parts.first().tool_calls] == [("get_weather", "{}")]
