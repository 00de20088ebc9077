"""Acceptance 1: the real `openai` SDK gets through the sidecar exactly what it gets from the primary."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import openai
import pytest

from shadow.simulator import SimulatedModel
from tests.harness import capture_stack

PROMPTS = {
    "zh": "请用几句话解释一下为什么要先做小规模试点，再逐步推广新系统？",
    "en": "In a few sentences, explain why a team should pilot a new system before rolling it out.",
}
# 7-byte slices split SSE lines and 3-byte CJK characters at every possible offset.
PRIMARY = SimulatedModel(name="primary-model", slice_bytes=7, sentences=5)


def _chat_kwargs(lang: str, stream: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "model": "primary-model",
        "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": PROMPTS[lang]},
        ],
        "stream": stream,
        "user": f"user-{lang}",
    }
    if stream:
        kwargs["stream_options"] = {"include_usage": True}
    return kwargs


def _completion_kwargs(lang: str, stream: bool) -> dict[str, Any]:
    return {"model": "primary-model", "prompt": PROMPTS[lang], "stream": stream, "max_tokens": 400}


def _sync_call(base_url: str, route: str, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    client = openai.OpenAI(base_url=base_url, api_key="sk-user-key", max_retries=0, timeout=20)
    api = client.chat.completions if route == "chat" else client.completions
    result = api.create(**kwargs)
    items = list(result) if kwargs["stream"] else [result]
    client.close()
    return [item.model_dump() for item in items]


async def _async_call(base_url: str, route: str, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    async with openai.AsyncOpenAI(
        base_url=base_url, api_key="sk-user-key", max_retries=0, timeout=20
    ) as client:
        api = client.chat.completions if route == "chat" else client.completions
        result = await api.create(**kwargs)
        if kwargs["stream"]:
            return [item.model_dump() async for item in result]
        return [result.model_dump()]


def _assembled_text(items: list[dict[str, Any]], route: str) -> str:
    text = ""
    for item in items:
        for choice in item.get("choices") or []:
            if route == "completions":
                text += choice.get("text") or ""
            elif "delta" in choice:
                text += (choice["delta"] or {}).get("content") or ""
            else:
                text += choice["message"]["content"] or ""
    return text


@pytest.mark.parametrize("route", ["chat", "completions"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_sdk_sees_the_primary_exactly(tmp_path, route, stream):
    make_kwargs = _chat_kwargs if route == "chat" else _completion_kwargs
    async with capture_stack(tmp_path, primary_sim=PRIMARY) as stack:
        expected_texts = []
        for lang in ("zh", "en"):
            kwargs = make_kwargs(lang, stream)
            direct_sync = await asyncio.to_thread(_sync_call, stack.primary_url, route, kwargs)
            proxied_sync = await asyncio.to_thread(_sync_call, stack.url, route, kwargs)
            direct_async = await _async_call(stack.primary_url, route, kwargs)
            proxied_async = await _async_call(stack.url, route, kwargs)
            assert proxied_sync == direct_sync
            assert proxied_async == direct_async
            assert (
                direct_sync == direct_async
            )  # the simulator is deterministic: the comparison means something
            text = _assembled_text(direct_sync, route)
            assert len(text) > 40
            if lang == "zh":
                assert "。" in text
            expected_texts.append(text)
            last = direct_sync[-1] if not stream or route == "completions" else direct_sync[-2]
            assert last["choices"][0]["finish_reason"] == "stop"
            if route == "chat" and stream:
                assert direct_sync[-1]["usage"]["completion_tokens"] > 0
            elif not stream:
                assert direct_sync[0]["usage"]["total_tokens"] > 0
                assert direct_sync[0]["id"].startswith("simcmpl-")
        # Two proxied calls per language, each mirrored (sample rate 1): the pairs hold the same text.
        pairs = await stack.wait_for_pairs(4)
        sent_to_candidate = [json.loads(r.body) for r in stack.candidate_state.received]
    assert {body["model"] for body in sent_to_candidate} == {"candidate-model"}
    assert sorted({p.baseline.text for p in pairs}) == sorted(expected_texts)
    for pair in pairs:
        assert pair.route == route and pair.stream is stream
        assert pair.baseline.finish_reason == "stop" and pair.baseline.status == 200
        assert pair.candidate is not None and pair.candidate.status == 200 and pair.candidate.text
        assert pair.candidate.model == "candidate"  # as the candidate server reports itself
        assert pair.user_cancelled is False
        if stream:
            assert pair.candidate.ttft_ms is not None and pair.candidate.ttft_ms <= pair.candidate.latency_ms


async def test_raw_bytes_and_headers_are_the_primarys(tmp_path):
    """Below the SDK: status, body bytes and end-to-end headers are identical."""
    body = {"model": "m", "messages": [{"role": "user", "content": PROMPTS["zh"]}], "stream": True}
    async with (
        capture_stack(tmp_path, primary_sim=PRIMARY) as stack,
        aiohttp.ClientSession(auto_decompress=False) as http,
    ):
        results = []
        for base in (stack.primary_url, stack.url):
            async with http.post(f"{base}/chat/completions", json=body) as resp:
                results.append((resp.status, await resp.read(), resp.headers.get("Content-Type")))
        assert results[0] == results[1]
        assert results[0][1].endswith(b"data: [DONE]\n\n")
        # Non-mirrored routes pass through too.
        async with http.get(f"{stack.primary_url}/models") as a, http.get(f"{stack.url}/models") as b:
            assert (a.status, await a.read()) == (b.status, await b.read())
