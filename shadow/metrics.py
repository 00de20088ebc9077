"""Prometheus metrics of the sidecar, on a registry of its own (one per process, none at import time)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Latency buckets from 5 ms to 5 min: LLM calls span that whole range.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 300)


@dataclass(frozen=True)
class SidecarMetrics:
    registry: CollectorRegistry
    requests: Counter
    mirrored: Counter
    dropped: Counter
    candidate_errors: Counter
    queue_depth: Gauge
    mirrors_in_flight: Gauge
    breaker_state: Gauge
    latency: Histogram
    time_to_first_byte: Histogram
    pairs_stored: Counter
    pairs_spooled: Gauge
    store_pending: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> SidecarMetrics:
        registry = registry or CollectorRegistry()
        return cls(
            registry=registry,
            requests=Counter(
                "shadow_requests",
                "User requests proxied to the primary.",
                ["route", "status_class"],
                registry=registry,
            ),
            mirrored=Counter(
                "shadow_mirrored", "Requests mirrored to the candidate.", ["route"], registry=registry
            ),
            dropped=Counter(
                "shadow_mirror_dropped",
                "Sampled requests not mirrored, by reason (queue_full, breaker_open, rate_budget, ...).",
                ["reason"],
                registry=registry,
            ),
            candidate_errors=Counter(
                "shadow_candidate_errors", "Failed candidate calls, by kind.", ["kind"], registry=registry
            ),
            queue_depth=Gauge("shadow_mirror_queue_depth", "Mirrors waiting for a slot.", registry=registry),
            mirrors_in_flight=Gauge("shadow_mirrors_in_flight", "Mirrors being sent now.", registry=registry),
            breaker_state=Gauge(
                "shadow_breaker_state",
                "Candidate circuit breaker: 0 closed, 1 open, 2 half-open.",
                registry=registry,
            ),
            latency=Histogram(
                "shadow_upstream_latency_seconds",
                "Total latency of upstream calls, by side (primary, candidate, secondary).",
                ["side"],
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            time_to_first_byte=Histogram(
                "shadow_upstream_ttfb_seconds",
                "Time to the first body byte of upstream calls, by side.",
                ["side"],
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            pairs_stored=Counter("shadow_pairs_captured", "Pairs handed to the store.", registry=registry),
            pairs_spooled=Gauge(
                "shadow_pairs_spooled", "Pairs written to the spool file so far.", registry=registry
            ),
            store_pending=Gauge("shadow_store_pending", "Pairs waiting to be written.", registry=registry),
        )
