"""Prometheus metrics of the sidecar, on a registry of its own (one per process, none at import time).

Every label value comes from a closed set, whatever clients send: `ClosedLabels` turns a value outside its
set into "other", and `ExperimentLabels` keeps the configured experiment plus a bounded set of others, so
/metrics stays small however many routes, statuses or experiment names it is asked about.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shadow.core.labels import OTHER, ClosedLabels, ExperimentLabels
from shadow.sidecar.budget import SKIP_REASONS
from shadow.sidecar.channel import CAPTURE_DROP_REASONS
from shadow.sidecar.routes import MIRRORED_ROUTES

# Latency buckets from 5 ms to 5 min: LLM calls span that whole range.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 300)

PROXY_ROUTES = tuple(MIRRORED_ROUTES)
MIRROR_ROUTES = tuple(MIRRORED_ROUTES.values())
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
SIDES = ("primary", "candidate", "secondary")
DROP_REASONS = (
    "breaker_open",
    "queue_full",
    "shutdown",
    "internal_error",
    *SKIP_REASONS,
    *CAPTURE_DROP_REASONS,
)
CANDIDATE_ERROR_KINDS = ("transport", "bad_response", "http_4xx", "http_5xx")


@dataclass(frozen=True)
class SidecarMetrics:
    registry: CollectorRegistry
    requests: ClosedLabels[Counter]
    mirrored: ClosedLabels[Counter]
    dropped: ClosedLabels[Counter]
    candidate_errors: ClosedLabels[Counter]
    queue_depth: Gauge
    mirrors_in_flight: Gauge
    breaker_state: Gauge
    latency: ClosedLabels[Histogram]
    time_to_first_byte: ClosedLabels[Histogram]
    pairs_stored: Counter
    pairs_spooled: Gauge
    store_pending: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> SidecarMetrics:
        registry = registry or CollectorRegistry()
        return cls(
            registry=registry,
            requests=ClosedLabels(
                Counter(
                    "shadow_requests",
                    "User requests proxied to the primary.",
                    ["route", "status_class"],
                    registry=registry,
                ),
                {"route": PROXY_ROUTES, "status_class": STATUS_CLASSES},
            ),
            mirrored=ClosedLabels(
                Counter(
                    "shadow_mirrored", "Requests mirrored to the candidate.", ["route"], registry=registry
                ),
                {"route": MIRROR_ROUTES},
            ),
            dropped=ClosedLabels(
                Counter(
                    "shadow_mirror_dropped",
                    "Sampled requests not mirrored, by reason (queue_full, breaker_open, rate_budget, ...).",
                    ["reason"],
                    registry=registry,
                ),
                {"reason": DROP_REASONS},
            ),
            candidate_errors=ClosedLabels(
                Counter(
                    "shadow_candidate_errors", "Failed candidate calls, by kind.", ["kind"], registry=registry
                ),
                {"kind": CANDIDATE_ERROR_KINDS},
            ),
            queue_depth=Gauge("shadow_mirror_queue_depth", "Mirrors waiting for a slot.", registry=registry),
            mirrors_in_flight=Gauge("shadow_mirrors_in_flight", "Mirrors being sent now.", registry=registry),
            breaker_state=Gauge(
                "shadow_breaker_state",
                "Candidate circuit breaker: 0 closed, 1 open, 2 half-open.",
                registry=registry,
            ),
            latency=ClosedLabels(
                Histogram(
                    "shadow_upstream_latency_seconds",
                    "Total latency of upstream calls, by side (primary, candidate, secondary).",
                    ["side"],
                    buckets=_LATENCY_BUCKETS,
                    registry=registry,
                ),
                {"side": SIDES},
            ),
            time_to_first_byte=ClosedLabels(
                Histogram(
                    "shadow_upstream_ttfb_seconds",
                    "Time to the first body byte of upstream calls, by side.",
                    ["side"],
                    buckets=_LATENCY_BUCKETS,
                    registry=registry,
                ),
                {"side": SIDES},
            ),
            pairs_stored=Counter("shadow_pairs_captured", "Pairs handed to the store.", registry=registry),
            pairs_spooled=Gauge(
                "shadow_pairs_spooled", "Pairs written to the spool file so far.", registry=registry
            ),
            store_pending=Gauge("shadow_store_pending", "Pairs waiting to be written.", registry=registry),
        )


__all__ = [
    "OTHER",
    "ClosedLabels",
    "ExperimentLabels",
    "SidecarMetrics",
]
