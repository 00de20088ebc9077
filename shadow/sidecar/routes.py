"""Which user requests can be mirrored: the OpenAI paths whose answers we know how to read.

A leaf module both processes import: the one that serves users offers these to the capture worker, and the
worker maps them to the route names stored with each pair.
"""

from __future__ import annotations

MIRRORED_ROUTES = {"/chat/completions": "chat", "/completions": "completions", "/responses": "responses"}
"""Paths after the `/v1` base, and the route name stored with the pair; every other path only passes
through to the primary."""


def path_after_v1(path: str) -> str | None:
    """`/v1/chat/completions` → `/chat/completions`; None for paths outside the OpenAI base."""
    if path == "/v1" or path.startswith("/v1/"):
        return path[3:] or "/"
    return None
