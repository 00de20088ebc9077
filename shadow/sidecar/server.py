"""`shadow serve`: the process that serves users, and the capture worker it starts beside it.

This process runs the user listener and nothing else: it forwards bytes (`shadow.sidecar.proxy`) and copies a
bounded share into the capture channel (`shadow.sidecar.capture_link`). The worker (`shadow.worker`) runs the
mirror, capture, store, admin listener and gate API. So no parse, database call or gate run of ours can
hold the event loop — or the GIL — that the user's bytes pass through, and the user port opens before
the database is even tried.

On SIGTERM everything ends within `drain_timeout_s`: the listener closes and requests in flight get until
`shutdown_reserve_s` before the deadline; the worker then finishes or cuts off its mirrors and stores
every completed exchange (database, or the fsynced spool) by the deadline.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from shadow.core.logs import safe_url
from shadow.core.settings import Settings, split_host_port
from shadow.sidecar.capture_link import CaptureLink
from shadow.sidecar.http_headers import AUTO_HEADERS_TO_SKIP
from shadow.sidecar.proxy import Proxy

log = logging.getLogger(__name__)

WORKER_START_TIMEOUT_S = 120.0
"""How long `start_sidecar(wait_for_worker=True)` waits for the worker's admin listener (tests, demo)."""


@dataclass
class Sidecar:
    """The running parts, for tests and for the shutdown sequence."""

    settings: Settings
    link: CaptureLink
    proxy: Proxy
    primary_session: aiohttp.ClientSession
    user_runner: web.AppRunner

    @property
    def user_url(self) -> str:
        host, port = self.user_runner.addresses[0][:2]
        return f"http://{host}:{port}/v1"

    @property
    def admin_url(self) -> str:
        if self.link.admin_url is None:
            raise RuntimeError("the capture worker has not reported its admin listener yet")
        return self.link.admin_url

    async def stop(self) -> None:
        deadline = time.time() + self.settings.drain_timeout_s
        # No new connections; requests in flight finish, or are cut off when only the reserve is left. The
        # worker gets the frames of every one that finished.
        for site in list(self.user_runner.sites):
            await site.stop()
        if self.user_runner.server is not None:
            await asyncio.sleep(0)  # requests already read start being handled first
            self.user_runner.server.pre_shutdown()  # idle keep-alive connections close; busy ones after
        self.link.shutdown(deadline)
        await self.proxy.drain(deadline - self.settings.shutdown_reserve_s - time.time())
        await self.user_runner.cleanup()
        await self.primary_session.close()
        await self.link.close(deadline + 1.0)
        log.info("sidecar stopped")


def primary_session(settings: Settings) -> aiohttp.ClientSession:
    """The client towards the primary: bytes as they are, no header of aiohttp's own, generous limits."""
    return aiohttp.ClientSession(
        # auto_decompress=False: the user gets the primary's bytes as sent.
        auto_decompress=False,
        skip_auto_headers=AUTO_HEADERS_TO_SKIP,
        # No connection cap: the number of streams in flight is the chat service's to decide, not ours.
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
        trust_env=False,
        max_line_size=settings.max_header_bytes,
        max_field_size=settings.max_header_bytes,
        max_headers=settings.max_headers,
    )


async def start_sidecar(settings: Settings, *, wait_for_worker: bool = True) -> Sidecar:
    """Open the user listener, then start the worker. `wait_for_worker`: return once the worker's admin
    listener is up (tests and the demo want its URL); users are served either way."""
    link = CaptureLink(settings)
    session = primary_session(settings)
    proxy = Proxy(settings, session, link)
    user_runner = web.AppRunner(
        proxy.create_app(),
        access_log=None,
        # Only idle keep-alive connections are left when the runner shuts down (`Sidecar.stop`).
        shutdown_timeout=0.5,
        # The primary's limits are the ones that count: ours are generous, and bodies pass undecoded.
        auto_decompress=False,
        max_line_size=settings.max_header_bytes,
        max_field_size=settings.max_header_bytes,
        max_headers=settings.max_headers,
    )
    await user_runner.setup()
    host, port = split_host_port(settings.listen, "listen")
    await web.TCPSite(user_runner, host, port).start()
    await link.start()
    sidecar = Sidecar(settings, link, proxy, session, user_runner)
    log.info("serving %s; primary %s", sidecar.user_url, safe_url(settings.primary))
    if wait_for_worker:
        try:
            await link.wait_ready(WORKER_START_TIMEOUT_S)
        except BaseException:
            await sidecar.stop()
            raise
    return sidecar


async def serve_forever(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sidecar = await start_sidecar(settings, wait_for_worker=False)
    print(f"shadow: serving {sidecar.user_url}", flush=True)
    await stop.wait()
    log.info("signal received: draining (at most %.1f s)", settings.drain_timeout_s)
    await sidecar.stop()
