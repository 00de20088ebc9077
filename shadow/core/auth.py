"""Checking a bearer token: one constant-time rule for the admin listener and the gate API."""

from __future__ import annotations

import hmac


def bearer_matches(header: str, token: str) -> bool:
    """Whether an Authorization header value is `Bearer <token>`, compared in constant time.

    Header values are untrusted text: non-ASCII, or bytes that were not UTF-8 (aiohttp hands those over
    as surrogate escapes), are simply not the token. The scheme is case-insensitive (RFC 9110).
    """
    scheme, _, credentials = header.strip().partition(" ")
    try:
        given = credentials.strip().encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that no bytes decode to
        return False
    # Compare the token even when the scheme is wrong, so that the time taken says nothing about either.
    matches = hmac.compare_digest(given, token.encode("utf-8"))
    return matches and scheme.lower() == "bearer" and bool(token)
