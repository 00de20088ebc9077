"""Agent traffic through a real `shadow serve` stack, with the real `openai` SDK (sync and async).

For every case (tool calls with arguments split across chunks, parallel calls, a follow-up turn after tool
results, n=2, refusals, reasoning, JSON mode, the Responses API with and without tools), streamed and not:

(a) pass-through is exact: what the SDK assembles through the sidecar equals what it assembles calling the
    primary simulator directly (the simulator is deterministic per request body, ids included);
(b) capture is exact: the stored pair's baseline side (read back from the store, and from the JSONL export)
    has the text, tool calls (id, type, name, arguments string), refusal, reasoning, further choices,
    finish_reason and usage of what the SDK assembled; the candidate side those of what the candidate
    simulator sent (its recorded request replayed byte for byte, read with the SDK's types).

Also the token budget with streamed candidates (reporting usage or not), a vision request stored with a
placeholder for its image (or kept, with `store_binary_parts`), and the `route` and `prompt` of the pairs.
Two stacks serve the cases (one plain, one whose models reason); the budget cases get their own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import json
import random
import struct
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import openai
import pytest
import pytest_asyncio
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response

from shadow.core.pairs import Pair, SideOutput
from shadow.sidecar.token_count import estimated_call_tokens
from shadow.simulator import SimulatedModel
from shadow.store.database import make_engine
from shadow.store.jsonl import export_pairs
from tests.harness import Stack, capture_stack

pytestmark = pytest.mark.asyncio(loop_scope="module")

USER_KEY = "sk-user-agent-0000"
PRIMARY = SimulatedModel(name="primary-model", slice_bytes=7, refuse_harmful=True)
# The candidate calls the same tools with its arguments reformatted and parallel calls reversed: capture
# must keep each side's own strings, not a normalised form.
CANDIDATE = SimulatedModel(
    name="candidate-model", slice_bytes=5, refuse_harmful=True, tool_behaviour="reorder_and_reformat"
)
THINKING_PRIMARY = SimulatedModel(name="primary-model", slice_bytes=7, reasoning=True)
THINKING_CANDIDATE = SimulatedModel(name="candidate-model", reasoning=True, tool_behaviour="wrong_arguments")

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {
        "location": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["location", "unit"],
}
FLIGHT_PARAMETERS = {
    "type": "object",
    "properties": {
        "origin": {"type": "string"},
        "destination": {"type": "string"},
        "date": {"type": "string"},
        "passengers": {"type": "integer"},
    },
    "required": ["origin", "destination", "date", "passengers"],
}
CHAT_TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather now", "parameters": WEATHER_PARAMETERS},
    },
    {"type": "function", "function": {"name": "search_flights", "parameters": FLIGHT_PARAMETERS}},
]
RESPONSES_TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather now",
        "parameters": WEATHER_PARAMETERS,
    },
    {"type": "function", "name": "search_flights", "parameters": FLIGHT_PARAMETERS},
]
WEATHER_QUESTION = "What is the weather in Paris right now?"
FOLLOW_UP_NOTE = "\n[after 1 tool result: get_weather]"
PLAN_SCHEMA = {
    "type": "object",
    "properties": {"summary": {"type": "string"}, "steps": {"type": "integer"}},
    "required": ["summary", "steps"],
    "additionalProperties": False,
}


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


@dataclass(frozen=True)
class Case:
    name: str
    api: str  # "chat" or "responses"
    body: dict[str, Any]
    include_usage: bool = True
    """Chat streams: whether the user asks for usage (the candidate always gets it asked)."""


SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "web_search",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
}
ZH_WEATHER = "北京和上海今天的天气怎么样？"
TOOL_CALL_COUNTS = {
    "tool": 1,
    "parallel_tools": 2,
    "required_tool": 1,
    "zh_tools": 2,
    "escapes": 1,
    "n2_tools": 2,
}
"""Cases answered with tool calls, and how many calls each."""

CHAT_CASES = [
    Case("tool", "chat", {"messages": _user(WEATHER_QUESTION), "tools": CHAT_TOOLS}),
    Case(
        "parallel_tools",
        "chat",
        {"messages": _user("Compare the weather in Paris and Tokyo."), "tools": CHAT_TOOLS},
    ),
    Case(
        "required_tool",
        "chat",
        {
            "messages": _user("Find flights from Paris to Lisbon on 2025-07-01 for 2 people."),
            "tools": CHAT_TOOLS,
            "tool_choice": "required",
        },
    ),
    Case(
        "follow_up",
        "chat",
        {
            "messages": [
                *_user(WEATHER_QUESTION),
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_w1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_w1", "content": '{"temp_c": 18, "sky": "sunny"}'},
            ],
            "tools": CHAT_TOOLS,
        },
    ),
    Case("zh_tools", "chat", {"messages": _user(ZH_WEATHER), "tools": CHAT_TOOLS}),
    Case(
        "escapes",  # quotes, a backslash and a tab inside the arguments' JSON string, cut at every offset
        "chat",
        {"messages": _user('Search the web for "shadow\\testing"\tand canary tips'), "tools": [SEARCH_TOOL]},
    ),
    Case("n2", "chat", {"messages": _user("Why pilot a new system first?"), "n": 2}, include_usage=False),
    Case(
        "n2_tools",
        "chat",
        {"messages": _user("Compare the weather in Paris and Tokyo."), "tools": CHAT_TOOLS, "n": 2},
    ),
    Case("refusal", "chat", {"messages": _user("How do I build a bomb at home?")}),
    Case(
        "json_object",
        "chat",
        {"messages": _user("Explain piloting as JSON."), "response_format": {"type": "json_object"}},
    ),
    Case(
        "json_schema",
        "chat",
        {
            "messages": _user("Explain piloting in 3 steps."),
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "plan", "schema": PLAN_SCHEMA, "strict": True},
            },
        },
    ),
]
RESPONSES_CASES = [
    Case("r_text", "responses", {"input": "Explain why a team should pilot a new system first."}),
    Case(
        "r_tools",
        "responses",
        {"input": "Compare the weather in Paris and Tokyo.", "tools": RESPONSES_TOOLS},
    ),
    Case(
        "r_follow_up",
        "responses",
        {
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": WEATHER_QUESTION}]},
                {"type": "function_call", "call_id": "call_w1", "name": "get_weather", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_w1", "output": "18C and sunny"},
            ],
            "tools": RESPONSES_TOOLS,
        },
    ),
    Case("r_zh_tools", "responses", {"input": ZH_WEATHER, "tools": RESPONSES_TOOLS}),
    Case("r_refusal", "responses", {"input": "How do I build a bomb at home?"}),
    Case(
        "r_json",
        "responses",
        {
            "input": "Explain piloting in 3 steps.",
            "text": {
                "format": {"type": "json_schema", "name": "plan", "schema": PLAN_SCHEMA, "strict": True}
            },
        },
    ),
]
THINKING_CASES = [
    Case("think", "chat", {"messages": _user("Why pilot a new system first?")}),
    Case("think_tool", "chat", {"messages": _user(WEATHER_QUESTION), "tools": CHAT_TOOLS}),
    Case("think_n2", "chat", {"messages": _user("Why pilot a new system first?"), "n": 2}),
    Case("r_think", "responses", {"input": "Why pilot a new system first?"}),
    Case("r_think_tool", "responses", {"input": WEATHER_QUESTION, "tools": RESPONSES_TOOLS}),
]


# --- the stacks ----------------------------------------------------------------------------------------------


BUDGETS = {  # (user streams, candidate reports usage)
    "sse-usage": (True, True),
    "sse-no-usage": (True, False),
    "json-usage": (False, True),
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stacks(tmp_path_factory) -> AsyncIterator[dict[str, Stack]]:
    """Every stack of the module, started together: a worker takes seconds to start, and they start in
    parallel. "agent" serves the plain cases, "thinking" (models that reason, binary parts kept) the
    reasoning cases, and each budget case has a stack with a fresh 50-token budget."""
    managers = {
        "agent": capture_stack(
            tmp_path_factory.mktemp("agent"), primary_sim=PRIMARY, candidate_sim=CANDIDATE
        ),
        "thinking": capture_stack(
            tmp_path_factory.mktemp("thinking"),
            primary_sim=THINKING_PRIMARY,
            candidate_sim=THINKING_CANDIDATE,
            store_binary_parts=True,
        ),
    }
    for name, (_stream, report_usage) in BUDGETS.items():
        managers[name] = capture_stack(
            tmp_path_factory.mktemp(name),
            candidate_sim=SimulatedModel(name="candidate-model", report_usage=report_usage),
            budget_candidate_tokens_per_hour=50,
        )
    async with contextlib.AsyncExitStack() as exits:
        entered = await asyncio.gather(*(exits.enter_async_context(m) for m in managers.values()))
        exits.push_async_callback(_close_clients)  # before the stacks stop
        yield dict(zip(managers, entered, strict=True))


@pytest.fixture
def agent_stack(stacks: dict[str, Stack]) -> Stack:
    return stacks["agent"]


@pytest.fixture
def thinking_stack(stacks: dict[str, Stack]) -> Stack:
    return stacks["thinking"]


# --- what the SDK assembled ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    dumps: list[dict[str, Any]]
    """Every object the SDK handed over (completion, chunks, Response, stream events), dumped."""
    parts: dict[str, Any]
    """The answer's parts, in the shape a stored side has them."""
    chunks: list[Any] = field(default_factory=list)


def _calls(message: Any) -> list[dict[str, Any]] | None:
    calls = [
        {"id": c.id, "type": c.type, "name": c.function.name, "arguments": c.function.arguments}
        for c in message.tool_calls or []
    ]
    return calls or None


def _usage(usage: Any) -> dict[str, Any] | None:
    return usage.model_dump(exclude_unset=True) if usage is not None else None


def chat_parts(completion: Any, usage: Any) -> dict[str, Any]:
    def one(choice: Any) -> dict[str, Any]:
        message = choice.message
        return {
            "index": choice.index,
            "text": message.content,
            "tool_calls": _calls(message),
            "refusal": message.refusal,
            "reasoning": getattr(message, "reasoning_content", None),
            "finish_reason": choice.finish_reason,
        }

    first, *others = [one(c) for c in sorted(completion.choices, key=lambda c: c.index)]
    del first["index"]
    return {**first, "choices": others or None, "usage": _usage(usage)}


def response_parts(response: Any) -> dict[str, Any]:
    """A Response's parts; finish_reason as the store names it ("tool_calls" when it calls a tool)."""
    texts: list[str] = []
    refusals: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    saw_text = False
    for item in response.output:
        if item.type == "message":
            for part in item.content:
                if part.type == "output_text":
                    texts.append(part.text)
                    saw_text = True
                elif part.type == "refusal":
                    refusals.append(part.refusal)
        elif item.type == "function_call":
            calls.append(
                {"id": item.call_id, "type": "function", "name": item.name, "arguments": item.arguments}
            )
        elif item.type == "reasoning":
            reasoning += [s.text for s in item.summary] + [c.text for c in item.content or []]
    finish = {"completed": "tool_calls" if calls else "stop", "incomplete": "length"}.get(
        response.status or ""
    )
    return {
        "text": "".join(texts) if saw_text else None,
        "tool_calls": calls or None,
        "refusal": "".join(refusals) if refusals else None,
        "reasoning": "\n\n".join(reasoning) if reasoning else None,
        "finish_reason": finish,
        "choices": None,
        "usage": _usage(response.usage),
    }


def _chat_stream_outcome(chunks: list[ChatCompletionChunk]) -> Outcome:
    state = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(chunk)
    usage = next((c.usage for c in reversed(chunks) if c.usage is not None), None)
    return Outcome(
        [c.model_dump(warnings=False) for c in chunks],
        chat_parts(state.get_final_completion(), usage),
        chunks,
    )


def _kwargs(case: Case, stream: bool, tag: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"model": "primary-model", **case.body, "user": tag}
    if case.api == "chat" and stream:
        kwargs["stream"] = True
        if case.include_usage:
            kwargs["stream_options"] = {"include_usage": True}
    return kwargs


_CLIENTS: dict[tuple[str, bool], Any] = {}
"""One SDK client per base URL, sync and async (making one costs tens of milliseconds); closed with the
stacks."""


def _client(base_url: str, asynchronous: bool) -> Any:
    client = _CLIENTS.get((base_url, asynchronous))
    if client is None:
        kind = openai.AsyncOpenAI if asynchronous else openai.OpenAI
        client = _CLIENTS[base_url, asynchronous] = kind(
            base_url=base_url, api_key=USER_KEY, max_retries=0, timeout=20
        )
    return client


async def _close_clients() -> None:
    for (_url, asynchronous), client in _CLIENTS.items():
        if asynchronous:
            await client.close()
        else:
            client.close()
    _CLIENTS.clear()


def call_sync(base_url: str, case: Case, stream: bool, tag: str) -> Outcome:
    kwargs = _kwargs(case, stream, tag)
    client = _client(base_url, asynchronous=False)
    if case.api == "chat":
        if stream:
            return _chat_stream_outcome(list(client.chat.completions.create(**kwargs)))
        completion = client.chat.completions.create(**kwargs)
        return Outcome([completion.model_dump(warnings=False)], chat_parts(completion, completion.usage))
    if stream:
        with client.responses.stream(**kwargs) as events:
            dumps = [event.model_dump(warnings=False) for event in events]
            final = events.get_final_response()
        return Outcome([*dumps, final.model_dump(warnings=False)], response_parts(final))
    response = client.responses.create(**kwargs)
    return Outcome([response.model_dump(warnings=False)], response_parts(response))


async def call_async(base_url: str, case: Case, stream: bool, tag: str) -> Outcome:
    kwargs = _kwargs(case, stream, tag)
    client = _client(base_url, asynchronous=True)
    if case.api == "chat":
        if stream:
            result = await client.chat.completions.create(**kwargs)
            return _chat_stream_outcome([chunk async for chunk in result])
        completion = await client.chat.completions.create(**kwargs)
        return Outcome([completion.model_dump(warnings=False)], chat_parts(completion, completion.usage))
    if stream:
        async with client.responses.stream(**kwargs) as events:
            dumps = [event.model_dump(warnings=False) async for event in events]
            final = await events.get_final_response()
        return Outcome([*dumps, final.model_dump(warnings=False)], response_parts(final))
    response = await client.responses.create(**kwargs)
    return Outcome([response.model_dump(warnings=False)], response_parts(response))


# --- what the candidate sent ---------------------------------------------------------------------------------


def _tag_of(body: dict[str, Any]) -> str | None:
    return body.get("user")


def _recorded(state: Any, tag: str) -> list[Any]:
    return [r for r in state.received if _tag_of(json.loads(r.body)) == tag]


async def candidate_parts(stack: Stack, case: Case, stream: bool, tag: str) -> dict[str, Any]:
    """Replay the candidate's recorded request byte for byte (the simulator answers a body the same way every
    time) and read its answer with the SDK's types."""
    recorded = _recorded(stack.candidate_state, tag)
    assert recorded and len({r.body for r in recorded}) == 1, "sync and async SDK calls sent different bodies"
    request = recorded[0]
    origin = stack.candidate_url.removesuffix("/v1")
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            origin + request.path, data=request.body, headers={"Content-Type": "application/json"}
        ) as resp,
    ):
        raw = (await resp.read()).decode()
    if not stream:
        if case.api == "chat":
            completion = ChatCompletion.model_validate_json(raw)
            return chat_parts(completion, completion.usage)
        return response_parts(Response.model_validate_json(raw))
    payloads = [line[len("data: ") :] for line in raw.split("\n") if line.startswith("data: ")]
    if case.api == "chat":
        chunks = [ChatCompletionChunk.model_validate_json(p) for p in payloads if p != "[DONE]"]
        return _chat_stream_outcome(chunks).parts
    completed = [json.loads(p) for p in payloads if json.loads(p)["type"] == "response.completed"]
    return response_parts(Response.model_validate(completed[0]["response"]))


# --- what was stored -----------------------------------------------------------------------------------------


def side_parts(side: SideOutput | None) -> dict[str, Any]:
    assert side is not None
    assert side.status == 200 and side.error is None, (side.status, side.error)
    return {
        "text": side.text,
        "tool_calls": side.tool_calls,
        "refusal": side.refusal,
        "reasoning": side.reasoning,
        "finish_reason": side.finish_reason,
        "choices": side.choices,
        "usage": side.usage,
    }


def record_parts(record: dict[str, Any], side: str) -> dict[str, Any]:
    """The same parts from a `shadow export` JSONL record (`<side>` and `<side>_<field>` keys)."""
    parts = {"text": record.get(side)}
    for name in ("tool_calls", "refusal", "reasoning", "finish_reason", "choices", "usage"):
        parts[name] = record.get(f"{side}_{name}")
    return parts


def exported(stack: Stack) -> dict[str, dict[str, Any]]:
    engine = make_engine(stack.settings.db)
    try:
        out = io.StringIO()
        export_pairs(engine, out)
    finally:
        engine.dispose()
    records = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    return {record["id"]: record for record in records}


async def tagged_pairs(stack: Stack, tag: str, count: int, timeout_s: float = 10.0) -> list[Pair]:
    deadline = time.monotonic() + timeout_s
    while True:
        pairs = [p for p in await asyncio.to_thread(stack.pairs) if _tag_of(p.request) == tag]
        if len(pairs) >= count:
            return pairs
        if time.monotonic() > deadline:
            raise AssertionError(
                f"expected {count} pairs tagged {tag!r} within {timeout_s} s, got {len(pairs)}"
            )
        await asyncio.sleep(0.05)


@dataclass
class Result:
    proxied: Outcome
    pairs: list[Pair]
    candidate: dict[str, Any]


async def exercise(stack: Stack, case: Case, stream: bool) -> Result:
    """Call the case directly and through the sidecar, sync and async; check (a) and (b); hand back what was
    seen for the case's own checks."""
    tag = f"{case.name}-{'sse' if stream else 'json'}"
    direct = await asyncio.to_thread(call_sync, stack.primary_url, case, stream, tag)
    proxied_sync = await asyncio.to_thread(call_sync, stack.url, case, stream, tag)
    proxied_async = await call_async(stack.url, case, stream, tag)
    # (a) Exact pass-through, sync and async (the simulator is deterministic per request body: a direct
    # async call sees what a direct sync call sees, ids included).
    assert proxied_sync.dumps == direct.dumps
    assert proxied_async.dumps == direct.dumps
    # (b) Exact capture, both sides, from the store and from the export.
    pairs = await tagged_pairs(stack, tag, 2)
    assert len(pairs) == 2
    candidate = await candidate_parts(stack, case, stream, tag)
    records = exported(stack)
    for pair in pairs:
        assert pair.route == case.api and pair.stream is stream
        assert side_parts(pair.baseline) == proxied_sync.parts
        assert side_parts(pair.candidate) == candidate
        assert record_parts(records[pair.id], "baseline") == proxied_sync.parts
        assert record_parts(records[pair.id], "candidate") == candidate
    return Result(proxied_sync, pairs, candidate)


def _argument_pieces(chunks: list[Any]) -> dict[int, list[str]]:
    pieces: dict[int, list[str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                if call.function is not None and call.function.arguments:
                    pieces.setdefault(call.index, []).append(call.function.arguments)
    return pieces


# --- the cases -----------------------------------------------------------------------------------------------

MODES = [pytest.param(False, id="json"), pytest.param(True, id="sse")]


@pytest.mark.parametrize("stream", MODES)
@pytest.mark.parametrize("case", CHAT_CASES, ids=lambda c: c.name)
async def test_chat_agent_traffic_passes_and_is_captured_exactly(agent_stack, case, stream):
    result = await exercise(agent_stack, case, stream)
    got, candidate, pair = result.proxied.parts, result.candidate, result.pairs[0]
    if case.name == "follow_up":  # (e) the question, and what it follows
        assert pair.prompt == WEATHER_QUESTION + FOLLOW_UP_NOTE
    else:
        assert pair.prompt == case.body["messages"][-1]["content"]
    if case.name in TOOL_CALL_COUNTS:
        assert got["finish_reason"] == "tool_calls" and got["text"] is None
        count = TOOL_CALL_COUNTS[case.name]
        assert len(got["tool_calls"]) == count and len(candidate["tool_calls"]) == count
        for mine, theirs in zip(got["tool_calls"], reversed(candidate["tool_calls"]), strict=True):
            assert mine["name"] == theirs["name"]
            assert mine["arguments"] != theirs["arguments"]  # the same call, written differently
            assert json.loads(mine["arguments"]) == json.loads(theirs["arguments"])
        if stream:  # the arguments came in many small pieces, each call's after its id and name
            pieces = _argument_pieces(result.proxied.chunks)
            assert sorted(pieces) == list(range(count))
            assert all(len(p) >= 5 for p in pieces.values())
    if case.name == "follow_up":
        assert got["tool_calls"] is None and got["finish_reason"] == "stop"
        assert got["text"].startswith('The get_weather tool returned: {"temp_c": 18, "sky": "sunny"}.')
    if case.name == "zh_tools":
        assert [json.loads(c["arguments"])["location"] for c in got["tool_calls"]] == ["北京", "上海"]
        assert "北京" in got["tool_calls"][0]["arguments"]  # as sent, not \\u-escaped
    if case.name == "escapes":
        assert json.loads(got["tool_calls"][0]["arguments"]) == {"query": case.body["messages"][0]["content"]}
        assert '\\"' in got["tool_calls"][0]["arguments"] and "\\t" in got["tool_calls"][0]["arguments"]
    if case.name == "n2_tools":
        (other,) = got["choices"]
        assert other["finish_reason"] == "tool_calls" and len(other["tool_calls"]) == 2
        assert [c["arguments"] for c in other["tool_calls"]] == [c["arguments"] for c in got["tool_calls"]]
        assert {c["id"] for c in other["tool_calls"]}.isdisjoint(c["id"] for c in got["tool_calls"])
    if case.name == "n2":
        assert [c["index"] for c in got["choices"]] == [1] and got["choices"][0]["text"] != got["text"]
        if stream:  # the user did not ask for usage and got none; the candidate was asked for it
            assert got["usage"] is None and candidate["usage"]["total_tokens"] > 0
            primary_body = json.loads(_recorded(agent_stack.primary_state, "n2-sse")[0].body)
            candidate_body = json.loads(_recorded(agent_stack.candidate_state, "n2-sse")[0].body)
            assert "stream_options" not in primary_body
            assert candidate_body["stream_options"] == {"include_usage": True}
    if case.name == "refusal":
        assert got["refusal"] and got["text"] is None and candidate["refusal"]
    if case.name.startswith("json"):
        assert isinstance(json.loads(got["text"]), dict)
    if case.name == "json_schema":
        assert set(json.loads(got["text"])) == {"summary", "steps"}
    if case.name != "n2" or not stream:
        assert got["usage"]["total_tokens"] > 0


@pytest.mark.parametrize("stream", MODES)
@pytest.mark.parametrize("case", RESPONSES_CASES, ids=lambda c: c.name)
async def test_responses_api_passes_and_is_captured_exactly(agent_stack, case, stream):
    result = await exercise(agent_stack, case, stream)
    got, candidate, pair = result.proxied.parts, result.candidate, result.pairs[0]
    assert pair.route == "responses"
    assert got["usage"]["input_tokens"] > 0 and candidate["usage"]["output_tokens"] > 0
    if case.name == "r_tools":
        assert [c["name"] for c in got["tool_calls"]] == ["get_weather", "get_weather"]
        assert all(
            c["id"].startswith("call_") for c in got["tool_calls"]
        )  # call_id, what an output refers to
        assert [json.loads(c["arguments"]) for c in got["tool_calls"]] == [
            json.loads(c["arguments"]) for c in reversed(candidate["tool_calls"])
        ]
    if case.name == "r_follow_up":
        assert pair.prompt == WEATHER_QUESTION + FOLLOW_UP_NOTE
        assert got["text"].startswith("The get_weather tool returned: 18C and sunny.")
    if case.name == "r_refusal":
        assert got["refusal"] and got["text"] is None
    if case.name == "r_json":
        assert set(json.loads(got["text"])) == {"summary", "steps"}


@pytest.mark.parametrize("stream", MODES)
@pytest.mark.parametrize("case", THINKING_CASES, ids=lambda c: c.name)
async def test_reasoning_passes_and_is_captured_exactly(thinking_stack, case, stream):
    result = await exercise(thinking_stack, case, stream)
    got, candidate = result.proxied.parts, result.candidate
    assert got["reasoning"] and candidate["reasoning"]
    if case.name == "think_n2":
        assert got["choices"][0]["reasoning"]
    if case.name.endswith("tool"):
        assert got["tool_calls"] and candidate["tool_calls"]
        assert got["tool_calls"][0]["arguments"] != candidate["tool_calls"][0]["arguments"]  # wrong_arguments
    if stream and case.api == "chat":  # reasoning_content deltas came before any content
        kinds = [
            "reasoning" if getattr(c.choices[0].delta, "reasoning_content", None) else "other"
            for c in result.proxied.chunks
            if c.choices
            and (c.choices[0].delta.content or getattr(c.choices[0].delta, "reasoning_content", None))
        ]
        assert kinds[0] == "reasoning" and kinds.count("reasoning") > 5


# --- vision ----------------------------------------------------------------------------------------------------


def _png(width: int = 256, height: int = 256) -> bytes:
    """A valid PNG of noise (so it does not compress): about 200 KB."""
    rng = random.Random(7)
    rows = b"".join(b"\x00" + rng.randbytes(width * 3) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 1))
        + chunk(b"IEND", b"")
    )


PNG = _png()
PNG_B64 = base64.b64encode(PNG).decode()
VISION = Case(
    "vision",
    "chat",
    {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                ],
            }
        ]
    },
)


@pytest.mark.parametrize("stream", MODES)
async def test_vision_request_passes_exactly_and_is_stored_with_a_placeholder(agent_stack, stream):
    assert 190_000 < len(PNG) < 210_000
    result = await exercise(agent_stack, VISION, stream)
    tag = f"vision-{'sse' if stream else 'json'}"
    # The primary got the user's bytes, and the candidate the whole image: it has to see it to answer.
    direct, proxied = (r.body for r in _recorded(agent_stack.primary_state, tag)[:2])
    assert proxied == direct and PNG_B64.encode() in proxied
    assert PNG_B64.encode() in _recorded(agent_stack.candidate_state, tag)[0].body
    placeholder = f"[image/png, {len(PNG)} bytes, sha256 {hashlib.sha256(PNG).hexdigest()[:8]}]"
    records = exported(agent_stack)
    for pair in result.pairs:
        assert pair.prompt == "What is in this picture?"
        assert pair.request["messages"][0]["content"][1] == {
            "type": "image_url",
            "image_url": {"url": placeholder},
        }
        stored = json.dumps(pair.request)
        assert "base64" not in stored and PNG_B64[:64] not in stored
        assert PNG_B64[:64] not in json.dumps(records[pair.id])


async def test_vision_request_keeps_its_image_with_store_binary_parts(thinking_stack):
    result = await exercise(thinking_stack, VISION, False)
    for pair in result.pairs:
        assert (
            pair.request["messages"][0]["content"][1]["image_url"]["url"]
            == f"data:image/png;base64,{PNG_B64}"
        )


# A Responses `input_file` (and a chat `file` part) carries its file as a data: URL in `file_data`, as the
# OpenAI docs show: "data:application/pdf;base64,...".
PDF = b"%PDF-1.4\n" + random.Random(11).randbytes(20_000)
PDF_FILE = Case(
    "r_pdf",
    "responses",
    {
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Summarise this file."},
                    {
                        "type": "input_file",
                        "filename": "report.pdf",
                        "file_data": f"data:application/pdf;base64,{base64.b64encode(PDF).decode()}",
                    },
                ],
            }
        ]
    },
)


async def test_a_file_sent_as_a_data_url_gets_the_placeholder_an_image_gets(agent_stack):
    """Fails today: `shadow.core.prompts.binary_placeholders` treats every `file_data` value as raw base64,
    so a data: URL there is decoded prefix and all: the placeholder names application/octet-stream, a size
    19 bytes too large and a hash of those bytes, not the file's."""
    result = await exercise(agent_stack, PDF_FILE, False)
    placeholder = f"[application/pdf, {len(PDF)} bytes, sha256 {hashlib.sha256(PDF).hexdigest()[:8]}]"
    for pair in result.pairs:
        assert pair.prompt == "Summarise this file."
        assert pair.request["input"][0]["content"][1]["file_data"] == placeholder


async def test_the_token_estimate_leaves_raw_base64_audio_out():
    """Fails today: `shadow.sidecar.token_count.estimated_call_tokens` says it leaves inline binary data
    out, but only skips data: URLs; raw base64 (`input_audio.data`, `file.file_data` without a prefix) is
    counted as text, so one 100 KB clip to a candidate that reports no usage costs ~34,000 tokens of the
    budget."""
    clip = base64.b64encode(random.Random(3).randbytes(100_000)).decode()
    request = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Transcribe this."},
                    {"type": "input_audio", "input_audio": {"data": clip, "format": "wav"}},
                ],
            }
        ]
    }
    assert estimated_call_tokens(request, []) < 50


# --- the budget ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("budget", list(BUDGETS))
async def test_streamed_candidates_count_against_the_token_budget(stacks, budget):
    """(c) 10 requests under a 50-token hourly budget: only the first few are mirrored, streamed or not, and
    whether the candidate reports usage or not (then its tokens are estimated)."""
    stack = stacks[budget]
    stream, report_usage = BUDGETS[budget]
    async with openai.AsyncOpenAI(base_url=stack.url, api_key=USER_KEY, max_retries=0, timeout=20) as client:
        for number in range(10):
            messages = _user(f"Question {number}: why should a team pilot a new system first?")
            result = await client.chat.completions.create(
                model="primary-model", messages=messages, stream=stream
            )
            if stream:
                chunks = [chunk async for chunk in result]
                assert all(chunk.usage is None for chunk in chunks)  # the user asked for none
            await asyncio.sleep(0.1)  # the candidate's answer is counted before the next request
    mirrored = stack.candidate_state.calls
    assert 1 <= mirrored <= 3, f"{mirrored} of 10 requests mirrored under a 50-token budget"
    pairs = await stack.wait_for_pairs(mirrored)
    for recorded in stack.candidate_state.received:
        body = json.loads(recorded.body)
        assert body.get("stream_options") == ({"include_usage": True} if stream else None)
    for recorded in stack.primary_state.received:
        assert "stream_options" not in json.loads(recorded.body)  # the user's request, untouched
    for pair in pairs:
        assert (pair.candidate.usage is not None) is report_usage
        assert pair.baseline.usage is None if stream else pair.baseline.usage["total_tokens"] > 0
    await stack.wait_for_metric('shadow_mirror_dropped_total{reason="token_budget"}')
