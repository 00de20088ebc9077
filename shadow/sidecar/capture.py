"""Turn the raw bytes an upstream sent into one side of a pair: every part of its answer, and its usage.

The proxy forwards bytes untouched and only keeps a copy; this module decodes that copy once, at the end.
Decoding chunk by chunk would be wrong: network chunks split SSE lines and 3-byte CJK characters.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from shadow.sidecar.answer_parts import AnswerParts, Choice, ToolCall, parse_answer


@dataclass(slots=True)
class CapturedOutput:
    """Every part of one upstream's answer, as `SideOutput` stores it: the first choice's text, tool calls,
    refusal, reasoning and logprobs, the choices beyond it, and the facts around them."""

    text: str | None = ""
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    response_id: str | None = None
    model: str | None = None
    error: str | None = None
    """Set when the body could not be understood, or the upstream answered with an error object."""
    tool_calls: list[dict[str, Any]] | None = None
    refusal: str | None = None
    reasoning: str | None = None
    choices: list[dict[str, Any]] | None = None
    """Choices beyond the first (n > 1), each with its own text, tool calls, refusal, reasoning."""
    logprobs: Any | None = None


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


def parse_output(
    body: bytes, *, content_type: str | None, content_encoding: str | None, route: str
) -> CapturedOutput:
    """Read a complete chat / completions / Responses answer, streamed (SSE) or not (`answer_parts`)."""
    try:
        raw = decode_body(body, content_encoding)
    except (ValueError, zlib.error) as exc:
        return CapturedOutput(error=f"undecodable body: {exc}")
    streamed = "text/event-stream" in (content_type or "")
    return captured_from_parts(parse_answer(raw, route=route, streamed=streamed))


def captured_from_parts(parts: AnswerParts) -> CapturedOutput:
    first = parts.first()
    out = CapturedOutput(
        text=first.text if first is not None else "",
        usage=parts.usage,
        response_id=parts.response_id,
        model=parts.model,
        error=parts.error,
    )
    if first is None:
        return out
    out.finish_reason = first.finish_reason
    out.tool_calls = [tool_call_dict(call) for call in first.tool_calls] or None
    out.refusal, out.reasoning, out.logprobs = first.refusal, first.reasoning, first.logprobs
    others = [choice_dict(choice) for choice in parts.choices[1:]]
    out.choices = others or None
    return out


def tool_call_dict(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": call.type, "name": call.name, "arguments": call.arguments}


def choice_dict(choice: Choice) -> dict[str, Any]:
    return {
        "index": choice.index,
        "text": choice.text,
        "tool_calls": [tool_call_dict(call) for call in choice.tool_calls] or None,
        "refusal": choice.refusal,
        "reasoning": choice.reasoning,
        "finish_reason": choice.finish_reason,
    }


__all__ = ["CapturedOutput", "captured_from_parts", "decode_body", "parse_output"]
