"""The capture worker's side of talking to upstreams: a bounded record of an answer, turned into a
`SideOutput` at the end, and one complete background call (candidate or secondary) captured that way."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from shadow.core.logs import scrub
from shadow.core.pairs import SideOutput, utc_now
from shadow.sidecar.capture import CapturedOutput, parse_output

CAPTURE_LIMIT_BYTES = 4 * 1024 * 1024
"""Default bound on the copy kept of one answer (`Settings.capture_max_bytes`); the user still gets it all."""


@dataclass
class ResponseRecorder:
    """What we keep while an upstream's bytes pass: a bounded copy, the timings, and what decoding needs.

    The primary's copy (framed over from the process that serves users) and the background calls
    (candidate, secondary) record the same way, and each becomes a `SideOutput` only at the end, in `side()`.
    """

    route: str
    requested_model: str | None
    keep_body: bool = True
    limit_bytes: int = CAPTURE_LIMIT_BYTES
    started_at: datetime = field(default_factory=utc_now)
    t0: float = field(default_factory=time.perf_counter)
    body: bytearray = field(default_factory=bytearray)
    ttfb_ms: float | None = None
    status: int | None = None
    content_type: str | None = None
    content_encoding: str | None = None
    transport_error: str | None = None
    seen_bytes: int = 0

    def start(self, response: aiohttp.ClientResponse) -> None:
        self.status = response.status
        self.content_type = response.headers.get("Content-Type")
        self.content_encoding = response.headers.get("Content-Encoding")

    def feed(self, chunk: bytes) -> None:
        if self.ttfb_ms is None:
            self.ttfb_ms = self.elapsed_ms()
        self.seen_bytes += len(chunk)
        room = self.limit_bytes - len(self.body)
        if self.keep_body and room > 0:
            self.body += chunk[:room]

    @property
    def truncated(self) -> bool:
        return self.seen_bytes > len(self.body)

    def truncation_note(self, side: str) -> str:
        return f"{side} truncated: kept {len(self.body)} of {self.seen_bytes} bytes (capture_max_bytes)"

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
        tool_calls=captured.tool_calls,
        refusal=captured.refusal,
        reasoning=captured.reasoning,
        choices=captured.choices,
        logprobs=captured.logprobs,
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
    limit_bytes: int = CAPTURE_LIMIT_BYTES,
    notes: list[str] | None = None,
    label: str = "candidate",
) -> SideOutput:
    """One background call (candidate or secondary), read to the end and turned into a `SideOutput`.

    Never raises for upstream trouble: a refused connection, a timeout, a dropped stream all become the
    side's `error`, with whatever text had arrived. A copy cut at `limit_bytes` is said in `notes`.
    """
    record = ResponseRecorder(route=route, requested_model=requested_model, limit_bytes=limit_bytes)
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
    if record.transport_error:  # exception texts may quote the URL: no query string or credential in a pair
        record.transport_error = scrub(record.transport_error)
    if notes is not None and record.truncated:
        notes.append(record.truncation_note(label))
    return record.side()
