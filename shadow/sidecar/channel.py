"""The local channel between the process that serves users and the capture worker.

The user-facing process copies what it forwards into frames on a Unix socket and never waits for the
other end: `FrameProtocol.send()` either puts the frame in the socket's write buffer or, when the buffered
bytes would pass the channel's bound, refuses it at once (the caller drops that mirror and counts it).
Nothing here parses JSON bodies or texts; control frames carry small JSON objects.

A frame is a 13-byte header — kind (1 byte), exchange id (8 bytes), payload length (4 bytes), network
order — followed by the payload.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Callable
from enum import IntEnum
from typing import Any

HEADER = struct.Struct("!BQI")
MAX_FRAME_BYTES = 1 << 31
"""A sanity bound for the reader: a corrupt length field must not make it wait for gigabytes."""


CAPTURE_DROP_REASONS = ("body_too_large", "channel_full", "capture_worker_down", "incomplete")
"""Why an exchange the serving process offered was not mirrored (`shadow_mirror_dropped{reason}`)."""


class Kind(IntEnum):
    # proxy → worker
    CONFIG = 1  # the settings, as JSON; the first frame on a new channel
    REQUEST = 2  # JSON meta (4-byte length prefix) followed by the request body bytes
    RESPONSE_START = 3  # JSON: status and the two headers decoding needs
    BODY = 4  # raw response bytes, in the order the primary sent them
    END = 5  # JSON: timings, how many bytes were seen and kept, why the exchange ended
    STATS = 6  # JSON: request metrics and channel counters, batched
    SHUTDOWN = 7  # JSON: the wall-clock deadline by which the worker must have stored everything
    # worker → proxy
    READY = 20  # JSON: the admin listener's URL
    SKIP = 21  # this exchange is not mirrored: stop copying it


def frame(kind: Kind, exchange_id: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, exchange_id, len(payload)) + payload


def json_payload(value: Any) -> bytes:
    # ensure_ascii: header values decoded with surrogateescape (invalid UTF-8 from a client) survive the
    # trip as escapes; the worker makes them storable.
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def request_payload(meta: dict[str, Any], raw_headers: tuple[tuple[bytes, bytes], ...], body: bytes) -> bytes:
    """Meta (small JSON), the request's header block as it came off the wire, and the body. The headers go
    raw: cheaper than JSON on the serving side, and bytes that are not UTF-8 arrive as they were sent."""
    encoded = json_payload(meta)
    header_block = b"".join(name + b": " + value + b"\r\n" for name, value in raw_headers)
    return struct.pack("!II", len(encoded), len(header_block)) + encoded + header_block + body


def split_request_payload(payload: bytes) -> tuple[dict[str, Any], list[tuple[str, str]], bytes]:
    meta_length, headers_length = struct.unpack_from("!II", payload)
    meta = json.loads(payload[8 : 8 + meta_length])
    block = payload[8 + meta_length : 8 + meta_length + headers_length]
    headers = []
    for line in block.split(b"\r\n"):
        name, sep, value = line.partition(b": ")
        if sep:  # as aiohttp decodes header values: UTF-8, and bytes that are not survive as escapes
            headers.append(
                (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
            )
    return meta, headers, payload[8 + meta_length + headers_length :]


class FrameParser:
    """Incremental: feed it bytes as they arrive, get whole frames back."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[Kind, int, bytes]]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= HEADER.size:
            kind, exchange_id, length = HEADER.unpack_from(self._buffer)
            if length > MAX_FRAME_BYTES:
                raise ValueError(f"frame of {length} bytes: the channel is corrupt")
            end = HEADER.size + length
            if len(self._buffer) < end:
                break
            payload = bytes(self._buffer[HEADER.size : end])
            # Deleting from the front of a bytearray is O(1) in CPython: the start pointer moves.
            del self._buffer[:end]
            frames.append((Kind(kind), exchange_id, payload))
        return frames


class FrameProtocol(asyncio.Protocol):
    """Both ends: frames in go to `on_frame`; `send()` never blocks and says whether the frame was taken."""

    def __init__(
        self,
        on_frame: Callable[[Kind, int, bytes], None],
        on_lost: Callable[[Exception | None], None],
        *,
        limit_bytes: int,
    ) -> None:
        self._on_frame = on_frame
        self._on_lost = on_lost
        self._limit_bytes = limit_bytes
        self._parser = FrameParser()
        self.transport: asyncio.WriteTransport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    # --- asyncio.Protocol ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses
        # The bound is ours (`send` checks it); asyncio's own high-water mark would only pause writing.
        transport.set_write_buffer_limits(high=max(self._limit_bytes * 4, 1 << 20))  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._parser.feed(data)
        except ValueError as exc:
            if self.transport is not None:
                self.transport.abort()
            self._on_lost(exc)
            return
        for kind, exchange_id, payload in frames:
            self._on_frame(kind, exchange_id, payload)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)
        self._on_lost(exc)

    def pause_writing(self) -> None:  # past the high-water mark `send` already refuses frames
        pass

    def resume_writing(self) -> None:
        pass

    # --- sending ---------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def buffered_bytes(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def send(self, kind: Kind, exchange_id: int, payload: bytes = b"", *, control: bool = False) -> bool:
        """Queue one frame without waiting. Data frames must fit under the bound; control frames (small,
        they end an exchange) may use a second bound's worth, so an exchange can still be closed cleanly."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        limit = self._limit_bytes * 2 if control else self._limit_bytes
        if transport.get_write_buffer_size() + HEADER.size + len(payload) > limit:
            return False
        header = HEADER.pack(kind, exchange_id, len(payload))
        if len(payload) < 65536:  # one write, one syscall; a big payload is not worth copying to join
            transport.write(header + payload)
        else:
            transport.write(header)
            transport.write(payload)
        return True

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
