"""Label values from closed sets: whatever clients send, a Prometheus metric keeps a bounded set of series.

`ClosedLabels` turns a value outside its set into "other"; `ExperimentLabels` keeps the configured experiment
plus a bounded set of others. Both the sidecar's metrics and the gate API's use them.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Generic, TypeVar

from prometheus_client import Counter, Gauge, Histogram

OTHER = "other"
"""The label value of everything outside a label's closed set."""

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
