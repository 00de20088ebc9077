"""HTTP/1.1 at the byte level, for tests that must see exactly what crossed the wire.

`RawPrimary` is an upstream that records every request as received (head lines, body bytes) and answers
with a response the test builds byte by byte; `raw_request` is a client that sends exactly the bytes it is
given and parses the answer without normalising anything. Neither is a general HTTP implementation: just
enough framing (Content-Length, chunked) for the cases the tests send.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class RawMessage:
    start_line: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def names(self) -> list[str]:
        return [k.lower() for k, _ in self.headers]


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, list[tuple[str, str]]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name, value.strip()))
    return lines[0], headers


async def _read_body(
    reader: asyncio.StreamReader, headers: list[tuple[str, str]], *, until_eof: bool
) -> bytes:
    values = {k.lower(): v for k, v in headers}
    if "chunked" in values.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return bytes(body)
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    if "content-length" in values:
        return await reader.readexactly(int(values["content-length"]))
    return await reader.read() if until_eof else b""


def build_response(
    status: int = 200,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    *,
    reason: str = "OK",
) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"]
    given = [k.lower() for k, _ in headers or []]
    all_headers = list(headers or [])
    if "content-length" not in given and "transfer-encoding" not in given:
        all_headers.append(("Content-Length", str(len(body))))
    lines += [f"{k}: {v}" for k, v in all_headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class RawPrimary:
    """`respond(request) -> bytes | None`; None means: never answer (hold the connection)."""

    respond: Callable[[RawMessage], bytes | None]
    received: list[RawMessage] = field(default_factory=list)
    read_body: bool = True
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> RawPrimary:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=1 << 20)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    start_line, headers = await _read_head(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                body = await _read_body(reader, headers, until_eof=False) if self.read_body else b""
                message = RawMessage(start_line, headers, body)
                self.received.append(message)
                answer = self.respond(message)
                if answer is None:
                    await asyncio.sleep(3600)
                    return
                writer.write(answer)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def raw_request(host: str, port: int, data: bytes, *, timeout_s: float = 20.0, body_after: bytes = b"",
                      wait_for_continue: bool = False) -> RawMessage:  # fmt: skip
    """Send `data` (a whole request, or its head when `body_after` follows a `100 Continue`)."""
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    try:
        writer.write(data)
        await writer.drain()
        if wait_for_continue:
            start_line, _ = await asyncio.wait_for(_read_head(reader), timeout_s)
            assert start_line.startswith("HTTP/1.1 100"), start_line
            writer.write(body_after)
            await writer.drain()
        start_line, headers = await asyncio.wait_for(_read_head(reader), timeout_s)
        body = await asyncio.wait_for(_read_body(reader, headers, until_eof=True), timeout_s)
        return RawMessage(start_line, headers, body)
    finally:
        writer.close()


def build_request(
    method: str,
    path: str,
    host: str,
    headers: list[tuple[str, str]],
    body: bytes = b"",
    *,
    length: bool = True,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers]
    if length and body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
