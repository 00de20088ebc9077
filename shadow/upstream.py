"""Talking to upstreams: header filtering, URL joining, and one complete call captured as a `SideOutput`."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from shadow.capture import CapturedOutput, parse_output
from shadow.pairs import SideOutput, utc_now

# RFC 9110 §7.6.1 hop-by-hop headers, plus the ones aiohttp recomputes for the new connection.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_REQUEST_RECOMPUTED = frozenset({"host", "content-length"})

CAPTURE_LIMIT_BYTES = 16 * 1024 * 1024
"""We keep a copy of what passes for the pair; past this size the copy stops (the user still gets it all)."""


def _connection_listed(headers: Mapping[str, str]) -> set[str]:
    listed = headers.get("Connection", "")
    return {token.strip().lower() for token in listed.split(",") if token.strip()}


def forward_request_headers(headers: Mapping[str, str]) -> CIMultiDict[str]:
    drop = HOP_BY_HOP | _REQUEST_RECOMPUTED | _connection_listed(headers)
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in drop)


def forward_response_headers(headers: Mapping[str, str]) -> CIMultiDict[str]:
    """Everything the primary said except hop-by-hop headers. Content-Length and Content-Encoding stay:
    we forward the body bytes exactly as received, never re-encoded."""
    drop = HOP_BY_HOP | _connection_listed(headers)
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in drop)


def join_url(base: str, path_after_v1: str, query: str = "") -> str:
    url = base.rstrip("/") + path_after_v1
    return f"{url}?{query}" if query else url


def openai_error(status: int, message: str, error_type: str, code: str | None = None) -> web.Response:
    """An error in the shape OpenAI clients parse, so SDKs raise a proper APIError."""
    return web.json_response(
        {"error": {"message": message, "type": error_type, "param": None, "code": code}}, status=status
    )


@dataclass
class ResponseRecorder:
    """What we keep while an upstream's bytes pass: a bounded copy, the timings, and what decoding needs.

    The proxy (forwarding to the user) and the background calls (candidate, secondary) record the same way,
    and both turn the record into a `SideOutput` only at the end, in `side()`.
    """

    route: str
    requested_model: str | None
    keep_body: bool = True
    started_at: datetime = field(default_factory=utc_now)
    t0: float = field(default_factory=time.perf_counter)
    body: bytearray = field(default_factory=bytearray)
    ttfb_ms: float | None = None
    status: int | None = None
    content_type: str | None = None
    content_encoding: str | None = None
    transport_error: str | None = None

    def start(self, response: aiohttp.ClientResponse) -> None:
        self.status = response.status
        self.content_type = response.headers.get("Content-Type")
        self.content_encoding = response.headers.get("Content-Encoding")

    def feed(self, chunk: bytes) -> None:
        if self.ttfb_ms is None:
            self.ttfb_ms = self.elapsed_ms()
        if self.keep_body and len(self.body) < CAPTURE_LIMIT_BYTES:
            self.body += chunk

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.t0) * 1000

    def side(self, latency_ms: float | None = None) -> SideOutput:
        captured = (
            parse_output(
                bytes(self.body),
                content_type=self.content_type,
                content_encoding=self.content_encoding,
                route=self.route,
            )
            if self.body
            else CapturedOutput(error=None if self.transport_error else "empty response")
        )
        return side_from_capture(
            captured,
            status=self.status,
            latency_ms=self.elapsed_ms() if latency_ms is None else latency_ms,
            ttft_ms=self.ttfb_ms,
            started_at=self.started_at,
            requested_model=self.requested_model,
            transport_error=self.transport_error,
        )


def side_from_capture(
    captured: CapturedOutput,
    *,
    status: int | None,
    latency_ms: float | None,
    ttft_ms: float | None,
    started_at: Any,
    requested_model: str | None,
    transport_error: str | None = None,
) -> SideOutput:
    error = transport_error
    if error is None and status is not None and status >= 400:
        error = f"HTTP {status}: {captured.error or 'error response'}"
    elif error is None:
        error = captured.error
    return SideOutput(
        text=captured.text if (captured.text or error is None) else None,
        status=status,
        latency_ms=latency_ms,
        ttft_ms=ttft_ms,
        finish_reason=captured.finish_reason,
        usage=captured.usage,
        error=error,
        model=captured.model or requested_model,
        started_at=started_at,
    )


async def call_and_capture(
    session: aiohttp.ClientSession,
    url: str,
    *,
    body: bytes,
    headers: Iterable[tuple[str, str]] | Mapping[str, str],
    route: str,
    timeout: aiohttp.ClientTimeout,
    requested_model: str | None,
) -> SideOutput:
    """One background call (candidate or secondary), read to the end and turned into a `SideOutput`.

    Never raises for upstream trouble: a refused connection, a timeout, a dropped stream all become the
    side's `error`, with whatever text had arrived.
    """
    record = ResponseRecorder(route=route, requested_model=requested_model)
    try:
        async with session.post(
            url, data=body, headers=headers, timeout=timeout, allow_redirects=False
        ) as resp:
            record.start(resp)
            async for chunk in resp.content.iter_any():
                record.feed(chunk)
    except TimeoutError:
        record.transport_error = f"timed out after {timeout.total or timeout.sock_read} s"
    except aiohttp.ClientPayloadError as exc:
        record.transport_error = f"connection dropped mid-response: {exc}"
    except aiohttp.ClientConnectorError as exc:
        record.transport_error = f"cannot connect: {exc.os_error or exc}"
    except (aiohttp.ClientError, OSError) as exc:
        record.transport_error = f"{type(exc).__name__}: {exc}"
    return record.side()
