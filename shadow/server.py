"""`shadow serve`: start the store, the mirror and both listeners; on SIGTERM shut down in the order that
loses nothing: stop taking requests and finish the ones in flight, let mirrors finish within a bound,
then flush the store (to the database, or to the spool when it is away)."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from sqlalchemy import Engine

from shadow.admin import admin_token_required, create_admin_app
from shadow.metrics import SidecarMetrics
from shadow.mirror import Mirror
from shadow.proxy import Proxy
from shadow.settings import Settings, split_host_port
from shadow.store.database import make_engine, redact_url, upgrade
from shadow.store.writer import PairWriter

log = logging.getLogger(__name__)


@dataclass
class Sidecar:
    """The running parts, for tests and for the shutdown sequence."""

    settings: Settings
    metrics: SidecarMetrics
    writer: PairWriter
    mirror: Mirror
    primary_session: aiohttp.ClientSession
    mirror_session: aiohttp.ClientSession
    user_runner: web.AppRunner
    admin_runner: web.AppRunner
    store_engine: Engine

    @property
    def user_url(self) -> str:
        host, port = self.user_runner.addresses[0][:2]
        return f"http://{host}:{port}/v1"

    @property
    def admin_url(self) -> str:
        host, port = self.admin_runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def stop(self) -> None:
        s = self.settings
        # 1. No new connections; requests in flight finish (their primary answers reach the mirror).
        await self.user_runner.cleanup()
        # 2. Mirrors finish within the bound; those cut off never completed, so no pair is lost.
        await self.mirror.drain(s.drain_timeout_s)
        # 3. Every completed pair goes to the database, or to the fsynced spool.
        await self.writer.close(s.drain_timeout_s)
        await self.primary_session.close()
        await self.mirror_session.close()
        await self.admin_runner.cleanup()
        self.store_engine.dispose()
        log.info("sidecar stopped")


def _client_session() -> aiohttp.ClientSession:
    # auto_decompress=False: the user gets the primary's bytes as sent; we decode our copy ourselves.
    # No connection cap: the number of streams in flight is the chat service's to decide, not ours.
    return aiohttp.ClientSession(
        auto_decompress=False, connector=aiohttp.TCPConnector(limit=0, limit_per_host=0), trust_env=False
    )


def _mount_gate(app: web.Application, settings: Settings, metrics: SidecarMetrics) -> Engine:
    """The gate API reads scored pairs from the same store the sidecar writes to (`shadow score --db`)."""
    from evaluators.store_mode import load_scored_pairs
    from shadow.gate import load_policy
    from shadow.gate.http import add_gate_routes

    engine = make_engine(settings.db)
    add_gate_routes(
        app,
        load_records=lambda experiment: list(load_scored_pairs(engine, experiment or settings.experiment)),
        policy=load_policy(settings.gate_policy or None),
        registry=metrics.registry,
        admin_token=settings.admin_token or None,
        require_token=admin_token_required(settings),
    )
    return engine


async def start_sidecar(settings: Settings, *, migrate: bool = True) -> Sidecar:
    if migrate:
        await asyncio.to_thread(upgrade, settings.db)
    metrics = SidecarMetrics.create()
    writer = PairWriter(settings)
    await writer.start()
    # Two sessions: a hanging candidate must never hold connections the user's traffic needs.
    primary_session = _client_session()
    mirror_session = _client_session()
    mirror = Mirror(settings, mirror_session, writer, metrics)
    await mirror.start()
    proxy = Proxy(settings, primary_session, mirror, metrics)

    def health() -> dict[str, object]:
        return {
            "experiment": settings.experiment,
            "db_available": writer.db_available,
            "breaker": mirror.breaker.state.name.lower(),
            "mirror_queue_depth": mirror.queue_depth,
        }

    def before_scrape() -> None:
        metrics.store_pending.set(writer.pending)
        metrics.pairs_spooled.set(writer.spooled_total)
        metrics.queue_depth.set(mirror.queue_depth)

    admin_app = create_admin_app(settings, metrics, health=health, before_scrape=before_scrape)
    store_engine = _mount_gate(admin_app, settings, metrics)
    user_runner = web.AppRunner(
        proxy.create_app(), access_log=None, shutdown_timeout=settings.drain_timeout_s
    )
    admin_runner = web.AppRunner(admin_app, access_log=None)
    await user_runner.setup()
    await admin_runner.setup()
    host, port = split_host_port(settings.listen, "listen")
    await web.TCPSite(user_runner, host, port).start()
    admin_host, admin_port = split_host_port(settings.admin_listen, "admin_listen")
    await web.TCPSite(admin_runner, admin_host, admin_port).start()
    sidecar = Sidecar(
        settings,
        metrics,
        writer,
        mirror,
        primary_session,
        mirror_session,
        user_runner,
        admin_runner,
        store_engine,
    )
    log.info(
        "sidecar listening on %s (admin %s); primary %s, candidate %s, sample rate %.3f, store %s",
        sidecar.user_url,
        sidecar.admin_url,
        settings.primary,
        settings.candidate or "(none)",
        settings.sample_rate,
        redact_url(settings.db),
    )
    return sidecar


async def serve_forever(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sidecar = await start_sidecar(settings)
    print(f"shadow: serving {sidecar.user_url} (admin {sidecar.admin_url})", flush=True)
    await stop.wait()
    log.info("signal received: draining")
    await sidecar.stop()
