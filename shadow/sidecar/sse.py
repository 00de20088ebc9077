"""Server-sent events: the `data` payloads of a complete stream, read once at the end (never chunk by chunk:
network chunks split SSE lines and multi-byte characters)."""

from __future__ import annotations


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
