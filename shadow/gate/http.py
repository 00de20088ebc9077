"""The gate on the sidecar's admin listener, for Argo Rollouts (web metric) and Flagger (webhook).

- `GET /api/v1/gate?experiment=NAME[&since=15m][&last=N][&segment=lang=zh]` always answers 200 with
  `{"data": {...the gate object...}}`: Argo Rollouts counts a non-2xx answer as an *error*, not a failure,
  so even "cannot read the pairs" is an `inconclusive` verdict with the reason.
- `POST /api/v1/gate/flagger`: a Flagger webhook. The experiment is `metadata.experiment` of the body,
  else the canary's `name`. 200 when the verdict is pass, 412 when it is fail, 409 when inconclusive; the
  body carries the verdict and the reason.
- Both need `Authorization: Bearer <admin token>` when `require_token` (the admin listener is not on
  loopback). Gauges: `shadow_gate_score`, `shadow_gate_verdict` (1 for the current verdict),
  `shadow_gate_pairs`, `shadow_gate_last_run_timestamp_seconds`, all labelled by experiment.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import inspect
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import prometheus_client
from aiohttp import web

from shadow.gate.command import parse_duration, parse_segments
from shadow.gate.judge import evaluate_gate
from shadow.gate.policy import GatePolicy

RecordLoader = Callable[[str], Awaitable[list[dict[str, Any]]] | list[dict[str, Any]]]
VERDICTS = ("pass", "fail", "inconclusive")
FLAGGER_STATUS = {"pass": 200, "fail": 412, "inconclusive": 409}


class GateMetrics:
    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self.score = prometheus_client.Gauge(
            "shadow_gate_score",
            "Weighted score of the latest gate run (0-100).",
            ["experiment"],
            registry=registry,
        )
        self.verdict = prometheus_client.Gauge(
            "shadow_gate_verdict",
            "1 for the verdict of the latest gate run, 0 for the others.",
            ["experiment", "verdict"],
            registry=registry,
        )
        self.pairs = prometheus_client.Gauge(
            "shadow_gate_pairs", "Pairs judged by the latest gate run.", ["experiment"], registry=registry
        )
        self.last_run = prometheus_client.Gauge(
            "shadow_gate_last_run_timestamp_seconds",
            "When the gate last ran.",
            ["experiment"],
            registry=registry,
        )

    def record(self, experiment: str, result: dict[str, Any]) -> None:
        self.score.labels(experiment).set(result["score"])
        for verdict in VERDICTS:
            self.verdict.labels(experiment, verdict).set(1.0 if result["verdict"] == verdict else 0.0)
        self.pairs.labels(experiment).set(result["n_pairs"])
        self.last_run.labels(experiment).set(time.time())


def add_gate_routes(
    app: web.Application,
    *,
    load_records: RecordLoader,
    policy: GatePolicy,
    registry: prometheus_client.CollectorRegistry,
    admin_token: str | None,
    require_token: bool,
) -> None:
    """Register `GET /api/v1/gate` and `POST /api/v1/gate/flagger` on the admin app.

    `load_records(experiment)` returns the experiment's scored pairs (the dicts of a scores file), sync or
    async; a sync loader runs in the default executor so that the event loop never waits on the database.
    """
    if require_token and not admin_token:
        raise ValueError("the gate routes need an admin token when the admin listener is not on loopback")
    metrics = GateMetrics(registry)
    expected = f"Bearer {admin_token}".encode() if admin_token else b""

    def authorised(request: web.Request) -> bool:
        if not require_token:
            return True
        return hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected)

    async def judge(experiment: str, options: dict[str, str]) -> dict[str, Any]:
        try:
            since = parse_duration(options["since"]) if options.get("since") else None
            last = int(options["last"]) if options.get("last") else None
            segment = parse_segments([s for s in options.get("segment", "").split(",") if s]) or None
        except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
            return _inconclusive(experiment, f"bad query parameter: {exc}")
        try:
            loaded = load_records(experiment)
            records = await loaded if inspect.isawaitable(loaded) else loaded
        except Exception as exc:  # the answer must stay a 200 with a reason, never a 500
            return _inconclusive(experiment, f"could not load the scored pairs: {type(exc).__name__}: {exc}")
        loop = asyncio.get_running_loop()
        evaluate = partial(
            evaluate_gate, records, policy, segment=segment, since=since, last=last, experiment=experiment
        )
        try:
            result = await loop.run_in_executor(None, evaluate)
        except Exception as exc:  # a bug must not turn into a 500 that Argo reads as a broken provider
            return _inconclusive(experiment, f"the gate could not be computed: {type(exc).__name__}: {exc}")
        metrics.record(experiment, result)
        return result

    async def gate(request: web.Request) -> web.Response:
        if not authorised(request):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        experiment = request.query.get("experiment", "")
        if not experiment:
            return web.json_response({"data": _inconclusive("", "give the experiment: ?experiment=NAME")})
        options = {key: request.query.get(key, "") for key in ("since", "last", "segment")}
        return web.json_response({"data": await judge(experiment, options)})

    async def flagger(request: web.Request) -> web.Response:
        if not authorised(request):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "the webhook body must be JSON"}, status=400)
        metadata = body.get("metadata") or {} if isinstance(body, dict) else {}
        experiment = str(
            metadata.get("experiment") or (body.get("name") if isinstance(body, dict) else "") or ""
        )
        if not experiment:
            return web.json_response(
                {"error": "no experiment: set metadata.experiment in the webhook"}, status=400
            )
        options = {key: str(metadata.get(key, "")) for key in ("since", "last", "segment")}
        result = await judge(experiment, options)
        answer = {"verdict": result["verdict"], "score": result["score"], "reason": result["reason"]}
        return web.json_response(answer, status=FLAGGER_STATUS[result["verdict"]])

    app.router.add_get("/api/v1/gate", gate)
    app.router.add_post("/api/v1/gate/flagger", flagger)


def _inconclusive(experiment: str, reason: str) -> dict[str, Any]:
    return {
        "verdict": "inconclusive",
        "score": 0.0,
        "n_pairs": 0,
        "reason": reason,
        "experiment": experiment,
        "checks": [],
    }


__all__ = ["FLAGGER_STATUS", "GateMetrics", "add_gate_routes"]
