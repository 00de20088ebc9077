"""The serving process's end of the capture channel: it starts the capture worker, keeps it running, and
turns what the proxy forwards into frames — without ever waiting for the worker.

Every call the proxy makes here is O(1) or one copy of a chunk into a socket buffer. When the worker is
down, still starting, or behind by more than `capture_channel_bytes`, the exchange is not mirrored and the
reason is counted (`shadow_mirror_dropped{reason=...}` once the worker is back to report it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import sys
import time
from collections import Counter, deque
from dataclasses import asdict
from typing import Any

import aiohttp
from aiohttp import web

from shadow.core.settings import Settings
from shadow.sidecar.channel import FrameProtocol, Kind, json_payload, request_payload

log = logging.getLogger(__name__)

STATS_INTERVAL_S = 0.5
MAX_PENDING_REQUEST_STATS = 20_000
"""Request timings waiting to be sent with the next STATS frame; past it they are not kept (the counters
of dropped stats say so)."""
RESTART_DELAYS_S = (0.5, 1, 2, 5, 10, 30)


class RequestTiming:
    """Latency and time to first byte of one user request, measured where the user is served."""

    __slots__ = ("t0", "ttfb_s", "latency_s", "status")

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.ttfb_s: float | None = None
        self.latency_s: float | None = None
        self.status: int | None = None

    def first_byte(self) -> None:
        if self.ttfb_s is None:
            self.ttfb_s = time.perf_counter() - self.t0

    def finish(self) -> None:
        if self.latency_s is None:
            self.latency_s = time.perf_counter() - self.t0


class Exchange:
    """One request that may be mirrored: its frames, and the bound on how much of it is copied."""

    __slots__ = (
        "id",
        "_meta",
        "_raw_headers",
        "_link",
        "_timing",
        "active",
        "_limit",
        "_kept",
        "_seen",
        "_started",
        "_done",
    )

    def __init__(
        self,
        exchange_id: int,
        meta: dict[str, Any],
        raw_headers: tuple[tuple[bytes, bytes], ...],
        link: CaptureLink,
        timing: RequestTiming,
        limit: int,
    ) -> None:
        self.id = exchange_id
        self._meta = meta
        self._raw_headers = raw_headers
        self._link = link
        self._timing = timing
        self.active = True
        self._limit = limit
        self._kept = 0
        self._seen = 0
        self._started = False
        self._done = False

    def send_request(self, body: bytes) -> None:
        if not self.active:
            return
        if self._link.send(Kind.REQUEST, self.id, request_payload(self._meta, self._raw_headers, body)):
            self._started = True
        else:
            self.drop("channel_full")

    def response_start(self, upstream: aiohttp.ClientResponse) -> None:
        if not (self.active and self._started):
            return
        meta = {
            "status": upstream.status,
            "content_type": upstream.headers.get("Content-Type"),
            "content_encoding": upstream.headers.get("Content-Encoding"),
        }
        if not self._link.send(Kind.RESPONSE_START, self.id, json_payload(meta), control=True):
            self.drop("channel_full")

    def body(self, chunk: bytes) -> None:
        self._seen += len(chunk)
        if not self.active or self._kept >= self._limit:
            return
        piece = chunk if self._kept + len(chunk) <= self._limit else chunk[: self._limit - self._kept]
        if self._link.send(Kind.BODY, self.id, piece):
            self._kept += len(piece)
        else:
            self.drop("channel_full")

    def finish(
        self, *, user_cancelled: bool = False, transport_error: str | None = None, ended: bool = True
    ) -> None:
        if self._done:
            return
        self._done = True
        if not (self.active and self._started):
            self._link.forget(self.id)
            return
        timing = self._timing
        meta = {
            "ended": ended,
            "user_cancelled": user_cancelled,
            "transport_error": transport_error,
            "latency_ms": None if timing.latency_s is None else timing.latency_s * 1000,
            "ttfb_ms": None if timing.ttfb_s is None else timing.ttfb_s * 1000,
            "kept_bytes": self._kept,
            "seen_bytes": self._seen,
        }
        self._link.send_end(self.id, meta)
        self._link.forget(self.id)

    def close(self) -> None:
        """The handler is leaving; an exchange never finished (an exception on its way out) ends as such."""
        if not self._done:
            self.finish(ended=False)

    def drop(self, reason: str) -> None:
        if self.active:
            self.active = False
            self._link.count_drop(reason)
            if self._started:  # the worker holds a half exchange: tell it to let go
                self._link.send_end(self.id, {"ended": False, "dropped": reason})
            self._done = True
            self._link.forget(self.id)


class CaptureLink:
    """Starts `python -m shadow.worker`, restarts it if it dies, and carries frames to it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.admin_url: str | None = None
        self.ready = asyncio.Event()
        self._failed_starts = 0
        self._protocol: FrameProtocol | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stats_task: asyncio.Task[None] | None = None
        self._exchanges: dict[int, Exchange] = {}
        self._next_id = 1
        self._stopping = False
        self._drops: Counter[str] = Counter()
        self._request_stats: list[tuple[str, int | None, float | None, float | None]] = []
        self._stats_dropped = 0
        self._unsent_ends: deque[tuple[int, bytes]] = deque()

    # --- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name="shadow-capture-supervisor")
        self._stats_task = asyncio.create_task(self._send_stats_forever(), name="shadow-capture-stats")

    async def wait_ready(self, timeout_s: float) -> None:
        """Until a worker's admin listener is up; raises if a worker dies during its start-up meanwhile
        (a bad setting, say: restarting it would fail the same way)."""
        failed_before = self._failed_starts
        deadline = time.monotonic() + timeout_s
        while not self.ready.is_set():
            if self._failed_starts > failed_before:
                raise RuntimeError("the capture worker exited during start-up (its log is above)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the capture worker was not ready within {timeout_s} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ready.wait(), 0.05)

    def shutdown(self, deadline: float) -> None:
        """Tell the worker the wall-clock time by which everything must be stored. Requests still being
        handled keep their exchanges: the listener is closed already, so no new ones come."""
        self._stopping = True
        self.send(Kind.SHUTDOWN, 0, json_payload({"deadline": deadline}), control=True)

    async def close(self, deadline: float) -> None:
        """End the channel (the worker stores what it has and exits); past the deadline, kill it."""
        self._stopping = True
        if self._stats_task is not None:
            self._stats_task.cancel()
            await asyncio.gather(self._stats_task, return_exceptions=True)
        self._flush_stats()
        if self._protocol is not None:
            self._protocol.close()
        process = self._process
        if process is not None and process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), max(deadline - time.time(), 0.1))
            except TimeoutError:
                log.error("capture worker did not finish by the shutdown deadline; killing it")
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)

    async def _supervise(self) -> None:
        failures = 0
        while not self._stopping:
            started = time.monotonic()
            try:
                await self._run_worker_once()
            except Exception:
                log.exception("capture worker could not be started")
            if self._stopping:
                return
            failures = 0 if time.monotonic() - started > 60 else failures + 1
            delay = RESTART_DELAYS_S[min(failures, len(RESTART_DELAYS_S) - 1)]
            log.error("capture worker stopped; mirroring is off until it restarts in %.1f s", delay)
            await asyncio.sleep(delay)

    async def _run_worker_once(self) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "shadow.worker", "--fd", str(theirs.fileno()),
                pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        finally:
            theirs.close()
        self._process = process
        _transport, protocol = await loop.create_unix_connection(
            lambda: FrameProtocol(
                self._on_frame, self._on_lost, limit_bytes=self.settings.capture_channel_bytes
            ),
            sock=ours,
        )
        self._protocol = protocol
        config = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.settings).items()}
        protocol.send(Kind.CONFIG, 0, json_payload(config), control=True)
        try:
            await process.wait()
        finally:
            if not self.ready.is_set():
                self._failed_starts += 1
            self._protocol = None
            self.ready.clear()
            protocol.close()
            for exchange in list(self._exchanges.values()):
                exchange.active = False
            self._exchanges.clear()
            self._unsent_ends.clear()  # the next worker never heard of those exchanges
        if process.returncode not in (0, None) and not self._stopping:
            log.error("capture worker exited with status %s", process.returncode)

    def _on_frame(self, kind: Kind, exchange_id: int, payload: bytes) -> None:
        if kind is Kind.SKIP:
            exchange = self._exchanges.pop(exchange_id, None)
            if exchange is not None:
                exchange.active = False
        elif kind is Kind.READY:
            self.admin_url = json.loads(payload)["admin_url"]
            self.ready.set()

    def _on_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self._stopping:
            log.error("capture channel lost: %s", exc)

    # --- the request path ------------------------------------------------------------------------------

    def open(self, request: web.Request, path_after_v1: str, timing: RequestTiming) -> Exchange | None:
        """A new exchange if the worker can take it now; else None (counted)."""
        if not self.settings.candidate:
            return None
        if self._protocol is None or not self._protocol.connected or not self.ready.is_set():
            self.count_drop("capture_worker_down")
            return None
        exchange_id = self._next_id
        self._next_id += 1
        meta = {
            "method": request.method,
            "path": path_after_v1,
            "client": request.remote,
            "received_at": time.time(),
        }
        exchange = Exchange(
            exchange_id, meta, request.raw_headers, self, timing, self.settings.capture_max_bytes
        )
        self._exchanges[exchange_id] = exchange
        return exchange

    def send(self, kind: Kind, exchange_id: int, payload: bytes = b"", *, control: bool = False) -> bool:
        protocol = self._protocol
        return protocol is not None and protocol.send(kind, exchange_id, payload, control=control)

    def send_end(self, exchange_id: int, meta: dict[str, Any]) -> None:
        """The END of an exchange must reach the worker, or a mirror there waits for it forever: one that
        does not fit now is kept (a few dozen bytes each) and sent before the next batch of stats."""
        payload = json_payload(meta)
        if self._unsent_ends or not self.send(Kind.END, exchange_id, payload, control=True):
            self._unsent_ends.append((exchange_id, payload))

    def _send_unsent_ends(self) -> None:
        while self._unsent_ends:
            exchange_id, payload = self._unsent_ends[0]
            if not self.send(Kind.END, exchange_id, payload, control=True):
                return
            self._unsent_ends.popleft()

    def forget(self, exchange_id: int) -> None:
        self._exchanges.pop(exchange_id, None)

    def count_drop(self, reason: str) -> None:
        self._drops[reason] += 1

    def record_request(self, route: str, timing: RequestTiming) -> None:
        if len(self._request_stats) < MAX_PENDING_REQUEST_STATS:
            self._request_stats.append((route, timing.status, timing.latency_s, timing.ttfb_s))
        else:
            self._stats_dropped += 1

    @property
    def in_flight(self) -> int:
        return len(self._exchanges)

    @property
    def worker_pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    # --- metrics for the worker's /metrics -------------------------------------------------------------

    async def _send_stats_forever(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL_S)
            self._flush_stats()

    def _flush_stats(self) -> None:
        self._send_unsent_ends()
        if not (self._request_stats or self._drops or self._stats_dropped) or not self.ready.is_set():
            return
        payload = json_payload(
            {
                "requests": self._request_stats,
                "dropped": dict(self._drops),
                "stats_dropped": self._stats_dropped,
            }
        )
        if self.send(Kind.STATS, 0, payload, control=True):
            self._request_stats = []
            self._drops.clear()
            self._stats_dropped = 0
