"""The admin listener: health, Prometheus metrics and the gate API, apart from the chat traffic so that
operators can firewall it separately."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shadow.core.auth import bearer_matches
from shadow.core.settings import Settings, admin_token_required
from shadow.sidecar.metrics import SidecarMetrics

log = logging.getLogger(__name__)

ADMIN_MAX_BODY_BYTES = 64 * 1024
UNAUTHENTICATED_PATHS = frozenset({"/healthz"})
"""Kubelet probes carry no token; everything else on a non-loopback admin listener needs one."""


def bearer_token_middleware(token: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def check_token(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path in UNAUTHENTICATED_PATHS:
            return await handler(request)
        # Constant-time comparison: the token guards the gate that promotes models.
        if not bearer_matches(request.headers.get("Authorization", ""), token):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        return await handler(request)

    return check_token


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error of the admin listener is JSON with one sentence: unknown paths, wrong methods, bodies
    too large, and (logged with its traceback) a bug of ours."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = _HTTP_ERROR_MESSAGES.get(exc.status, exc.reason)
        response = web.json_response({"error": message}, status=exc.status)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("admin request %s %s failed", request.method, request.path)
        return web.json_response({"error": "internal error; the sidecar's log has the details"}, status=500)


_HTTP_ERROR_MESSAGES = {
    404: "no such admin endpoint; see /healthz, /metrics, /api/v1/gate and /api/v1/gate/flagger",
    405: "this method is not allowed on this admin endpoint",
    413: "the request body is too large for the admin listener",
}


def create_admin_app(
    settings: Settings,
    metrics: SidecarMetrics,
    *,
    health: Callable[[], dict[str, Any]],
    before_scrape: Callable[[], None] | None = None,
) -> web.Application:
    middlewares = [json_errors]
    if admin_token_required(settings):
        middlewares.append(bearer_token_middleware(settings.admin_token))
    # Small bodies only: the one POST here is a Flagger webhook of a few hundred bytes.
    app = web.Application(middlewares=middlewares, client_max_size=ADMIN_MAX_BODY_BYTES)

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
