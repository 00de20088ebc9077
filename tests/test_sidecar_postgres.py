"""Acceptance 5, end to end: a real PostgreSQL server, started by the suite on loopback, is stopped during
a stream of user requests through the sidecar and started again; every completed pair ends up in the
database exactly once."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from shadow.store.database import make_engine
from tests.harness import capture_stack, read_pairs


@pytest.mark.timeout(180)
async def test_postgres_outage_during_traffic_loses_and_duplicates_nothing(
    postgres_server, postgres_url, tmp_path
):
    completed: list[str] = []
    async with capture_stack(
        tmp_path, db=postgres_url, store_batch_size=8, store_flush_interval_s=0.1
    ) as stack:

        async def outage() -> None:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(postgres_server.stop)
            await asyncio.sleep(1.5)
            await asyncio.to_thread(postgres_server.start)

        restart = asyncio.create_task(outage())
        async with aiohttp.ClientSession() as http:
            for i in range(80):  # about 4 s of steady traffic, half of it streamed
                marker = f"request-{i:03d}"
                body = {"model": "m", "messages": [{"role": "user", "content": f"{marker} 请解释灰度发布"}]}
                body["stream"] = i % 2 == 1
                async with http.post(f"{stack.url}/chat/completions", json=body) as resp:
                    assert resp.status == 200  # the outage never reaches the user
                    await resp.read()
                completed.append(marker)
                await asyncio.sleep(0.05)
        await restart
        metrics = await stack.metrics_text()
        spooled = re.search(r"^shadow_pairs_spooled (\S+)$", metrics, re.M)
        assert spooled and float(spooled.group(1)) > 0, "the outage must have sent pairs to the spool"
        await stack.stop()

    engine = make_engine(postgres_url)
    pairs = read_pairs(engine)
    engine.dispose()
    markers = [pair.prompt.split()[0] for pair in pairs]
    assert len(markers) == len(set(markers)), "a pair was stored twice"
    assert sorted(markers) == completed
