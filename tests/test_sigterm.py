"""Acceptance 6: SIGTERM under load loses no completed pair. A real `shadow serve` process is stopped
while requests are in flight; every request the user saw answered must be in the store, exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import aiohttp

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
