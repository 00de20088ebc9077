"""What a forwarding hop may change in HTTP headers, and nothing else: the one place both directions use.

A proxy that only forwards drops the hop-by-hop headers (RFC 9110 §7.6.1 and those `Connection` lists),
recomputes framing (`Content-Length`, `Transfer-Encoding`) and `Host` for its own connection, and answers
`Expect: 100-continue` itself: the body is already on its way, so asking the primary for a 100 again would
make the user wait on an answer some servers never send. Every other header goes through as it came.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import encode_basic_auth, web
from multidict import CIMultiDict, MultiMapping
from yarl import URL

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
_REQUEST_RECOMPUTED = frozenset({"host", "content-length", "expect"})

AUTO_HEADERS_TO_SKIP = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
"""Headers aiohttp's client adds on its own when the request has none (`Accept-Encoding: gzip, deflate`
would ask the primary for compression the user never asked for); the client session skips them."""


def _connection_listed(headers: Mapping[str, str]) -> set[str]:
    values = headers.getall("Connection", []) if isinstance(headers, MultiMapping) else []
    listed = ",".join(values) or headers.get("Connection", "")
    return {token.strip().lower() for token in listed.split(",") if token.strip()}


def forward_request_headers(headers: Mapping[str, str], *, keep_length: bool = False) -> CIMultiDict[str]:
    """The user's headers for the primary. `keep_length`: the body is streamed through unread, so the
    user's `Content-Length` still describes it exactly and keeps the primary's framing the same."""
    drop = HOP_BY_HOP | _REQUEST_RECOMPUTED | _connection_listed(headers)
    if keep_length:
        drop = drop - {"content-length"}
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


def split_credentials(url: str) -> tuple[str, str | None]:
    """`http://user:pw@host/v1` → (`http://host/v1`, `Basic …`). Credentials in a configured upstream URL
    are the operator's way to reach it; sent only as an `Authorization` the request does not already
    carry (aiohttp refuses a request that has both), and never part of a URL we log or store."""
    parsed = URL(url)
    if parsed.user is None and parsed.password is None:
        return url, None
    auth = encode_basic_auth(parsed.user or "", parsed.password or "")
    return str(parsed.with_user(None).with_password(None)), auth
