"""The stored prompt in agent loops, binary parts left out of stored requests, and candidate token counts."""

from __future__ import annotations

import base64
import hashlib
import json

from shadow.core.pairs import SideOutput
from shadow.core.prompts import binary_placeholders, follows_tool_results, prompt_of
from shadow.core.settings import Settings
from shadow.sidecar.mirror import candidate_request_body
from shadow.sidecar.token_count import candidate_tokens, estimate_tokens, reported_tokens

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 800).decode()


def test_prompt_is_the_last_user_turn_plus_the_tool_results_it_follows():
    request = {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "old question"},
            {"role": "assistant", "content": "old answer"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "weather in Paris "},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}},
                    {"type": "text", "text": "and Rome?"},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
                    {"id": "b", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
                ],
            },
            {"role": "tool", "tool_call_id": "a", "content": "18C"},
            {"role": "tool", "tool_call_id": "b", "content": "22C"},
        ]
    }
    assert prompt_of(request) == "weather in Paris and Rome?\n[after 2 tool results: get_weather]"
    assert follows_tool_results(request)
    assert not follows_tool_results({"messages": [{"role": "user", "content": "hi"}]})


def test_responses_input_string_and_items():
    assert prompt_of({"input": "hello"}) == "hello"
    items = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "flights to Rome"}]},
        {"type": "function_call", "call_id": "c1", "name": "search_flights", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "[]"},
    ]
    assert prompt_of({"input": items}) == "flights to Rome\n[after 1 tool result: search_flights]"
    assert follows_tool_results({"input": items})


def test_images_and_audio_become_placeholders_with_size_and_hash():
    raw = base64.b64decode(PNG)
    request = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}},
                    {"type": "input_audio", "input_audio": {"data": PNG, "format": "wav"}},
                    {"type": "text", "text": "data: is not a data URL unless it starts the string"},
                ],
            }
        ]
    }
    stored = binary_placeholders(request)
    text = json.dumps(stored)
    assert PNG[:100] not in text and len(text) < 600
    digest = hashlib.sha256(raw).hexdigest()[:8]
    assert (
        stored["messages"][0]["content"][0]["image_url"]["url"]
        == f"[image/png, {len(raw)} bytes, sha256 {digest}]"
    )
    assert stored["messages"][0]["content"][1]["input_audio"]["data"].startswith("[audio/wav, ")
    assert stored["messages"][0]["content"][2] == request["messages"][0]["content"][2]
    assert request["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")


def test_the_candidates_streamed_request_asks_for_usage_and_the_users_is_untouched():
    user = {"model": "a", "stream": True, "messages": [], "stream_options": {"foo": 1}}
    body = candidate_request_body(user, Settings(), "chat")
    assert body["stream_options"] == {"foo": 1, "include_usage": True}
    assert user["stream_options"] == {"foo": 1}
    assert "stream_options" not in candidate_request_body({"model": "a", "messages": []}, Settings(), "chat")
    assert "stream_options" not in candidate_request_body(
        {"model": "a", "stream": True}, Settings(), "responses"
    )


def test_tokens_are_reported_or_estimated():
    assert reported_tokens({"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}) == 15
    assert reported_tokens({}) is None and reported_tokens(None) is None
    side = SideOutput(
        text="x" * 400, tool_calls=[{"id": "a", "type": "function", "name": "f", "arguments": "{}"}]
    )
    estimated = candidate_tokens(None, {"messages": [{"role": "user", "content": "y" * 40}]}, side)
    # Every string of the messages counts (the role too), plus the answer: text, call name, arguments.
    assert (
        estimated == estimate_tokens("user") + estimate_tokens("y" * 40) + estimate_tokens("x" * 400) + 1 + 1
    )
    assert candidate_tokens({"total_tokens": 7}, {}, side) == 7
    assert candidate_tokens(None, {"messages": []}, SideOutput(error="timed out")) == 0
    assert estimate_tokens("你好，世界") == 4 + 1
