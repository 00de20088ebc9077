"""The user-facing listener: every request goes to the primary, and the user gets the primary's answer
byte for byte. A copy of the answer is kept for the pair when the request is mirrored.

What we promise the user: status, headers (less hop-by-hop ones) and body bytes as the primary sent
them; streams forwarded chunk by chunk as they arrive, never buffered or compressed. Our own failures
(mirroring, capture, storage) are logged and swallowed; only an upstream failure before the first byte
is ours to answer, with a 502 in OpenAI's error shape.
"""

from __future__ import annotations

import logging
import time

import aiohttp
from aiohttp import web
from yarl import URL

from shadow.capture import parse_output
from shadow.metrics import SidecarMetrics
from shadow.mirror import Mirror, MirrorJob, PrimaryOutcome
from shadow.pairs import SideOutput, utc_now
from shadow.settings import Settings
from shadow.upstream import (
    CAPTURE_LIMIT_BYTES,
    forward_request_headers,
    forward_response_headers,
    join_url,
    openai_error,
    side_from_capture,
)

log = logging.getLogger(__name__)

# The client went away while we were writing to it.
_CLIENT_GONE = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)


class Proxy:
    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession,
        mirror: Mirror | None,
        metrics: SidecarMetrics,
    ) -> None:
        self.settings = settings
        self.session = session
        self.mirror = mirror
        self.metrics = metrics
        # Streams stay open for as long as the model writes; only silence is bounded.
        self.timeout = aiohttp.ClientTimeout(
            total=None, connect=settings.primary_connect_timeout_s, sock_read=settings.primary_read_timeout_s
        )
        self._primary_origin = str(URL(settings.primary).origin()) if settings.primary else ""

    def create_app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return openai_error(
                413,
                f"Request body is larger than the sidecar's limit of {self.settings.max_body_bytes} bytes.",
                "invalid_request_error",
                "request_too_large",
            )
        path_after_v1 = _path_after_v1(request.path)
        route_label = path_after_v1 if path_after_v1 in ("/chat/completions", "/completions") else "other"
        job = None
        if self.mirror is not None and request.method == "POST" and path_after_v1 is not None:
            job = self.mirror.offer(path_after_v1, body, request.headers, request.remote)
        if path_after_v1 is not None:
            url = join_url(self.settings.primary, path_after_v1, request.query_string)
        else:  # outside the OpenAI base (e.g. a vLLM `/health`): same path on the primary's host
            url = join_url(self._primary_origin, request.path, request.query_string)
        return await self._forward(request, url, body, job, route_label)

    async def _forward(
        self, request: web.Request, url: str, body: bytes, job: MirrorJob | None, route_label: str
    ) -> web.StreamResponse:
        started_at = utc_now()
        t0 = time.perf_counter()
        captured = bytearray() if job is not None else None
        ttfb_ms: float | None = None
        status: int | None = None
        content_type = content_encoding = None
        transport_error: str | None = None
        user_cancelled = False
        try:
            try:
                upstream_cm = self.session.request(
                    request.method,
                    url,
                    headers=forward_request_headers(request.headers),
                    data=body if body else None,
                    allow_redirects=False,
                    timeout=self.timeout,
                )
                upstream = await upstream_cm.__aenter__()
            except Exception as exc:  # whatever it was, nothing reached the user yet: a clean 502
                transport_error = f"primary unreachable: {type(exc).__name__}: {exc}"
                log.warning("primary request failed before any byte: %s", transport_error)
                self.metrics.requests.labels(route=route_label, status_class="5xx").inc()
                return openai_error(
                    502, "The upstream model server could not be reached.", "upstream_error", "bad_gateway"
                )
            try:
                status = upstream.status
                content_type = upstream.headers.get("Content-Type")
                content_encoding = upstream.headers.get("Content-Encoding")
                response = web.StreamResponse(
                    status=upstream.status,
                    reason=upstream.reason,
                    headers=forward_response_headers(upstream.headers),
                )
                try:
                    await response.prepare(request)
                    async for chunk in upstream.content.iter_any():
                        if ttfb_ms is None:
                            ttfb_ms = (time.perf_counter() - t0) * 1000
                        if captured is not None and len(captured) < CAPTURE_LIMIT_BYTES:
                            captured += chunk
                        await response.write(chunk)
                    await response.write_eof()
                except _CLIENT_GONE:
                    # Close the primary connection now: nobody reads the rest, so nobody should pay for it.
                    user_cancelled = True
                    upstream.close()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    # Headers are out; the honest thing left is to end the connection as the primary did.
                    transport_error = f"primary broke off mid-response: {type(exc).__name__}: {exc}"
                    log.warning("%s", transport_error)
                    if request.transport is not None:
                        request.transport.close()
                self.metrics.requests.labels(route=route_label, status_class=f"{status // 100}xx").inc()
                return response
            finally:
                await upstream_cm.__aexit__(None, None, None)
        finally:
            latency_ms = (time.perf_counter() - t0) * 1000
            self.metrics.latency.labels(side="primary").observe(latency_ms / 1000)
            if ttfb_ms is not None:
                self.metrics.time_to_first_byte.labels(side="primary").observe(ttfb_ms / 1000)
            if job is not None:
                self._hand_over(
                    job,
                    captured,
                    status,
                    content_type,
                    content_encoding,
                    started_at,
                    latency_ms,
                    ttfb_ms,
                    transport_error,
                    user_cancelled,
                )

    def _hand_over(
        self,
        job: MirrorJob,
        captured: bytearray | None,
        status: int | None,
        content_type: str | None,
        content_encoding: str | None,
        started_at: object,
        latency_ms: float,
        ttfb_ms: float | None,
        transport_error: str | None,
        user_cancelled: bool,
    ) -> None:
        """Give the mirror the primary's side. Parsing happens here, after the user has everything."""
        try:
            parsed = parse_output(
                bytes(captured or b""),
                content_type=content_type,
                content_encoding=content_encoding,
                route=job.route,
            )
            side = side_from_capture(
                parsed,
                status=status,
                latency_ms=latency_ms,
                ttft_ms=ttfb_ms,
                started_at=started_at,
                requested_model=job.body.get("model"),
                transport_error=transport_error,
            )
        except Exception as exc:  # never let capture trouble reach the user
            log.exception("could not read the primary's answer for the pair")
            side = SideOutput(status=status, latency_ms=latency_ms, error=f"capture failed: {exc}")
        job.finish_primary(PrimaryOutcome(side=side, user_cancelled=user_cancelled))


def _path_after_v1(path: str) -> str | None:
    """`/v1/chat/completions` → `/chat/completions`; None for paths outside the OpenAI base."""
    if path == "/v1" or path.startswith("/v1/"):
        return path[3:] or "/"
    return None
