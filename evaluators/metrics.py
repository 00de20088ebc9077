"""The declared outputs of the registered evaluators, and the one way to read them from a scored pair.

A `Metric` is one evaluator's `Output` placed in a scores record: pairwise outputs sit at
``record[evaluator][key]`` (and the primary-vs-secondary noise floor at ``record["noise"][evaluator][key]``),
per-text outputs at ``record[evaluator][side][key]``. The gate's checks, `shadow export --scores` columns
and the report's panels all read through `Metric.read`, so they cannot disagree on where a number is or
what a missing one means.

>>> from evaluators.base import Output
>>> loop = Metric("loop", False, Output("flag", "loop rate", kind="flag"))
>>> loop.read({"loop": {"candidate": {"flag": True}}}, "candidate"), loop.column("baseline")
(True, 'loop_baseline_flag')
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from evaluators.base import Output
from evaluators.registry import known_names, load_evaluator_class

TEXT_SIDES = ("baseline", "candidate", "secondary")


@dataclass(frozen=True, slots=True)
class Metric:
    evaluator: str
    pairwise: bool
    output: Output

    @property
    def name(self) -> str:
        """`<evaluator>_<key>`: the stem of its columns and the key of its report panel."""
        return f"{self.evaluator}_{self.output.key}"

    @property
    def label(self) -> str:
        return self.output.label

    def column(self, side: str | None = None, *, noise: bool = False) -> str:
        """The export column: `semantic_divergence`, `noise_semantic_divergence`, `loop_candidate_flag`."""
        if self.pairwise:
            return f"noise_{self.name}" if noise else self.name
        return f"{self.evaluator}_{side or 'candidate'}_{self.output.key}"

    def columns(self) -> list[str]:
        """Every column this output has in the flat table (a span has a start and an end)."""
        if self.pairwise:
            bases = [self.column()] + ([self.column(noise=True)] if self.output.noise_floor else [])
        else:
            bases = [self.column(side) for side in TEXT_SIDES]
        if self.output.kind == "span":
            return [f"{base}_{end}" for base in bases for end in ("start", "end")]
        return bases

    def raw(self, record: Mapping[str, Any], side: str = "candidate", *, noise: bool = False) -> Any:
        source = record.get("noise") if noise else record
        value = _mapping(_mapping(source).get(self.evaluator))
        if not self.pairwise:
            value = _mapping(value.get(side))
        return value.get(self.output.key)

    def read(self, record: Mapping[str, Any], side: str = "candidate", *, noise: bool = False) -> Any:
        """The typed value, or None when it is missing or not of the declared kind.

        value: a finite float; flag: a bool (a count reads as "has at least one"); count: an int;
        span: a (start, end) tuple of ints.
        """
        return typed(self.output, self.raw(record, side, noise=noise))

    def flag(self, record: Mapping[str, Any], side: str = "candidate", *, noise: bool = False) -> bool | None:
        """The output as an event: a flag, or a count above zero."""
        value = self.read(record, side, noise=noise)
        if self.output.kind == "count":
            return None if value is None else value > 0
        return value if isinstance(value, bool) else None

    def number(
        self, record: Mapping[str, Any], side: str = "candidate", *, noise: bool = False
    ) -> float | None:
        """A number to compare, |value| for `magnitude` outputs; counts and flags as numbers too."""
        value = self.read(record, side, noise=noise)
        if value is None or isinstance(value, tuple):
            return None
        number = float(value)
        return abs(number) if self.output.magnitude else number

    def applies(self, record: Mapping[str, Any], side: str) -> bool:
        """For per-text outputs with an `applicable` key: whether that side's text is one it judges."""
        if self.output.applicable is None:
            return True
        container = _mapping(_mapping(record.get(self.evaluator)).get(side))
        return container.get(self.output.applicable) is True


def typed(output: Output, value: Any) -> Any:
    kind = output.kind
    if kind == "value":
        return float(value) if _finite(value) else None
    if kind == "flag":
        return value if isinstance(value, bool) else None
    if kind == "count":
        if isinstance(value, list):
            return len(value)
        return int(value) if _finite(value) and not isinstance(value, float) else None
    if isinstance(value, list | tuple) and len(value) == 2 and all(_finite(v) for v in value):
        return (int(value[0]), int(value[1]))
    return None


def declared_metrics(names: Iterable[str] | None = None) -> tuple[Metric, ...]:
    """The outputs of the registered evaluators (or of `names`), in registry order."""
    metrics = []
    for name in known_names() if names is None else names:
        cls = load_evaluator_class(name)
        metrics.extend(Metric(cls.name, bool(cls.pairwise), output) for output in cls.outputs)
    return tuple(metrics)


def checked_metrics(names: Iterable[str] | None = None) -> tuple[Metric, ...]:
    """The outputs the gate judges by default (those that declare a `GateCheck`)."""
    return tuple(metric for metric in declared_metrics(names) if metric.output.check is not None)


def score_keys(names: Iterable[str] | None = None) -> frozenset[str]:
    """Top-level keys that scoring adds to a pair: one per evaluator, plus `noise` and `scored_by`."""
    evaluators = {load_evaluator_class(name).name for name in (known_names() if names is None else names)}
    return frozenset(evaluators | {"noise", "scored_by"})


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


__all__ = ["Metric", "TEXT_SIDES", "checked_metrics", "declared_metrics", "score_keys", "typed"]
