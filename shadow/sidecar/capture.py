"""Turn the raw bytes an upstream sent into one side of a pair: the output text, finish_reason and usage.

The proxy forwards bytes untouched and only keeps a copy; this module decodes that copy once, at the end.
Decoding chunk by chunk would be wrong: network chunks split SSE lines and 3-byte CJK characters.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class CapturedOutput:
    text: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    response_id: str | None = None
    model: str | None = None
    error: str | None = None
    """Set when the body could not be understood, or the upstream answered with an error object."""


def decode_body(body: bytes, content_encoding: str | None) -> bytes:
    """Undo gzip/deflate so we can read what we forwarded as-is. Unknown encodings raise ValueError."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompress(body, wbits=zlib.MAX_WBITS | 16)
    if encoding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            return zlib.decompress(body, wbits=-zlib.MAX_WBITS)
    raise ValueError(f"cannot decode content-encoding {encoding!r}")


def iter_sse_data(text: str) -> list[str]:
    """The `data` payloads of a complete SSE stream, per the WHATWG event-stream rules.

    Lines end in CRLF, LF or CR; an event ends at a blank line; several `data:` lines join with '\\n';
    comments (`:`) and other fields are ignored. A last event without its blank line still counts, since
    an upstream that closed the connection after it did send it.
    """
    payloads: list[str] = []
    data_lines: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line == "":
            if data_lines:
                payloads.append("\n".join(data_lines))
                data_lines = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data_lines.append(value[1:] if value.startswith(" ") else value)
    if data_lines:
        payloads.append("\n".join(data_lines))
    return payloads


def parse_output(
    body: bytes, *, content_type: str | None, content_encoding: str | None, route: str
) -> CapturedOutput:
    """Read a complete chat/completions response, streamed (SSE) or not."""
    try:
        raw = decode_body(body, content_encoding)
    except (ValueError, zlib.error) as exc:
        return CapturedOutput(error=f"undecodable body: {exc}")
    text = raw.decode("utf-8", errors="replace")
    if "text/event-stream" in (content_type or ""):
        return _parse_stream(text, route)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return CapturedOutput(error=f"response is not JSON: {text[:200]!r}")
    if not isinstance(obj, dict):
        return CapturedOutput(error="response JSON is not an object")
    out = CapturedOutput(response_id=obj.get("id"), model=obj.get("model"), usage=_usage(obj.get("usage")))
    if "error" in obj and "choices" not in obj:
        out.error = _error_text(obj["error"])
        return out
    for choice in _choices(obj):
        index = choice.get("index", 0)
        piece = _choice_text(choice, route, streamed=False)
        _append(out, index, piece)
        if index == 0 and choice.get("finish_reason"):
            out.finish_reason = choice["finish_reason"]
    return out


def _parse_stream(text: str, route: str) -> CapturedOutput:
    out = CapturedOutput()
    for payload in iter_sse_data(text):
        if payload.strip() == "[DONE]":
            break
        try:
            event = json.loads(payload)
        except json.JSONDecodeError:
            out.error = f"stream event is not JSON: {payload[:200]!r}"
            continue
        if not isinstance(event, dict):
            continue
        if "error" in event and "choices" not in event:
            out.error = _error_text(event["error"])
            continue
        out.response_id = out.response_id or event.get("id")
        out.model = out.model or event.get("model")
        if event.get("usage"):
            out.usage = _usage(event["usage"])
        for choice in _choices(event):
            index = choice.get("index", 0)
            _append(out, index, _choice_text(choice, route, streamed=True))
            if index == 0 and choice.get("finish_reason"):
                out.finish_reason = choice["finish_reason"]
    return out


def _choices(obj: dict[str, Any]) -> list[dict[str, Any]]:
    choices = obj.get("choices")
    return [c for c in choices if isinstance(c, dict)] if isinstance(choices, list) else []


def _choice_text(choice: dict[str, Any], route: str, *, streamed: bool) -> str:
    if route == "completions":
        value = choice.get("text")
    else:
        message = choice.get("delta" if streamed else "message") or {}
        value = message.get("content") if isinstance(message, dict) else None
    return value if isinstance(value, str) else ""


def _append(out: CapturedOutput, index: Any, piece: str) -> None:
    if not piece:
        return
    if index in (0, None):  # `text` follows choice 0; choices beyond it (n > 1) are not kept
        out.text += piece


def _usage(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or error)[:500]
    return str(error)[:500]
