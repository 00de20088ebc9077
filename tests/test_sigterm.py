"""Acceptance 6: SIGTERM under load loses no completed pair. A real `shadow serve` process is stopped
while requests are in flight; every request the user saw answered must be in the store, exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time

import aiohttp
from aiohttp import web

from shadow.simulator import SimulatedModel, start_simulator
from shadow.store.database import make_engine
from tests.harness import read_pairs
from tests.net import free_port


async def _wait_until_up(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not come up")
            await asyncio.sleep(0.1)


async def test_sigterm_under_load_loses_no_completed_pair(tmp_path):
    primary_runner, primary_url = await start_simulator(SimulatedModel(name="p", chunk_delay_s=0.005))
    # A candidate slower than the primary, so mirrors are still in flight when SIGTERM arrives.
    candidate_runner, candidate_url = await start_simulator(SimulatedModel(name="c", first_byte_delay_s=0.4))
    port, admin_port = free_port(), free_port()
    db = f"sqlite:///{tmp_path / 'pairs.db'}"
    env = {**os.environ, "SHADOW_CANDIDATE_API_KEY": "sk-c"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadow.cli", "serve",
        "--primary", primary_url, "--candidate", candidate_url, "--candidate-model", "c",
        "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin_port}",
        "--sample-rate", "1", "--secondary-rate", "0", "--db", db, "--drain-timeout-s", "10",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    completed: list[str] = []
    try:
        await _wait_until_up(f"http://127.0.0.1:{admin_port}/healthz")

        async def user(i: int, http: aiohttp.ClientSession) -> None:
            body = {"model": "p", "messages": [{"role": "user", "content": f"问题 {i}: 为什么要灰度发布?"}]}
            body["stream"] = i % 2 == 0
            try:
                async with http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body) as resp:
                    data = await resp.read()
                    if resp.status == 200 and (b"[DONE]" in data or b'"choices"' in data):
                        completed.append(f"问题 {i}:")
            except aiohttp.ClientError:
                pass  # sent after the listener closed: not a completed exchange

        async with aiohttp.ClientSession() as http:
            tasks = [asyncio.create_task(user(i, http)) for i in range(40)]
            await asyncio.sleep(0.25)
            process.send_signal(signal.SIGTERM)
            late = [asyncio.create_task(user(100 + i, http)) for i in range(10)]
            await asyncio.gather(*tasks, *late)
        output = (await asyncio.wait_for(process.communicate(), 30))[0].decode()
        assert process.returncode == 0, output
    finally:
        if process.returncode is None:
            process.kill()
        await primary_runner.cleanup()
        await candidate_runner.cleanup()

    assert len(completed) >= 30, "most requests were under way before SIGTERM"
    engine = make_engine(db)
    pairs = read_pairs(engine)
    engine.dispose()
    prompts = [p.prompt.split(" 为")[0] for p in pairs]
    assert len(prompts) == len(set(prompts)), "no pair stored twice"
    assert sorted(prompts) == sorted(completed), "every completed exchange is stored"
    assert all(p.candidate is not None and p.candidate.status == 200 for p in pairs)


def _forever_or_quick_primary() -> web.Application:
    """A primary whose answers are quick, except for a prompt with "forever": that stream never ends."""

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        prompt = body["messages"][-1]["content"]
        if "forever" not in prompt:
            message = {"role": "assistant", "content": f"答: {prompt}"}
            return web.json_response(
                {"id": "x", "object": "chat.completion", "model": "p",
                 "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
            )  # fmt: skip
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        while True:
            chunk = {
                "id": "x",
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": "再"}}],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await asyncio.sleep(0.05)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


async def test_sigterm_with_a_hanging_candidate_and_an_endless_stream_ends_within_the_drain_bound(tmp_path):
    primary = web.AppRunner(_forever_or_quick_primary())
    await primary.setup()
    primary_port = free_port()
    await web.TCPSite(primary, "127.0.0.1", primary_port).start()
    # A candidate that accepts and never answers: every mirror hangs until the shutdown cuts it off.
    candidate_runner, candidate_url = await start_simulator(SimulatedModel(name="c", first_byte_delay_s=3600))
    port, admin_port = free_port(), free_port()
    db = f"sqlite:///{tmp_path / 'pairs.db'}"
    drain_s = 4.0
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadow.cli", "serve",
        "--primary", f"http://127.0.0.1:{primary_port}/v1", "--candidate", candidate_url,
        "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin_port}",
        "--sample-rate", "1", "--secondary-rate", "0", "--db", db, "--drain-timeout-s", str(drain_s),
        "--max-mirrors-in-flight", "4",
        env={**os.environ, "SHADOW_CANDIDATE_API_KEY": "sk-c"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        await _wait_until_up(f"http://127.0.0.1:{admin_port}/healthz")
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        async with aiohttp.ClientSession() as http:
            completed = []
            for i in range(12):  # more than the 4 mirror slots: most mirrors wait in the queue
                body = {"model": "p", "messages": [{"role": "user", "content": f"问题 {i}"}]}
                async with http.post(url, json=body) as resp:
                    assert resp.status == 200
                    await resp.read()
                    completed.append(f"问题 {i}")

            async def endless() -> int:
                body = {"model": "p", "stream": True, "messages": [{"role": "user", "content": "forever"}]}
                received = 0
                try:
                    async with http.post(url, json=body) as resp:
                        async for chunk in resp.content.iter_any():
                            received += len(chunk)
                except aiohttp.ClientError:
                    pass
                return received

            stream = asyncio.create_task(endless())
            await asyncio.sleep(1.0)
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            output = (await asyncio.wait_for(process.communicate(), drain_s + 10))[0].decode()
            elapsed = time.monotonic() - started
            print(
                f"shutdown with a hanging candidate and an endless stream: {elapsed:.2f} s (drain {drain_s} s)"
            )
            assert await asyncio.wait_for(stream, 5) > 0, "the stream was served until the cut-off"
        assert process.returncode == 0, output
        assert elapsed <= drain_s + 2.0, (
            f"shutdown took {elapsed:.1f} s against a bound of {drain_s} + 2 s\n{output}"
        )
    finally:
        if process.returncode is None:
            process.kill()
        await primary.cleanup()
        await candidate_runner.cleanup()

    engine = make_engine(db)
    pairs = read_pairs(engine)
    engine.dispose()
    assert sorted(p.prompt for p in pairs) == sorted(completed), "every completed exchange is stored, once"
    assert all(p.candidate is not None and p.candidate.error for p in pairs)
    assert all("shut" in (p.candidate.error or "") for p in pairs), [p.candidate.error for p in pairs]
