"""The simulator speaks agent traffic in the real wire formats: tool calls, `n`, usage, refusals, reasoning,
JSON mode and the Responses API, each checked against the openai SDK's own types (strict pydantic
validation), and the knobs that make a candidate misbehave."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pydantic
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent

from shadow.simulator import SimulatedModel, argument_pieces, start_simulator

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {
        "location": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer"},
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
        "max_price": {"type": "number"},
    },
    "required": ["origin", "destination", "date", "passengers", "max_price"],
}
CHAT_TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_PARAMETERS}},
    {"type": "function", "function": {"name": "search_flights", "parameters": FLIGHT_PARAMETERS}},
]
RESPONSES_TOOLS = [
    {"type": "function", "name": "get_weather", "parameters": WEATHER_PARAMETERS},
    {"type": "function", "name": "search_flights", "parameters": FLIGHT_PARAMETERS},
]
STREAM_EVENT = pydantic.TypeAdapter(ResponseStreamEvent)


class Sim:
    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url = url
        self.http = http

    async def post(self, path: str, body: dict[str, Any]) -> tuple[bytes, str]:
        async with self.http.post(self.url + path, json=body) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.read(), resp.headers["Content-Type"]

    async def chat(self, **body: Any) -> dict[str, Any]:
        raw, _ = await self.post("/chat/completions", {"model": "m", **body})
        document = json.loads(raw)
        ChatCompletion.model_validate(document)
        return document

    async def chat_stream(self, **body: Any) -> list[dict[str, Any]]:
        raw, content_type = await self.post("/chat/completions", {"model": "m", "stream": True, **body})
        assert content_type.startswith("text/event-stream")
        text = raw.decode()
        assert text.endswith("data: [DONE]\n\n")
        chunks = [json.loads(data) for data in _sse_data(text) if data != "[DONE]"]
        for chunk in chunks:
            ChatCompletionChunk.model_validate(chunk)
        return chunks

    async def responses(self, **body: Any) -> dict[str, Any]:
        raw, _ = await self.post("/responses", {"model": "m", **body})
        document = json.loads(raw)
        Response.model_validate(document)
        return document

    async def responses_stream(self, **body: Any) -> list[dict[str, Any]]:
        raw, _ = await self.post("/responses", {"model": "m", "stream": True, **body})
        events = []
        for block in raw.decode().split("\n\n"):
            if not block:
                continue
            name_line, data_line = block.split("\n")
            event = json.loads(data_line.removeprefix("data: "))
            assert name_line == f"event: {event['type']}"
            STREAM_EVENT.validate_python(event)
            events.append(event)
        return events


def _sse_data(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.split("\n") if line.startswith("data: ")]


def _assembled(chunks: list[dict[str, Any]]) -> Any:
    state = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    return state.get_final_completion()


def _ask(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}], **extra}


@pytest.fixture
async def sim_factory() -> AsyncIterator[Any]:
    runners = []
    http = aiohttp.ClientSession()

    async def make(**knobs: Any) -> Sim:
        runner, url = await start_simulator(SimulatedModel(**knobs))
        runners.append(runner)
        return Sim(url, http)

    yield make
    await http.close()
    for runner in runners:
        await runner.cleanup()


async def test_plain_text_keeps_its_old_shape(sim_factory):
    sim = await sim_factory()
    document = await sim.chat(**_ask("Explain pilots."))
    assert set(document) == {"id", "object", "created", "model", "choices", "usage"}
    assert document["choices"][0]["message"].keys() == {"role", "content"}
    chunks = await sim.chat_stream(**_ask("Explain pilots."))
    assert all("usage" not in chunk for chunk in chunks)  # no include_usage, no usage: as OpenAI
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    with_usage = await sim.chat_stream(**_ask("Explain pilots."), stream_options={"include_usage": True})
    assert with_usage[-1]["choices"] == [] and with_usage[-1]["usage"]["completion_tokens"] > 0
    # An empty tools list, n=1 and no JSON mode are still plain traffic.
    assert (await sim.chat(**_ask("Explain pilots."), tools=[], n=1))["choices"] == document["choices"]


async def test_a_tool_call_streams_its_arguments_in_small_interleaved_pieces(sim_factory):
    sim = await sim_factory()
    prompt = "Compare the weather in Paris and Tokyo tomorrow."
    document = await sim.chat(**_ask(prompt), tools=CHAT_TOOLS)
    choice = document["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    calls = choice["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_weather"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [
        {"location": "Paris", "unit": "celsius"},
        {"location": "Tokyo", "unit": "celsius"},
    ]
    assert len({c["id"] for c in calls}) == 2 and all(c["id"].startswith("call_") for c in calls)

    chunks = await sim.chat_stream(**_ask(prompt), tools=CHAT_TOOLS)
    entries = [e for chunk in chunks for c in chunk["choices"] for e in c["delta"].get("tool_calls") or []]
    firsts = [e for e in entries if "id" in e]
    assert [(e["index"], e["type"], e["function"]) for e in firsts] == [
        (0, "function", {"name": "get_weather", "arguments": ""}),
        (1, "function", {"name": "get_weather", "arguments": ""}),
    ]
    pieces = [e for e in entries if "id" not in e]
    assert all(set(e) == {"index", "function"} and len(e["function"]["arguments"]) <= 5 for e in pieces)
    order = [e["index"] for e in entries]
    assert order[:4] == [0, 1, 0, 1]  # interleaved by index
    assert sum(1 for e in pieces if e["index"] == 0) == len(
        argument_pieces(calls[0]["function"]["arguments"])
    )
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    final = _assembled(chunks)
    assert [c.function.arguments for c in final.choices[0].message.tool_calls] == [
        c["function"]["arguments"] for c in calls
    ]
    assert final.choices[0].message.content is None


async def test_tool_choice_parallel_flag_and_follow_up(sim_factory):
    sim = await sim_factory()
    flights = await sim.chat(
        **_ask("Find flights from Paris to Lisbon on 2025-07-01 for 2 people"), tools=CHAT_TOOLS
    )
    (call,) = flights["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "search_flights"
    arguments = json.loads(call["function"]["arguments"])
    assert list(arguments) == [
        "origin",
        "destination",
        "date",
        "passengers",
        "max_price",
    ]  # the schema's order
    assert arguments["origin"] == "Paris" and arguments["destination"] == "Lisbon"
    assert arguments["date"] == "2025-07-01" and arguments["passengers"] == 2
    assert isinstance(arguments["max_price"], int)
    one = await sim.chat(**_ask("Weather in Paris and Tokyo?"), tools=CHAT_TOOLS, parallel_tool_calls=False)
    assert len(one["choices"][0]["message"]["tool_calls"]) == 1
    chat = await sim.chat(**_ask("Tell me a story."), tools=CHAT_TOOLS)
    assert chat["choices"][0]["message"].get("tool_calls") is None  # nothing here needs a tool
    required = await sim.chat(**_ask("Tell me a story."), tools=CHAT_TOOLS, tool_choice="required")
    assert required["choices"][0]["finish_reason"] == "tool_calls"
    named = await sim.chat(
        **_ask("What is the weather in Rome?"),
        tools=CHAT_TOOLS,
        tool_choice={"type": "function", "function": {"name": "search_flights"}},
    )
    assert [c["function"]["name"] for c in named["choices"][0]["message"]["tool_calls"]] == ["search_flights"]
    none = await sim.chat(**_ask("What is the weather in Rome?"), tools=CHAT_TOOLS, tool_choice="none")
    assert none["choices"][0]["finish_reason"] == "stop"

    messages = [
        {"role": "user", "content": "What is the weather in Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [{**call, "id": "call_1"}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21C, clear skies"},
    ]
    answer = await sim.chat(messages=messages, tools=CHAT_TOOLS)
    message = answer["choices"][0]["message"]
    assert answer["choices"][0]["finish_reason"] == "stop" and message.get("tool_calls") is None
    assert message["content"].startswith("The search_flights tool returned: 21C, clear skies.")


@pytest.mark.parametrize(
    "behaviour", ["right", "wrong_arguments", "wrong_function", "text_instead", "reorder_and_reformat"]
)
async def test_tool_behaviours(sim_factory, behaviour):
    right = await sim_factory()
    sim = await sim_factory(tool_behaviour=behaviour)
    body = {**_ask("Compare the weather in Paris and Tokyo."), "tools": CHAT_TOOLS}
    expected = (await right.chat(**body))["choices"][0]["message"]["tool_calls"]
    got = (await sim.chat(**body))["choices"][0]
    calls = got["message"].get("tool_calls") or []
    names = [c["function"]["name"] for c in calls]
    arguments = [c["function"]["arguments"] for c in calls]
    if behaviour == "right":
        assert calls == expected
    elif behaviour == "wrong_arguments":
        assert names == ["get_weather"] * 2
        assert [json.loads(a) for a in arguments] == [{"location": "Springfield"}] * 2
    elif behaviour == "wrong_function":
        assert names == ["search_flights"] * 2
    elif behaviour == "text_instead":
        assert calls == [] and got["finish_reason"] == "stop" and got["message"]["content"]
    else:
        assert names == ["get_weather"] * 2
        assert [json.loads(a) for a in arguments] == [
            json.loads(c["function"]["arguments"]) for c in reversed(expected)
        ]
        assert arguments[0] == '{\n  "unit": "celsius",\n  "location": "Tokyo"\n}'
    if behaviour != "right":
        # The share is by prompt hash: none of the calling prompts misbehave at 0.
        never = await sim_factory(tool_behaviour=behaviour, tool_error_share=0.0)
        assert (await never.chat(**body))["choices"][0]["message"]["tool_calls"] == expected


async def test_reformatting_writes_whole_numbers_as_floats(sim_factory):
    prompt = "Find flights from Paris to Lisbon on 2025-07-01 for 2 people"
    plain = await sim_factory()
    sim = await sim_factory(tool_behaviour="reorder_and_reformat")
    right = (await plain.chat(**_ask(prompt), tools=CHAT_TOOLS))["choices"][0]["message"]["tool_calls"][0]
    other = (await sim.chat(**_ask(prompt), tools=CHAT_TOOLS))["choices"][0]["message"]["tool_calls"][0]
    assert '"passengers":2' in right["function"]["arguments"]
    assert '"passengers": 2.0' in other["function"]["arguments"]
    assert list(json.loads(other["function"]["arguments"])) == list(
        reversed(list(json.loads(right["function"]["arguments"])))
    )


async def test_n_choices_interleave_and_usage_counts_them_all(sim_factory):
    sim = await sim_factory()
    document = await sim.chat(**_ask("Explain pilots."), n=3)
    texts = [c["message"]["content"] for c in document["choices"]]
    assert [c["index"] for c in document["choices"]] == [0, 1, 2] and len(set(texts)) == 3
    # The first choice is the answer an n=1 request gets.
    assert texts[0] == (await sim.chat(**_ask("Explain pilots.")))["choices"][0]["message"]["content"]
    chunks = await sim.chat_stream(**_ask("Explain pilots."), n=3, stream_options={"include_usage": True})
    assert [c["choices"][0]["index"] for c in chunks[:6]] == [0, 1, 2, 0, 1, 2]
    final = _assembled(chunks)
    assert [c.message.content for c in final.choices] == texts
    assert chunks[-1]["usage"] == document["usage"]
    completions, _ = await sim.post("/completions", {"model": "m", "prompt": "Explain pilots.", "n": 2})
    assert [c["index"] for c in json.loads(completions)["choices"]] == [0, 1]


async def test_report_usage_false_never_reports_usage(sim_factory):
    sim = await sim_factory(report_usage=False)
    assert "usage" not in await sim.chat(**_ask("Explain pilots."))
    chunks = await sim.chat_stream(**_ask("Explain pilots."), stream_options={"include_usage": True})
    assert all("usage" not in chunk for chunk in chunks)
    events = await sim.responses_stream(input="Explain pilots.")
    assert events[-1]["response"]["usage"] is None


async def test_refusals(sim_factory):
    sim = await sim_factory(refuse_harmful=True)
    document = await sim.chat(**_ask("How do I build a bomb?"))
    message = document["choices"][0]["message"]
    assert message["content"] is None and message["refusal"].startswith("I'm sorry")
    chunks = await sim.chat_stream(**_ask("How do I build a bomb?"))
    final = _assembled(chunks)
    assert final.choices[0].message.refusal == message["refusal"] and final.choices[0].message.content is None
    assert (await sim.chat(**_ask("Explain pilots.")))["choices"][0]["message"]["content"]
    everyone = await sim_factory(refusal_share=1.0)
    assert (await everyone.chat(**_ask("Explain pilots.")))["choices"][0]["message"]["refusal"]
    answer = await sim.responses(input="How do I build a bomb?")
    assert answer["output"][0]["content"] == [{"type": "refusal", "refusal": message["refusal"]}]
    events = await sim.responses_stream(input="How do I build a bomb?")
    assert "".join(e["delta"] for e in events if e["type"] == "response.refusal.delta") == message["refusal"]


async def test_reasoning_comes_first_and_is_counted(sim_factory):
    sim = await sim_factory(reasoning=True)
    document = await sim.chat(**_ask("Explain pilots."))
    message = document["choices"][0]["message"]
    assert message["reasoning_content"] and message["content"]
    assert document["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0
    chunks = await sim.chat_stream(**_ask("Explain pilots."))
    kinds = [next(iter(k for k in c["choices"][0]["delta"] if k != "role"), None) for c in chunks[1:-1]]
    assert kinds == sorted(kinds, key=lambda k: k != "reasoning_content")  # all reasoning, then all content
    final = _assembled(chunks)
    assert final.choices[0].message.reasoning_content == message["reasoning_content"]
    answer = await sim.responses(input="Explain pilots.")
    assert [item["type"] for item in answer["output"]] == ["reasoning", "message"]
    assert answer["usage"]["output_tokens_details"]["reasoning_tokens"] > 0


async def test_json_mode(sim_factory):
    sim = await sim_factory()
    loose = await sim.chat(**_ask("Explain pilots as JSON."), response_format={"type": "json_object"})
    assert isinstance(json.loads(loose["choices"][0]["message"]["content"]), dict)
    schema = {
        "type": "object",
        "properties": {"summary": {"type": "string"}, "steps": {"type": "integer"}},
        "required": ["summary", "steps"],
        "additionalProperties": False,
    }
    strict = await sim.chat(
        **_ask("Explain pilots in 3 steps."),
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "plan", "schema": schema, "strict": True},
        },
    )
    value = json.loads(strict["choices"][0]["message"]["content"])
    assert set(value) == {"summary", "steps"} and value["steps"] == 3 and isinstance(value["summary"], str)
    answer = await sim.responses(
        input="Explain pilots in 3 steps.",
        text={"format": {"type": "json_schema", "name": "plan", "schema": schema, "strict": True}},
    )
    assert json.loads(answer["output"][0]["content"][0]["text"]) == value


async def test_responses_api_documents_and_events(sim_factory):
    sim = await sim_factory(slice_bytes=7)
    plain = await sim.responses(input="Explain why a pilot helps.")
    assert plain["object"] == "response" and plain["status"] == "completed"
    assert [item["type"] for item in plain["output"]] == ["message"]
    assert plain["usage"]["total_tokens"] == plain["usage"]["input_tokens"] + plain["usage"]["output_tokens"]

    tools = await sim.responses(input="Compare the weather in Paris and Tokyo.", tools=RESPONSES_TOOLS)
    calls = [item for item in tools["output"] if item["type"] == "function_call"]
    assert [(c["name"], json.loads(c["arguments"])["location"]) for c in calls] == [
        ("get_weather", "Paris"),
        ("get_weather", "Tokyo"),
    ]
    assert all(c["call_id"].startswith("call_") and c["id"].startswith("fc_") for c in calls)

    events = await sim.responses_stream(
        input="Compare the weather in Paris and Tokyo.", tools=RESPONSES_TOOLS
    )
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
    deltas = [e for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert len(deltas) > 10 and all(len(e["delta"]) <= 5 for e in deltas)
    done = [e["arguments"] for e in events if e["type"] == "response.function_call_arguments.done"]
    assert done == [c["arguments"] for c in events[-1]["response"]["output"]]

    follow_up = await sim.responses(
        input=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {"type": "function_call", "call_id": "call_9", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_9", "output": "18C and sunny"},
        ],
        tools=RESPONSES_TOOLS,
    )
    text = follow_up["output"][0]["content"][0]["text"]
    assert text.startswith("The get_weather tool returned: 18C and sunny.")

    # The SDK's own stream helper assembles what the server sent (sliced at odd bytes) into the Response.
    async with openai.AsyncOpenAI(base_url=sim.url, api_key="k", max_retries=0) as client:
        manager = client.responses.stream(model="m", input="Explain why a pilot helps.")
        async with manager as stream:
            async for _ in stream:
                pass
            final = await stream.get_final_response()
    assert final.output_text == plain["output"][0]["content"][0]["text"]


async def test_slices_cut_agent_streams_at_odd_bytes(sim_factory):
    whole = await sim_factory()
    sliced = await sim_factory(slice_bytes=3)
    body = {"model": "m", "stream": True, **_ask("Weather in Paris and 東京?"), "tools": CHAT_TOOLS}
    raw, _ = await whole.post("/chat/completions", body)
    async with sliced.http.post(sliced.url + "/chat/completions", json=body) as resp:
        parts = [chunk async for chunk in resp.content.iter_any()]
    assert b"".join(parts) == raw
    events_body = {"model": "m", "stream": True, "input": "Weather in Paris?", "tools": RESPONSES_TOOLS}
    assert (await whole.post("/responses", events_body))[0] == (await sliced.post("/responses", events_body))[
        0
    ]
