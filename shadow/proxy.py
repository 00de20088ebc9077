"""The user-facing listener: every request goes to the primary, and the user gets the primary's answer
byte for byte. A copy of the answer is kept for the pair when the request is mirrored.

What we promise the user: status, headers (less hop-by-hop ones) and body bytes as the primary sent
them; streams forwarded chunk by chunk as they arrive, never buffered or compressed. Our own failures
(mirroring, capture, storage) are logged and swallowed; only an upstream failure before the first byte
is ours to answer, with a 502 in OpenAI's error shape.
"""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web
from yarl import URL

from shadow.metrics import SidecarMetrics
from shadow.mirror import Mirror, MirrorJob, PrimaryOutcome
from shadow.pairs import SideOutput
from shadow.settings import Settings
from shadow.upstream import (
    ResponseRecorder,
    forward_request_headers,
    forward_response_headers,
    join_url,
    openai_error,
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
        # A copy of the body is kept only when the exchange is mirrored; timings are kept for the metrics.
        record = ResponseRecorder(
            route=job.route if job else "chat",
            requested_model=job.body.get("model") if job else None,
            keep_body=job is not None,
        )
        user_cancelled = False
        try:
            try:
                upstream = await self.session.request(
                    request.method,
                    url,
                    headers=forward_request_headers(request.headers),
                    data=body if body else None,
                    allow_redirects=False,
                    timeout=self.timeout,
                )
            except Exception as exc:  # whatever it was, nothing reached the user yet: a clean 502
                record.transport_error = f"primary unreachable: {type(exc).__name__}: {exc}"
                log.warning("primary request failed before any byte: %s", record.transport_error)
                self.metrics.requests.labels(route=route_label, status_class="5xx").inc()
                return openai_error(
                    502, "The upstream model server could not be reached.", "upstream_error", "bad_gateway"
                )
            try:
                record.start(upstream)
                response = web.StreamResponse(
                    status=upstream.status,
                    reason=upstream.reason,
                    headers=forward_response_headers(upstream.headers),
                )
                try:
                    await response.prepare(request)
                    async for chunk in upstream.content.iter_any():
                        record.feed(chunk)
                        await response.write(chunk)
                    await response.write_eof()
                except _CLIENT_GONE:
                    # Close the primary connection now: nobody reads the rest, so nobody should pay for it.
                    user_cancelled = True
                    upstream.close()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    # Headers are out; the honest thing left is to end the connection as the primary did.
                    record.transport_error = f"primary broke off mid-response: {type(exc).__name__}: {exc}"
                    log.warning("%s", record.transport_error)
                    if request.transport is not None:
                        request.transport.close()
                self.metrics.requests.labels(
                    route=route_label, status_class=f"{upstream.status // 100}xx"
                ).inc()
                return response
            finally:
                upstream.release()
        finally:
            latency_ms = record.elapsed_ms()
            self.metrics.latency.labels(side="primary").observe(latency_ms / 1000)
            if record.ttfb_ms is not None:
                self.metrics.time_to_first_byte.labels(side="primary").observe(record.ttfb_ms / 1000)
            if job is not None:
                job.finish_primary(
                    PrimaryOutcome(side=_primary_side(record, latency_ms), user_cancelled=user_cancelled)
                )


def _primary_side(record: ResponseRecorder, latency_ms: float) -> SideOutput:
    """The primary's side of the pair. Parsing happens here, after the user has everything."""
    try:
        return record.side(latency_ms)
    except Exception as exc:  # never let capture trouble reach the user
        log.exception("could not read the primary's answer for the pair")
        return SideOutput(status=record.status, latency_ms=latency_ms, error=f"capture failed: {exc}")


def _path_after_v1(path: str) -> str | None:
    """`/v1/chat/completions` → `/chat/completions`; None for paths outside the OpenAI base."""
    if path == "/v1" or path.startswith("/v1/"):
        return path[3:] or "/"
    return None
