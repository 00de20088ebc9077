"""The admin listener: health, Prometheus metrics and the gate API, apart from the chat traffic so that
operators can firewall it separately."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shadow.metrics import SidecarMetrics
from shadow.settings import Settings, SettingsError, split_host_port

UNAUTHENTICATED_PATHS = frozenset({"/healthz"})
"""Kubelet probes carry no token; everything else on a non-loopback admin listener needs one."""


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def admin_token_required(settings: Settings) -> bool:
    host, _port = split_host_port(settings.admin_listen, "admin_listen")
    required = not is_loopback(host)
    if required and not settings.admin_token:
        raise SettingsError(
            f"the admin listener {settings.admin_listen} is not on loopback, so it needs a bearer token: "
            "set admin_token (or SHADOW_ADMIN_TOKEN)"
        )
    return required


def bearer_token_middleware(token: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def check_token(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ):
        if request.path in UNAUTHENTICATED_PATHS:
            return await handler(request)
        given = request.headers.get("Authorization", "").encode()
        # Constant-time comparison: the token guards the gate that promotes models.
        if not hmac.compare_digest(given, expected):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        return await handler(request)

    return check_token


def create_admin_app(
    settings: Settings,
    metrics: SidecarMetrics,
    *,
    health: Callable[[], dict[str, Any]],
    before_scrape: Callable[[], None] | None = None,
) -> web.Application:
    middlewares = [bearer_token_middleware(settings.admin_token)] if admin_token_required(settings) else []
    app = web.Application(middlewares=middlewares)

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **health()})

    async def prometheus(_request: web.Request) -> web.Response:
        if before_scrape is not None:
            before_scrape()
        response = web.Response(body=generate_latest(metrics.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", prometheus)
    return app
