"""Prometheus metrics of the sidecar, on a registry of its own (one per process, none at import time).

Every label value comes from a closed set, whatever clients send: `ClosedLabels` turns a value outside its
set into "other", and `ExperimentLabels` keeps the configured experiment plus a bounded set of others, so
/metrics stays small however many routes, statuses or experiment names it is asked about.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shadow.budget import SKIP_REASONS
from shadow.channel import CAPTURE_DROP_REASONS
from shadow.routes import MIRRORED_ROUTES

# Latency buckets from 5 ms to 5 min: LLM calls span that whole range.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 300)

OTHER = "other"
"""The label value of everything outside a label's closed set."""

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

MetricT = TypeVar("MetricT", Counter, Gauge, Histogram)


class ClosedLabels(Generic[MetricT]):
    """A labelled metric whose label values are limited to closed sets; any other value becomes "other".

    It answers `labels(...)` like the metric it wraps (positional or keyword values), so callers keep
    writing `metrics.requests.labels(route=..., status_class=...).inc()`.
    """

    def __init__(self, metric: MetricT, allowed: Mapping[str, Iterable[str]]) -> None:
        self.metric = metric
        self.label_names = tuple(allowed)
        self._allowed = {name: frozenset(values) for name, values in allowed.items()}

    def labels(self, *values: str, **named: str) -> MetricT:
        if values:
            named = dict(zip(self.label_names, values, strict=True))
        return self.metric.labels(**{name: self.bound(name, named[name]) for name in self.label_names})

    def bound(self, name: str, value: object) -> str:
        text = str(value)
        return text if text in self._allowed[name] else OTHER


class ExperimentLabels:
    """Which experiment names get a label of their own: at most `max_names` besides the configured one.

    The configured experiment always keeps its label. Other names are kept most recently used first; a
    new name takes the place of the least recently used one only once that has been idle for `idle_s`
    (its series are then removed through `on_evict`), otherwise it is counted as "other". So a client that
    asks about thousands of names can neither grow /metrics nor churn its series faster than that.
    """

    def __init__(
        self,
        configured: str = "",
        *,
        max_names: int = 20,
        idle_s: float = 3600.0,
        max_length: int = 200,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.configured = configured
        self.max_names = max_names
        self.idle_s = idle_s
        self.max_length = max_length
        self._clock = clock
        self._last_used: OrderedDict[str, float] = OrderedDict()
        self._on_evict: list[Callable[[str], None]] = []

    def on_evict(self, callback: Callable[[str], None]) -> None:
        self._on_evict.append(callback)

    def label(self, experiment: str) -> str:
        """The label value to use for `experiment`: its own name, or "other"."""
        if not experiment or len(experiment) > self.max_length or not _is_printable_utf8(experiment):
            return OTHER
        if experiment == self.configured:
            return experiment
        if experiment == OTHER:  # a real experiment called "other" shares the label of the others
            return OTHER
        now = self._clock()
        if experiment in self._last_used:
            self._last_used[experiment] = now
            self._last_used.move_to_end(experiment)
            return experiment
        if len(self._last_used) >= self.max_names:
            oldest, used_at = next(iter(self._last_used.items()))
            if now - used_at < self.idle_s:
                return OTHER
            del self._last_used[oldest]
            for callback in self._on_evict:
                callback(oldest)
        self._last_used[experiment] = now
        return experiment

    @property
    def kept(self) -> list[str]:
        """The names with a label of their own besides the configured one, least recently used first."""
        return list(self._last_used)


def _is_printable_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, e.g. from undecodable query bytes
        return False
    return text.isprintable()


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
