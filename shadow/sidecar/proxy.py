"""The user-facing listener: every request goes to the primary, and the user gets the primary's answer
byte for byte and on time. This is the only work this process does.

What we promise the user: status, headers (less hop-by-hop ones) and body bytes as the primary sent them;
streams forwarded chunk by chunk as they arrive, never buffered, compressed or decompressed, in either
direction; no header of ours added. Only a failure before the primary's first byte is ours to answer, with
a 502 in OpenAI's error shape.

For a request that may be mirrored, a bounded copy of the request and of the answer goes to the capture
worker over a local channel (`shadow.sidecar.capture_link`), after each chunk has been handed to the user. Nothing
is parsed here: the worker decides whether the exchange is sampled and does everything else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import hdrs, web
from multidict import CIMultiDict
from yarl import URL

from shadow.core.logs import scrub
from shadow.core.settings import Settings
from shadow.sidecar.capture_link import CaptureLink, Exchange, RequestTiming
from shadow.sidecar.http_headers import (
    forward_request_headers,
    forward_response_headers,
    join_url,
    openai_error,
    split_credentials,
)
from shadow.sidecar.routes import MIRRORED_ROUTES, path_after_v1

log = logging.getLogger(__name__)

# The client went away while we were writing to it.
_CLIENT_GONE = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)

_DEFAULTS_AIOHTTP_ADDS = (hdrs.CONTENT_TYPE, hdrs.DATE, hdrs.SERVER)


class ExactResponse(web.StreamResponse):
    """A StreamResponse that adds no header of its own.

    aiohttp fills in `Content-Type: application/octet-stream`, `Date` and `Server` when a response has none;
    a primary that sent none of them must reach the user that way too. (A private hook: the transparency
    tests pin it across aiohttp upgrades.)"""

    async def _prepare_headers(self) -> None:
        given = {name for name in _DEFAULTS_AIOHTTP_ADDS if name in self.headers}
        await super()._prepare_headers()
        for name in _DEFAULTS_AIOHTTP_ADDS:
            if name not in given:
                self.headers.popall(name, None)


class Proxy:
    def __init__(self, settings: Settings, session: aiohttp.ClientSession, link: CaptureLink | None) -> None:
        self.settings = settings
        self.session = session
        self.link = link
        # Streams stay open for as long as the model writes; only silence is bounded.
        self.timeout = aiohttp.ClientTimeout(
            total=None, connect=settings.primary_connect_timeout_s, sock_read=settings.primary_read_timeout_s
        )
        self._primary, self._primary_auth = split_credentials(settings.primary)
        self._primary_origin = str(URL(self._primary).origin()) if settings.primary else ""
        self._in_flight: set[asyncio.Task[object]] = set()

    def create_app(self) -> web.Application:
        # client_max_size only bounds request.read(), which we call for bodies that fit the capture bound;
        # larger ones are streamed through without it.
        app = web.Application(client_max_size=self.settings.capture_max_bytes + 1)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def drain(self, timeout_s: float) -> None:
        """Let requests in flight finish within `timeout_s`, then cut off the rest (a stream that never
        ends). aiohttp's own shutdown cannot: it cancels a handler only through the request body."""
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=max(timeout_s, 0.0))
        for task in list(self._in_flight):
            task.cancel()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=1.0)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            return await self._handle(request)
        finally:
            if task is not None:
                self._in_flight.discard(task)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        timing = RequestTiming()
        after_v1 = path_after_v1(request.path)
        route_label = after_v1 if after_v1 in MIRRORED_ROUTES else "other"
        # The path and query as the client sent them: percent-escapes untouched, never decoded and redone.
        raw = request.raw_path
        if after_v1 is not None and raw.startswith("/v1"):
            url = URL(self._primary.rstrip("/") + raw[3:], encoded=True)
        elif after_v1 is not None:  # an escaped "/v1" itself (rare): the decoded form is all we can trust
            url = URL(join_url(self._primary, after_v1, request.query_string))
        else:  # outside the OpenAI base (e.g. a vLLM `/health`): same path on the primary's host
            url = URL(self._primary_origin + raw, encoded=True)
        exchange = None
        if self.link is not None and request.method == "POST" and route_label != "other":
            exchange = self.link.open(request, after_v1 or "", timing)
        length = request.content_length
        streamed_body = request.body_exists and (length is None or length > self.settings.capture_max_bytes)
        if not streamed_body:
            body: bytes | AsyncIterator[bytes] | None = await request.read() if request.body_exists else None
            if exchange is not None:
                exchange.send_request(body or b"")
        else:
            if exchange is not None and length is not None:  # known to be too large to mirror
                exchange.drop("body_too_large")
                exchange = None
            body = self._stream_body(request, exchange)
        headers = forward_request_headers(request.headers, keep_length=streamed_body and length is not None)
        if self._primary_auth is not None and "Authorization" not in headers:
            headers["Authorization"] = self._primary_auth
        try:
            return await self._forward(request, url, headers, body, exchange, timing)
        finally:
            if exchange is not None:
                exchange.close()
            if self.link is not None:
                self.link.record_request(route_label, timing)

    async def _stream_body(self, request: web.Request, exchange: Exchange | None) -> AsyncIterator[bytes]:
        """Forward a body of unknown or large size as it arrives; mirror it only if it ends up small."""
        kept: bytearray | None = bytearray() if exchange is not None else None
        async for chunk in request.content.iter_any():
            if kept is not None:
                if len(kept) + len(chunk) <= self.settings.capture_max_bytes:
                    kept += chunk
                else:
                    kept = None
                    if exchange is not None:
                        exchange.drop("body_too_large")
            yield chunk
        if kept is not None and exchange is not None:
            exchange.send_request(bytes(kept))

    async def _forward(
        self,
        request: web.Request,
        url: URL,
        headers: CIMultiDict[str],
        body: bytes | AsyncIterator[bytes] | None,
        exchange: Exchange | None,
        timing: RequestTiming,
    ) -> web.StreamResponse:
        try:
            upstream = await self.session.request(
                request.method,
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                timeout=self.timeout,
            )
        except Exception as exc:  # whatever it was, nothing reached the user yet: a clean 502
            error = scrub(f"primary unreachable: {type(exc).__name__}: {exc}")
            log.warning("primary request failed before any byte: %s", error)
            timing.finish()
            if exchange is not None:
                exchange.finish(transport_error=error)
            return openai_error(
                502, "The upstream model server could not be reached.", "upstream_error", "bad_gateway"
            )
        timing.status = upstream.status
        user_cancelled = False
        transport_error = None
        ended = False  # False while an exception (a cancelled handler at shutdown) is on its way out
        try:
            if exchange is not None:
                exchange.response_start(upstream)
            response = ExactResponse(
                status=upstream.status,
                reason=upstream.reason,
                headers=forward_response_headers(upstream.headers),
            )
            try:
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    timing.first_byte()
                    await response.write(chunk)
                    if exchange is not None:  # after the user has the chunk, never before
                        exchange.body(chunk)
                await response.write_eof()
                ended = True
            except _CLIENT_GONE:
                # Close the primary connection now: nobody reads the rest, so nobody should pay for it.
                user_cancelled = ended = True
                upstream.close()
            except (aiohttp.ClientError, TimeoutError) as exc:
                # Headers are out; the honest thing left is to end the connection as the primary did.
                transport_error = scrub(f"primary broke off mid-response: {type(exc).__name__}: {exc}")
                log.warning("%s", transport_error)
                ended = True
                if request.transport is not None:
                    request.transport.close()
            return response
        finally:
            upstream.release()
            timing.finish()
            if exchange is not None:
                exchange.finish(user_cancelled=user_cancelled, transport_error=transport_error, ended=ended)
