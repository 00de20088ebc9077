"""The gate on the sidecar's admin listener, for Argo Rollouts (web metric) and Flagger (webhook).

- `GET /api/v1/gate?experiment=NAME[&since=15m][&last=N][&segment=lang=zh]` always answers 200 with
  `{"data": {...the gate object...}}`: Argo Rollouts counts a non-2xx answer as an *error*, not a failure,
  so even "cannot read the pairs" or a malformed query is an `inconclusive` verdict with the reason.
- `POST /api/v1/gate/flagger`: a Flagger webhook. The experiment is `metadata.experiment` of the body,
  else the canary's `name`. 200 when the verdict is pass, 412 when it is fail, 409 when inconclusive; the
  body carries the verdict and the reason. A body that is not a webhook is a 400 with one sentence.
- Both need `Authorization: Bearer <admin token>` when `require_token` (the admin listener is not on
  loopback). Gauges: `shadow_gate_score`, `shadow_gate_verdict` (1 for the current verdict),
  `shadow_gate_pairs`, `shadow_gate_last_run_timestamp_seconds`, all labelled by experiment: the
  configured experiment and a bounded set of others (`shadow.sidecar.metrics.ExperimentLabels`), the rest "other".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any

import prometheus_client
from aiohttp import web

from shadow.core.auth import bearer_matches
from shadow.core.labels import ExperimentLabels
from shadow.core.timeparse import MAX_DURATION, parse_duration
from shadow.core.verdicts import Verdict
from shadow.gate.command import parse_segments
from shadow.gate.judge import evaluate_gate
from shadow.gate.policy import GatePolicy

RecordLoader = Callable[[str], Awaitable[Iterable[dict[str, Any]]] | Iterable[dict[str, Any]]]
VERDICTS = tuple(Verdict)
FLAGGER_STATUS = {Verdict.PASS: 200, Verdict.FAIL: 412, Verdict.INCONCLUSIVE: 409}

MAX_EXPERIMENT_CHARS = 200
MAX_SEGMENT_TAGS = 20
# `now - since` must stay a date; a century covers every real window.
WINDOW_OPTIONS = ("since", "last", "segment")


class GateRequestError(ValueError):
    """A query or webhook the gate cannot read; the message is one sentence that says what to send."""


class GateMetrics:
    def __init__(
        self, registry: prometheus_client.CollectorRegistry, experiments: ExperimentLabels | None = None
    ) -> None:
        self.experiments = experiments or ExperimentLabels()
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
        self.experiments.on_evict(self.forget)

    def record(self, experiment: str, result: dict[str, Any]) -> None:
        label = self.experiments.label(experiment)
        self.score.labels(label).set(result["score"])
        for verdict in VERDICTS:
            self.verdict.labels(label, verdict).set(1.0 if result["verdict"] == verdict else 0.0)
        self.pairs.labels(label).set(result["n_pairs"])
        self.last_run.labels(label).set(time.time())

    def forget(self, label: str) -> None:
        """Remove an experiment's series (its label was handed to another name)."""
        with contextlib.suppress(KeyError):
            self.score.remove(label)
            self.pairs.remove(label)
            self.last_run.remove(label)
            for verdict in VERDICTS:
                self.verdict.remove(label, verdict)


def add_gate_routes(
    app: web.Application,
    *,
    load_records: RecordLoader,
    policy: GatePolicy,
    registry: prometheus_client.CollectorRegistry,
    admin_token: str | None,
    require_token: bool,
    configured_experiment: str = "",
    max_experiment_labels: int = 20,
) -> None:
    """Register `GET /api/v1/gate` and `POST /api/v1/gate/flagger` on the admin app.

    `load_records(experiment)` returns the experiment's scored pairs (the dicts of a scores file), sync or
    async; a sync loader runs in a worker thread (`asyncio.to_thread`) so that the event loop never waits
    on the database. `configured_experiment` always has its own label in the gauges; at most
    `max_experiment_labels` other experiment names do, the rest are counted as "other".
    """
    if require_token and not admin_token:
        raise ValueError("the gate routes need an admin token when the admin listener is not on loopback")
    metrics = GateMetrics(registry, ExperimentLabels(configured_experiment, max_names=max_experiment_labels))

    def authorised(request: web.Request) -> bool:
        return not require_token or bearer_matches(
            request.headers.get("Authorization", ""), admin_token or ""
        )

    async def judge(experiment: str, options: Mapping[str, str]) -> dict[str, Any]:
        try:
            check_experiment(experiment)
            since, last, segment = parse_window(options)
        except GateRequestError as exc:
            return _inconclusive(experiment, str(exc))
        try:
            records = await load(load_records, experiment)
        except Exception as exc:  # the answer must stay a 200 with a reason, never a 500
            return _inconclusive(experiment, f"could not load the scored pairs: {type(exc).__name__}: {exc}")
        try:
            result = await asyncio.to_thread(
                evaluate_gate, records, policy, segment=segment, since=since, last=last, experiment=experiment
            )
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
        options = {key: request.query.get(key, "") for key in WINDOW_OPTIONS}
        result = await judge(experiment, options)
        return web.json_response({"data": _reportable(result)})

    async def flagger(request: web.Request) -> web.Response:
        if not authorised(request):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        try:
            experiment, options = read_webhook(await request.read())
            check_experiment(experiment)
        except GateRequestError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except web.HTTPRequestEntityTooLarge:
            return web.json_response(
                {"error": "the webhook body is too large; Flagger sends a few hundred bytes"}, status=413
            )
        result = _reportable(await judge(experiment, options))
        answer = {"verdict": result["verdict"], "score": result["score"], "reason": result["reason"]}
        return web.json_response(answer, status=FLAGGER_STATUS[result["verdict"]])

    app.router.add_get("/api/v1/gate", gate)
    app.router.add_post("/api/v1/gate/flagger", flagger)


async def load(load_records: RecordLoader, experiment: str) -> list[dict[str, Any]]:
    """Call the loader without blocking the event loop: an async one is awaited, a sync one (and the
    iteration over what it returns) runs in a worker thread."""
    if _is_async(load_records):
        records = await load_records(experiment)  # type: ignore[misc]
    else:
        records = await asyncio.to_thread(_load_sync, load_records, experiment)
        if inspect.isawaitable(records):  # a plain function that hands back a coroutine
            records = await records
    return records if isinstance(records, list) else list(records)


def _load_sync(load_records: RecordLoader, experiment: str) -> Any:
    records = load_records(experiment)
    if inspect.isawaitable(records) or isinstance(records, list):
        return records
    return list(records)  # a lazy query runs here, off the event loop


def _is_async(function: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 - a callable object with an async __call__
    )


def check_experiment(experiment: str) -> None:
    if len(experiment) > MAX_EXPERIMENT_CHARS:
        raise GateRequestError(
            f"the experiment name is {len(experiment)} characters long; names have at most {MAX_EXPERIMENT_CHARS}"
        )
    try:
        experiment.encode("utf-8")
    except UnicodeEncodeError:
        raise GateRequestError("the experiment name is not valid UTF-8 text") from None
    if not experiment.isprintable():
        raise GateRequestError("the experiment name contains control characters")


def parse_window(options: Mapping[str, str]) -> tuple[timedelta | None, int | None, dict[str, str] | None]:
    """`since`, `last` and `segment` of a gate query; a GateRequestError says what was wrong."""
    since_text = options.get("since") or ""
    last_text = options.get("last") or ""
    segment_text = options.get("segment") or ""
    since = None
    if since_text:
        try:
            since = parse_duration(since_text)
        except (argparse.ArgumentTypeError, ValueError, OverflowError):
            raise GateRequestError(
                f"since={since_text[:40]!r} is not a duration; use e.g. 15m, 2h or 7d"
            ) from None
        if since > MAX_DURATION:
            raise GateRequestError(
                f"since={since_text[:40]!r} is longer than a century; use e.g. 15m, 2h or 7d"
            )
    last = None
    if last_text:
        text = last_text.strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 12 and int(text) >= 1):
            raise GateRequestError(f"last={last_text[:40]!r} must be a whole number of pairs, at least 1")
        last = int(text)
    segment = None
    if segment_text:
        items = [item for item in segment_text.split(",") if item.strip()]
        if len(items) > MAX_SEGMENT_TAGS:
            raise GateRequestError(f"segment has {len(items)} tags; give at most {MAX_SEGMENT_TAGS}")
        try:
            segment = parse_segments(items) or None
        except ValueError as exc:
            raise GateRequestError(
                f"segment={segment_text[:60]!r} must be KEY=VALUE[,KEY=VALUE], e.g. lang=zh"
            ) from exc
    return since, last, segment


def read_webhook(raw: bytes) -> tuple[str, dict[str, str]]:
    """The experiment and the window options of a Flagger webhook body."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise GateRequestError("the webhook body must be a JSON object, as Flagger sends") from None
    if not isinstance(body, dict):
        raise GateRequestError("the webhook body must be a JSON object, as Flagger sends")
    metadata = body.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise GateRequestError('metadata must be an object of strings, e.g. {"experiment": "b-vs-a"}')
    options: dict[str, str] = {}
    for key in ("experiment", *WINDOW_OPTIONS):
        value = metadata.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise GateRequestError(f'metadata.{key} must be a string, e.g. "15m" or "b-vs-a"')
        options[key] = str(value)
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        raise GateRequestError("name must be a string (the canary's name)")
    experiment = options.pop("experiment", "") or name or ""
    if not experiment:
        raise GateRequestError("no experiment: set metadata.experiment in the webhook")
    return experiment, options


def _reportable(result: dict[str, Any]) -> dict[str, Any]:
    """A long or undecodable experiment name is not echoed back whole."""
    experiment = result.get("experiment")
    if isinstance(experiment, str) and len(experiment) > MAX_EXPERIMENT_CHARS:
        result = {**result, "experiment": experiment[:MAX_EXPERIMENT_CHARS] + "…"}
    return result


def _inconclusive(experiment: str, reason: str) -> dict[str, Any]:
    return {
        "verdict": Verdict.INCONCLUSIVE,
        "score": 0.0,
        "n_pairs": 0,
        "reason": reason,
        "experiment": experiment,
        "checks": [],
    }


__all__ = [
    "FLAGGER_STATUS",
    "GateMetrics",
    "GateRequestError",
    "add_gate_routes",
    "parse_window",
    "read_webhook",
]
