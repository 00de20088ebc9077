"""The user path does not depend on the store (issue 11, acceptance 5): a database that is down when the
sidecar starts, and an SQLite file deleted while it serves."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiohttp
import pytest

from shadow.core.settings import Settings
from shadow.sidecar.server import start_sidecar
from shadow.simulator import SimulatedModel, start_simulator
from shadow.store.database import make_engine
from tests.harness import capture_stack, read_pairs


async def _ask(http: aiohttp.ClientSession, url: str, marker: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": f"{marker} 请解释灰度发布"}]}
    async with http.post(f"{url}/chat/completions", json=body) as resp:
        assert resp.status == 200
        await resp.read()


async def _health(admin_url: str) -> dict:
    async with aiohttp.ClientSession() as http, http.get(f"{admin_url}/healthz") as resp:
        assert resp.status == 200
        return await resp.json()


async def _until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout_s} s")
        await asyncio.sleep(0.1)


def _markers(url: str) -> list[str]:
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return []  # connecting would create the file, and race the writer to it
    engine = make_engine(url)
    try:
        return sorted(pair.prompt.split()[0] for pair in read_pairs(engine))
    except Exception:
        return []
    finally:
        engine.dispose()


@pytest.mark.timeout(180)
async def test_database_down_at_start_users_served_at_once_pairs_land_later(
    postgres_server, postgres_url, tmp_path
):
    primary_runner, primary_url = await start_simulator(SimulatedModel(name="p"))
    candidate_runner, candidate_url = await start_simulator(SimulatedModel(name="c"))
    await asyncio.to_thread(postgres_server.stop)
    settings = Settings(
        primary=primary_url, candidate=candidate_url, db=postgres_url, spool_path=str(tmp_path / "pairs.spool"),
        listen="127.0.0.1:0", admin_listen="127.0.0.1:0", sample_rate=1.0, secondary_rate=0.0,
        store_flush_interval_s=0.05, drain_timeout_s=5.0,
    )  # fmt: skip
    sidecar = None
    try:
        started = time.monotonic()
        sidecar = await start_sidecar(settings, wait_for_worker=False)
        async with aiohttp.ClientSession() as http:
            await _ask(http, sidecar.user_url, "early")
            assert time.monotonic() - started < 1.0, "the user port is open and serving within a second"
            await sidecar.link.wait_ready(60)
            assert (await _health(sidecar.admin_url))["db_available"] is False
            sent = [f"m{i:02d}" for i in range(12)]
            for marker in sent:
                await _ask(http, sidecar.user_url, marker)
        await asyncio.sleep(1.0)  # flushes to the spool while the database is away
        assert _markers(postgres_url) == []
        await asyncio.to_thread(postgres_server.start)

        async def landed() -> bool:
            return set(sent) <= set(await asyncio.to_thread(_markers, postgres_url))

        await _until(landed, 60, "every pair spooled during the outage lands once the database is back")
        markers = await asyncio.to_thread(_markers, postgres_url)
        assert len(markers) == len(set(markers)), "no pair stored twice"
        assert (await _health(sidecar.admin_url))["db_available"] is True
    finally:
        if not postgres_server.running:  # the server is the session's: leave it as we found it
            await asyncio.to_thread(postgres_server.start)
        if sidecar is not None:
            await sidecar.stop()
        await primary_runner.cleanup()
        await candidate_runner.cleanup()


async def test_sqlite_file_deleted_while_serving_is_noticed_and_no_later_pair_lost(tmp_path: Path):
    async with capture_stack(tmp_path) as stack, aiohttp.ClientSession() as http:
        for i in range(5):
            await _ask(http, stack.url, f"before{i}")
        await stack.wait_for_pairs(5)
        db_path = tmp_path / "pairs.db"
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{db_path}{suffix}").exists():
                os.unlink(f"{db_path}{suffix}")
        after = [f"after{i:02d}" for i in range(10)]
        for marker in after:
            await _ask(http, stack.url, marker)

        async def all_after_stored() -> bool:
            return set(after) <= set(await asyncio.to_thread(_markers, stack.settings.db))

        await _until(all_after_stored, 20, "every pair after the deletion is in the new file")
        health = await _health(stack.sidecar.admin_url)
        assert any(f"{db_path} was deleted" in warning for warning in health["warnings"]), health
