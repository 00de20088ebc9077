"""Loopback helpers for tests: every server a test starts listens on 127.0.0.1 only."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on right now (also used as a port that refuses connections)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
