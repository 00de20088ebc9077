"""The capture worker: a process of its own, started by `shadow serve`, that does all the work the user
must never wait for — the mirror decision, candidate and secondary calls, decoding, redaction, storage, the
admin listener (health, metrics) and the gate API.

It reads frames from the serving process (`shadow.sidecar.channel`), rebuilds each exchange, and hands finished
ones to the mirror. It ignores SIGINT and SIGTERM: the serving process says when to stop (a SHUTDOWN
frame with a deadline, then the end of the channel), so the order "users first, then mirrors, then the
store" holds whoever got the signal.

    python -m shadow.worker --fd N     (N: the worker's end of a Unix socket pair)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from shadow.core.logs import configure_logging, safe_url
from shadow.core.pairs import SideOutput
from shadow.core.settings import Settings, admin_token_required, coerce_values, split_host_port
from shadow.sidecar.admin import create_admin_app
from shadow.sidecar.capture import decode_body
from shadow.sidecar.channel import FrameProtocol, Kind, json_payload, split_request_payload
from shadow.sidecar.metrics import SidecarMetrics
from shadow.sidecar.mirror import Mirror, MirrorJob, PrimaryOutcome
from shadow.sidecar.upstream import ResponseRecorder
from shadow.store.database import make_engine, redact_url
from shadow.store.writer import PairWriter

log = logging.getLogger("shadow.worker")

STORE_RESERVE_S = 0.5
"""Of the shutdown deadline, the last part kept for the final store flush (the spool is a local fsync)."""


@dataclass(slots=True)
class _Exchange:
    job: MirrorJob
    route: str
    received_at: float
    record: ResponseRecorder | None = None
    notes: list[str] = field(default_factory=list)


class CaptureWorker:
    def __init__(self, settings: Settings, protocol: FrameProtocol) -> None:
        self.settings = settings
        self.protocol = protocol
        self.metrics = SidecarMetrics.create()
        self.writer = PairWriter(settings, migrate=True)
        self.session = aiohttp.ClientSession(
            auto_decompress=False, connector=aiohttp.TCPConnector(limit=0, limit_per_host=0), trust_env=False
        )
        self.mirror = Mirror(settings, self.session, self.writer, self.metrics)
        self.exchanges: dict[int, _Exchange] = {}
        self.deadline: float | None = None
        self.channel_closed = asyncio.Event()
        self._wake = asyncio.Event()
        self._admin_runner: web.AppRunner | None = None
        self._gate_engine: Any = None

    # --- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> str:
        """Admin listener first (health answers while the database is still away), then store and mirror."""
        admin_app = create_admin_app(
            self.settings, self.metrics, health=self.health, before_scrape=self._before_scrape
        )
        self._gate_engine = _mount_gate(admin_app, self.settings, self.metrics)
        self._admin_runner = web.AppRunner(admin_app, access_log=None)
        await self._admin_runner.setup()
        host, port = split_host_port(self.settings.admin_listen, "admin_listen")
        await web.TCPSite(self._admin_runner, host, port).start()
        await self.writer.start()
        await self.mirror.start()
        admin_host, admin_port = self._admin_runner.addresses[0][:2]
        return f"http://{admin_host}:{admin_port}"

    async def stop(self) -> None:
        """Within the deadline: mirrors finish or are cut off, then everything is stored or spooled."""
        deadline = self.deadline or time.time() + self.settings.drain_timeout_s
        # Exchanges the serving process never finished (the channel ended under them) did not complete.
        for exchange_id in list(self.exchanges):
            self._finish(exchange_id, PrimaryOutcome(side=None, dropped="shutdown"))
        await self.mirror.drain(max(deadline - time.time() - STORE_RESERVE_S, 0.0))
        await self.writer.close(max(deadline - time.time() - 0.1, 0.1))
        await self.session.close()
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()
        if self._gate_engine is not None:
            self._gate_engine.dispose()
        log.info("capture worker stopped")

    async def run(self) -> None:
        """Until the channel ends, or the shutdown deadline leaves only the time to drain and store."""
        while not self.channel_closed.is_set():
            timeout = None
            if self.deadline is not None:
                # The serving process ends its own requests `shutdown_reserve_s` before the deadline and
                # then closes the channel; this is the backstop should that close never arrive.
                timeout = self.deadline - time.time() - self.settings.shutdown_reserve_s * 0.8
                if timeout <= 0:
                    return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def health(self) -> dict[str, Any]:
        store = self.writer.health()
        return {
            "experiment": self.settings.experiment,
            "db_available": store["db_available"],
            "store": store,
            "breaker": self.mirror.breaker.state.name.lower(),
            "mirror_queue_depth": self.mirror.queue_depth,
            "exchanges_in_flight": len(self.exchanges),
            "warnings": list(store.get("warnings", [])),
        }

    def _before_scrape(self) -> None:
        self.metrics.store_pending.set(self.writer.pending)
        self.metrics.pairs_spooled.set(self.writer.spooled_total)
        self.metrics.queue_depth.set(self.mirror.queue_depth)

    # --- frames from the serving process ---------------------------------------------------------------

    def on_frame(self, kind: Kind, exchange_id: int, payload: bytes) -> None:
        try:
            if kind is Kind.REQUEST:
                self._on_request(exchange_id, payload)
            elif kind is Kind.RESPONSE_START:
                self._on_response_start(exchange_id, payload)
            elif kind is Kind.BODY:
                exchange = self.exchanges.get(exchange_id)
                if exchange is not None and exchange.record is not None:
                    exchange.record.body += payload
            elif kind is Kind.END:
                self._on_end(exchange_id, payload)
            elif kind is Kind.STATS:
                self._on_stats(payload)
            elif kind is Kind.SHUTDOWN:
                self.deadline = float(json.loads(payload)["deadline"])
                self._wake.set()
        except Exception:  # one odd frame must not stop the ones behind it
            log.exception("capture worker: could not handle a %s frame", kind.name)
            if exchange_id in self.exchanges:
                self._finish(exchange_id, PrimaryOutcome(side=None, dropped="internal_error"))

    def _on_request(self, exchange_id: int, payload: bytes) -> None:
        meta, raw_headers, body = split_request_payload(payload)
        headers = CIMultiDict(raw_headers)
        try:
            body = decode_body(body, headers.get("Content-Encoding"))
        except Exception:
            body = b""  # an undecodable body is not mirrored; the primary decides what to make of it
        job = self.mirror.offer(meta["path"], body, headers, meta.get("client")) if body else None
        if job is None:
            self.protocol.send(Kind.SKIP, exchange_id, control=True)
            return
        self.exchanges[exchange_id] = _Exchange(job, job.route, float(meta.get("received_at") or time.time()))

    def _on_response_start(self, exchange_id: int, payload: bytes) -> None:
        exchange = self.exchanges.get(exchange_id)
        if exchange is None:
            return
        meta = json.loads(payload)
        record = ResponseRecorder(
            route=exchange.route,
            requested_model=exchange.job.body.get("model"),
            limit_bytes=self.settings.capture_max_bytes,
        )
        record.status = meta.get("status")
        record.content_type = meta.get("content_type")
        record.content_encoding = meta.get("content_encoding")
        exchange.record = record

    def _on_end(self, exchange_id: int, payload: bytes) -> None:
        if exchange_id not in self.exchanges:
            return
        meta = json.loads(payload)
        if not meta.get("ended"):
            self._finish(exchange_id, PrimaryOutcome(side=None, dropped=meta.get("dropped") or "incomplete"))
            return
        exchange = self.exchanges[exchange_id]
        record = exchange.record or ResponseRecorder(
            route=exchange.route, requested_model=exchange.job.body.get("model")
        )
        record.transport_error = meta.get("transport_error")
        record.ttfb_ms = meta.get("ttfb_ms")
        record.seen_bytes = int(meta.get("seen_bytes") or len(record.body))
        notes = [record.truncation_note("baseline")] if record.truncated else []
        side = _primary_side(record, meta.get("latency_ms"), exchange.received_at)
        self._finish(
            exchange_id,
            PrimaryOutcome(side=side, user_cancelled=bool(meta.get("user_cancelled")), notes=tuple(notes)),
        )

    def _finish(self, exchange_id: int, outcome: PrimaryOutcome) -> None:
        exchange = self.exchanges.pop(exchange_id, None)
        if exchange is not None:
            exchange.job.finish_primary(outcome)

    def _on_stats(self, payload: bytes) -> None:
        stats = json.loads(payload)
        for route, status, latency_s, ttfb_s in stats.get("requests", []):
            status_class = f"{status // 100}xx" if isinstance(status, int) else "5xx"
            self.metrics.requests.labels(route=route, status_class=status_class).inc()
            if latency_s is not None:
                self.metrics.latency.labels(side="primary").observe(latency_s)
            if ttfb_s is not None:
                self.metrics.time_to_first_byte.labels(side="primary").observe(ttfb_s)
        for reason, count in stats.get("dropped", {}).items():
            self.metrics.dropped.labels(reason=reason).inc(count)

    def on_channel_lost(self, _exc: Exception | None) -> None:
        self.channel_closed.set()
        self._wake.set()


def _primary_side(record: ResponseRecorder, latency_ms: float | None, received_at: float) -> SideOutput:
    """The primary's side of the pair, decoded now that the user has everything."""
    try:
        side = record.side(latency_ms)
    except Exception as exc:  # capture trouble makes a side with an error, never a lost exchange
        log.exception("could not read the primary's answer for the pair")
        side = SideOutput(status=record.status, latency_ms=latency_ms, error=f"capture failed: {exc}")
    side.started_at = datetime.fromtimestamp(received_at, UTC)
    return side


def _mount_gate(app: web.Application, settings: Settings, metrics: SidecarMetrics) -> Any:
    """The gate API reads scored pairs from the same store the sidecar writes to (`shadow score --db`)."""
    from evaluators.store_mode import load_scored_pairs
    from shadow.gate import load_policy
    from shadow.gate.http import add_gate_routes

    engine = make_engine(settings.db)

    async def load_records(experiment: str) -> list[dict[str, Any]]:
        # A store read can take seconds on a large experiment; it runs off the event loop.
        return await asyncio.to_thread(
            lambda: list(load_scored_pairs(engine, experiment or settings.experiment))
        )

    add_gate_routes(
        app,
        load_records=load_records,
        policy=load_policy(settings.gate_policy or None),
        registry=metrics.registry,
        admin_token=settings.admin_token or None,
        require_token=admin_token_required(settings),
        configured_experiment=settings.experiment,
    )
    return engine


async def _main(fd: int) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: None)  # the serving process decides when we stop
    config: asyncio.Future[Settings] = loop.create_future()
    worker: CaptureWorker | None = None
    early: list[tuple[Kind, int, bytes]] = []

    def on_frame(kind: Kind, exchange_id: int, payload: bytes) -> None:
        if kind is Kind.CONFIG and not config.done():
            values = json.loads(payload)
            config.set_result(Settings(**coerce_values(values, source="the serving process")))
        elif worker is not None:
            worker.on_frame(kind, exchange_id, payload)
        else:
            early.append((kind, exchange_id, payload))

    def on_lost(exc: Exception | None) -> None:
        if worker is not None:
            worker.on_channel_lost(exc)
        elif not config.done():
            config.set_exception(ConnectionError("the serving process went away before sending settings"))

    sock = socket.socket(fileno=fd)
    _transport, protocol = await loop.create_unix_connection(
        lambda: FrameProtocol(on_frame, on_lost, limit_bytes=1 << 20), sock=sock
    )
    parent = os.getppid()

    async def watch_parent() -> None:
        # A serving process killed with SIGKILL may leave the channel open in a forked grandchild; a new
        # parent pid says for sure that nobody will send us anything again.
        while os.getppid() == parent:
            await asyncio.sleep(1.0)
        on_lost(ConnectionError("the serving process is gone"))

    watchdog = asyncio.create_task(watch_parent())
    settings = await config
    configure_logging(settings.log_level)
    if settings.capture_worker_nice:
        os.nice(settings.capture_worker_nice)
    worker = CaptureWorker(settings, protocol)
    admin_url = await worker.start()
    for frame in early:
        worker.on_frame(*frame)
    if protocol.transport is None:
        worker.on_channel_lost(None)
    protocol.send(Kind.READY, 0, json_payload({"admin_url": admin_url}), control=True)
    log.info(
        "capture worker ready: admin %s, candidate %s, sample rate %.3f, store %s",
        admin_url,
        safe_url(settings.candidate) if settings.candidate else "(none)",
        settings.sample_rate,
        redact_url(settings.db),
    )
    await worker.run()
    await worker.stop()
    watchdog.cancel()
    protocol.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shadow.worker", description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="file descriptor of the channel socket")
    args = parser.parse_args(argv)
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    code = 0
    try:
        # Not asyncio.run(): at its end it joins the executor's threads, and a database call stuck in one
        # (a host that vanished) would hold the exit past the deadline. What had to be stored is stored.
        loop.run_until_complete(_main(args.fd))
    except Exception:
        logging.getLogger("shadow.worker").exception("capture worker failed")
        code = 1
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    main()
