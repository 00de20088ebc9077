"""Byte for byte, measured at the byte level: what the primary receives through the sidecar is what it
receives directly, and what the user receives through the sidecar is what the primary sent — headers,
encodings, limits and `Expect` included (issue 11, acceptance 3)."""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from yarl import URL

from shadow.sidecar.server import Sidecar
from tests.harness import capture_stack, wait_for_metric
from tests.rawhttp import RawMessage, RawPrimary, build_request, build_response, raw_request

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}
CHAT = json.dumps({"model": "m", "messages": [{"role": "user", "content": "你好, exact?"}]}).encode()


def _answer(message: RawMessage) -> bytes:
    return build_response(200, [("Content-Type", "application/json"), ("X-Upstream", "raw")], _chat_answer())


def _chat_answer(text: str = "好的。") -> bytes:
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    return json.dumps({"id": "c1", "object": "chat.completion", "model": "m", "choices": [choice]}).encode()


@asynccontextmanager
async def sidecar_before(primary: RawPrimary, tmp_path, **overrides) -> AsyncIterator[Sidecar]:
    """The test harness's stack, with the byte-level primary in front of it."""
    async with capture_stack(tmp_path, primary=primary.url + "/v1", **overrides) as stack:
        yield stack.sidecar


def _host_port(url: str) -> tuple[str, int]:
    parsed = URL(url)
    assert parsed.host is not None and parsed.port is not None
    return parsed.host, parsed.port


async def _both_ways(
    primary: RawPrimary, sidecar: Sidecar, method: str, path: str, headers: list[tuple[str, str]], body: bytes
) -> tuple[RawMessage, RawMessage, RawMessage, RawMessage]:
    """(what the primary got directly, through the sidecar; what the user got directly, through it)."""
    results = []
    for url in (primary.url, sidecar.user_url):
        host, port = _host_port(url)
        before = len(primary.received)
        response = await raw_request(host, port, build_request(method, path, f"{host}:{port}", headers, body))
        assert len(primary.received) == before + 1
        results.append((primary.received[-1], response))
    (direct_in, direct_out), (via_in, via_out) = results
    return direct_in, via_in, direct_out, via_out


def _end_to_end_headers(message: RawMessage) -> list[tuple[str, str]]:
    return sorted((k.lower(), v) for k, v in message.headers if k.lower() not in HOP_BY_HOP | {"host"})


def _assert_same_request(direct: RawMessage, via: RawMessage) -> None:
    assert via.start_line == direct.start_line
    assert _end_to_end_headers(via) == _end_to_end_headers(direct)
    assert via.body == direct.body


def _assert_same_response(direct: RawMessage, via: RawMessage) -> None:
    assert via.start_line == direct.start_line
    assert _end_to_end_headers(via) == _end_to_end_headers(direct)
    assert hashlib.sha256(via.body).digest() == hashlib.sha256(direct.body).digest()


async def test_no_header_added_and_no_compression_negotiated(tmp_path):
    primary = await RawPrimary(_answer).start()
    try:
        async with sidecar_before(primary, tmp_path) as sidecar:
            headers = [("Content-Type", "application/json"), ("Authorization", "Bearer sk-user")]
            direct_in, via_in, direct_out, via_out = await _both_ways(
                primary, sidecar, "POST", "/v1/chat/completions", headers, CHAT
            )
            assert "accept-encoding" not in via_in.names(), "the user asked for no compression"
            assert "user-agent" not in via_in.names() and "accept" not in via_in.names()
            _assert_same_request(direct_in, via_in)
            _assert_same_response(direct_out, via_out)
            # The primary sent no Date and no Server: the sidecar adds neither.
            assert "date" not in via_out.names() and "server" not in via_out.names()
    finally:
        await primary.stop()


async def test_path_and_query_arrive_as_sent(tmp_path):
    primary = await RawPrimary(_answer).start()
    try:
        async with sidecar_before(primary, tmp_path) as sidecar:
            for path in (
                "/v1/chat/completions?api-version=2024-10-01&q=a%2Fb%20c&x=%E4%BD%A0",
                "/v1/models/org%2Fmodel-7b",
                "/health?probe=1",
            ):
                direct_in, via_in, _, via_out = await _both_ways(primary, sidecar, "GET", path, [], b"")
                assert via_in.start_line == direct_in.start_line == f"GET {path} HTTP/1.1"
                assert via_out.start_line.startswith("HTTP/1.1 200")
    finally:
        await primary.stop()


async def test_gzip_request_body_arrives_as_sent(tmp_path):
    primary = await RawPrimary(_answer).start()
    try:
        async with sidecar_before(primary, tmp_path) as sidecar:
            body = gzip.compress(CHAT, mtime=0)
            headers = [("Content-Type", "application/json"), ("Content-Encoding", "gzip")]
            direct_in, via_in, direct_out, via_out = await _both_ways(
                primary, sidecar, "POST", "/v1/chat/completions", headers, body
            )
            assert via_in.body == body and via_in.header("Content-Encoding") == "gzip"
            _assert_same_request(direct_in, via_in)
            _assert_same_response(direct_out, via_out)
    finally:
        await primary.stop()


async def test_gzip_response_reaches_the_user_compressed_and_is_still_captured(tmp_path):
    compressed = gzip.compress(_chat_answer("压缩的回答。"), mtime=0)

    def answer(_message: RawMessage) -> bytes:
        return build_response(
            200, [("Content-Type", "application/json"), ("Content-Encoding", "gzip")], compressed
        )

    primary = await RawPrimary(answer).start()
    try:
        async with sidecar_before(primary, tmp_path) as sidecar:
            headers = [("Content-Type", "application/json"), ("Accept-Encoding", "gzip")]
            _direct_in, via_in, direct_out, via_out = await _both_ways(
                primary, sidecar, "POST", "/v1/chat/completions", headers, CHAT
            )
            assert via_in.header("Accept-Encoding") == "gzip"
            _assert_same_response(direct_out, via_out)
            assert via_out.body == compressed
    finally:
        await primary.stop()


async def test_big_headers_many_headers_both_ways(tmp_path):
    big_response_header = "v" * (16 * 1024)

    def answer(_message: RawMessage) -> bytes:
        headers = [("Content-Type", "application/json"), ("X-Big", big_response_header)]
        headers += [(f"X-Resp-{i}", str(i)) for i in range(200)]
        return build_response(200, headers, _chat_answer())

    primary = await RawPrimary(answer).start()
    try:
        async with sidecar_before(primary, tmp_path) as sidecar:
            headers = [("Content-Type", "application/json"), ("Cookie", "session=" + "c" * (16 * 1024))]
            headers += [(f"X-Req-{i}", str(i)) for i in range(200)]
            direct_in, via_in, direct_out, via_out = await _both_ways(
                primary, sidecar, "POST", "/v1/chat/completions", headers, CHAT
            )
            assert via_out.start_line.startswith("HTTP/1.1 200")
            assert via_in.header("Cookie") == headers[1][1]
            assert via_out.header("X-Big") == big_response_header
            _assert_same_request(direct_in, via_in)
            _assert_same_response(direct_out, via_out)
    finally:
        await primary.stop()


async def test_20_mb_bodies_pass_both_ways_unmirrored_and_unbuffered(tmp_path):
    big_answer = b"x" * (20 * 1024 * 1024)

    def answer(_message: RawMessage) -> bytes:
        return build_response(200, [("Content-Type", "application/octet-stream")], big_answer)

    primary = await RawPrimary(answer).start()
    try:
        async with sidecar_before(primary, tmp_path) as sidecar:
            body = json.dumps(
                {"model": "m", "messages": [{"role": "user", "content": "y" * (20 << 20)}]}
            ).encode()
            headers = [("Content-Type", "application/json")]
            direct_in, via_in, direct_out, via_out = await _both_ways(
                primary, sidecar, "POST", "/v1/chat/completions", headers, body
            )
            assert len(via_in.body) == len(body) and via_in.body == body
            _assert_same_request(direct_in, via_in)
            _assert_same_response(direct_out, via_out)
            await wait_for_metric(
                sidecar.admin_url, 'shadow_mirror_dropped_total{reason="body_too_large"} 1.0'
            )
    finally:
        await primary.stop()


async def test_expect_100_continue_never_waits_on_the_primary(tmp_path):
    # A primary that never sends `100 Continue` (many don't): it just waits for the body.
    primary = await RawPrimary(_answer).start()
    try:
        async with sidecar_before(primary, tmp_path) as sidecar:
            host, port = _host_port(sidecar.user_url)
            head = build_request(
                "POST",
                "/v1/chat/completions",
                f"{host}:{port}",
                [
                    ("Content-Type", "application/json"),
                    ("Expect", "100-continue"),
                    ("Content-Length", str(len(CHAT))),
                ],
                length=False,
            )
            started = time.monotonic()
            response = await raw_request(
                host, port, head, body_after=CHAT, wait_for_continue=True, timeout_s=5
            )
            assert response.start_line.startswith("HTTP/1.1 200")
            assert time.monotonic() - started < 2.0
            assert "expect" not in primary.received[-1].names()
            assert primary.received[-1].body == CHAT
    finally:
        await primary.stop()
