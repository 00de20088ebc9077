"""A capture worker that dies (a bug, the OOM killer) costs mirrors, never users: the serving process keeps
answering, restarts the worker with a back-off, and mirroring resumes."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import aiohttp

from tests.harness import capture_stack, wait_until_stored_schema


async def test_killed_worker_is_restarted_and_users_never_notice(tmp_path):
    async with capture_stack(tmp_path) as stack, aiohttp.ClientSession() as http:
        body = {"model": "m", "messages": [{"role": "user", "content": "before 灰度"}]}
        async with http.post(f"{stack.url}/chat/completions", json=body) as resp:
            assert resp.status == 200
        await stack.wait_for_pairs(1)
        link = stack.sidecar.link
        first_pid = link.worker_pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        # While it is down and restarting, every user request is still answered, and fast.
        for i in range(10):
            started = time.monotonic()
            body = {"model": "m", "messages": [{"role": "user", "content": f"during {i}"}]}
            async with http.post(f"{stack.url}/chat/completions", json=body) as resp:
                assert resp.status == 200
                assert (await resp.json())["choices"][0]["message"]["content"]
            assert time.monotonic() - started < 1.0
            await asyncio.sleep(0.05)
        deadline = time.monotonic() + 30
        while link.worker_pid in (None, first_pid):  # the death is noticed, then the back-off, then a start
            assert time.monotonic() < deadline, "the worker was not restarted within 30 s"
            await asyncio.sleep(0.1)
        await link.wait_ready(60)
        await wait_until_stored_schema(stack.sidecar.admin_url)
        body = {"model": "m", "messages": [{"role": "user", "content": "after 灰度"}]}
        async with http.post(f"{stack.url}/chat/completions", json=body) as resp:
            assert resp.status == 200
        pairs = await stack.wait_for_pairs(2)
        assert sorted(p.prompt.split()[0] for p in pairs if not p.prompt.startswith("during")) == [
            "after",
            "before",
        ]
