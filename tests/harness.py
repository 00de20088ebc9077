"""A whole capture stack on loopback for tests: simulated primary and candidate, and a real sidecar."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import Engine, select

from shadow.core.pairs import Pair
from shadow.core.settings import Settings
from shadow.sidecar.server import Sidecar, start_sidecar
from shadow.simulator import STATE, SimulatedModel, SimulatorState, start_simulator
from shadow.store.database import count_pairs, make_engine
from shadow.store.models import pairs_table, row_to_pair


def read_pairs(engine: Engine) -> list[Pair]:
    with engine.connect() as connection:
        rows = connection.execute(select(pairs_table).order_by(pairs_table.c.id)).mappings().all()
    return [row_to_pair(row) for row in rows]


@dataclass
class Stack:
    sidecar: Sidecar
    primary_url: str
    candidate_url: str
    primary_state: SimulatorState
    candidate_state: SimulatorState | None
    settings: Settings
    stopped: bool = False

    @property
    def url(self) -> str:
        return self.sidecar.user_url

    async def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            await self.sidecar.stop()

    async def metrics_text(self) -> str:
        async with aiohttp.ClientSession() as http, http.get(f"{self.sidecar.admin_url}/metrics") as resp:
            return await resp.text()

    async def wait_for_metric(self, line: str, timeout_s: float = 5.0) -> str:
        return await wait_for_metric(self.sidecar.admin_url, line, timeout_s)

    def pairs(self) -> list[Pair]:
        engine = make_engine(self.settings.db)
        try:
            return read_pairs(engine)
        finally:
            engine.dispose()

    async def wait_for_pairs(self, count: int, timeout_s: float = 10.0) -> list[Pair]:
        engine = make_engine(self.settings.db)
        deadline = time.monotonic() + timeout_s
        try:
            while await asyncio.to_thread(count_pairs, engine) < count:
                if time.monotonic() > deadline:
                    raise AssertionError(f"expected {count} pairs within {timeout_s} s")
                await asyncio.sleep(0.05)
        finally:
            engine.dispose()
        return self.pairs()


async def wait_for_metric(admin_url: str, line: str, timeout_s: float = 5.0) -> str:
    """Request metrics reach the worker's /metrics in batches (every half second): wait for a line."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"{admin_url}/metrics") as resp:
                text = await resp.text()
            if line in text:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{line!r} not in /metrics within {timeout_s} s")
            await asyncio.sleep(0.1)


async def wait_until_stored_schema(admin_url: str, timeout_s: float = 30.0) -> None:
    """The worker migrates the store in the background; tests that count rows wait for it first."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"{admin_url}/healthz") as resp:
                if (await resp.json()).get("db_available"):
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"the store did not become available within {timeout_s} s")
            await asyncio.sleep(0.05)


@asynccontextmanager
async def capture_stack(
    tmp_path: Path,
    *,
    primary_sim: SimulatedModel | None = None,
    candidate_sim: SimulatedModel | None = None,
    candidate_url: str | None = None,
    wait_for_store: bool = True,
    **overrides: Any,
) -> AsyncIterator[Stack]:
    runners: list[web.AppRunner] = []
    primary_runner, primary_url = await start_simulator(primary_sim or SimulatedModel(name="primary"))
    runners.append(primary_runner)
    candidate_state = None
    if candidate_url is None:
        candidate_runner, candidate_url = await start_simulator(
            candidate_sim or SimulatedModel(name="candidate")
        )
        runners.append(candidate_runner)
        candidate_state = candidate_runner.app[STATE]
    tmp_path.mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = {
        "primary": primary_url,
        "candidate": candidate_url,
        "candidate_model": "candidate-model",
        "candidate_api_key": "sk-candidate-secret-0000",
        "db": f"sqlite:///{tmp_path / 'pairs.db'}",
        "spool_path": str(tmp_path / "pairs.spool"),
        "listen": "127.0.0.1:0",
        "admin_listen": "127.0.0.1:0",
        "sample_rate": 1.0,
        "secondary_rate": 0.0,
        "store_flush_interval_s": 0.05,
        "candidate_timeout_s": 5.0,
        "drain_timeout_s": 5.0,
    }
    values.update(overrides)
    settings = Settings(**values)
    sidecar = await start_sidecar(settings)
    if wait_for_store:
        await wait_until_stored_schema(sidecar.admin_url)
    stack = Stack(sidecar, primary_url, candidate_url, primary_runner.app[STATE], candidate_state, settings)
    try:
        yield stack
    finally:
        await stack.stop()
        for runner in runners:
            await runner.cleanup()
