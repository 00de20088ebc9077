"""Reading scored pairs into the plain lists the gate's checks test (`Sample`), through the one view.

Operational numbers (errors, failures, latency) come from `shadow.core.view`; quality numbers from the
evaluators' declared outputs (`evaluators.metrics`), so a new evaluator's output is collected without a
line here. A failed candidate has no scores; the operational checks count it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from evaluators.metrics import Metric
from shadow.core import view

SIDES = ("baseline", "candidate", "secondary")


@dataclass(slots=True)
class MetricSample:
    """One declared output's values. Pairwise outputs fill `candidate` (vs the primary) and `noise` (the
    primary vs its secondary); per-text outputs fill `candidate` and `baseline` as pairs of the same
    prompts (both sides judged), and `secondary` where there is one."""

    metric: Metric
    candidate: list[Any] = field(default_factory=list)
    baseline: list[Any] = field(default_factory=list)
    secondary: list[Any] = field(default_factory=list)
    noise: list[Any] = field(default_factory=list)
    details: Counter[str] = field(default_factory=Counter)
    """For event outputs that declare a `detail` key: how often each detail came with the candidate's
    event (in the pairs its `candidate` list counts)."""
    scored: bool = False
    """Whether the evaluator ran on any answered pair of the window (`scored_by`, or a result)."""
    abstained: int = 0
    """Answered pairs the evaluator ran on (`scored_by`) and left without a result for the candidate: a
    text evaluator on a tool-only turn or a refusal."""


@dataclass(slots=True)
class Sample:
    quality: dict[str, MetricSample] = field(default_factory=dict)
    """By check name."""
    candidate_errors: list[bool] = field(default_factory=list)
    candidate_error_kinds: Counter[str] = field(default_factory=Counter)
    candidate_failures: list[bool] = field(default_factory=list)
    baseline_failures: list[bool] = field(default_factory=list)
    secondary_failures: list[bool] = field(default_factory=list)
    latency: dict[str, list[float]] = field(default_factory=lambda: {side: [] for side in SIDES})
    ttft: dict[str, list[float]] = field(default_factory=lambda: {side: [] for side in SIDES})


def is_event(metric: Metric) -> bool:
    """Flags and counts are judged as rates of events; numbers as distributions."""
    return metric.output.kind in ("flag", "count")


def collect(records: Iterable[dict[str, Any]], metrics: Sequence[Metric]) -> Sample:
    sample = Sample(quality={m.output.check.name: MetricSample(m) for m in metrics if m.output.check})
    for record in records:
        if not view.has_side(record, "candidate"):
            continue
        _collect_operational(record, sample)
        if not view.side_answered(record, "candidate"):
            continue
        scored_by = record.get("scored_by")
        scored_by = scored_by if isinstance(scored_by, dict) else {}
        for values in sample.quality.values():
            name = values.metric.evaluator
            values.scored = values.scored or name in scored_by or record.get(name) is not None
            if name in scored_by and _abstained(record, values.metric):
                values.abstained += 1
            if values.metric.pairwise:
                _collect_pairwise(record, values)
            else:
                _collect_per_text(record, values)
    return sample


def _abstained(record: dict[str, Any], metric: Metric) -> bool:
    result = record.get(metric.evaluator)
    if metric.pairwise:
        return result is None
    return not isinstance(result, dict) or result.get("candidate") is None


def _read(metric: Metric, record: dict[str, Any], side: str, *, noise: bool = False) -> Any:
    if is_event(metric):
        return metric.flag(record, side, noise=noise)
    return metric.number(record, side, noise=noise)


def _collect_pairwise(record: dict[str, Any], values: MetricSample) -> None:
    value = _read(values.metric, record, "candidate")
    if value is not None:
        values.candidate.append(value)
        if value is True:
            _count_detail(values, record, "candidate")
    if values.metric.output.noise_floor:
        floor = _read(values.metric, record, "candidate", noise=True)
        if floor is not None:
            values.noise.append(floor)


def _collect_per_text(record: dict[str, Any], values: MetricSample) -> None:
    metric = values.metric
    # Both sides must be judged (and judgeable) so that the comparison is between answers to the same
    # prompts: a coherence score exists only for long answers, and the candidate's may be short.
    if not (metric.applies(record, "baseline") and metric.applies(record, "candidate")):
        return
    base, cand = _read(metric, record, "baseline"), _read(metric, record, "candidate")
    if base is None or cand is None:
        return
    values.baseline.append(base)
    values.candidate.append(cand)
    if cand is True:
        _count_detail(values, record, "candidate")
    if metric.applies(record, "secondary"):
        secondary = _read(metric, record, "secondary")
        if secondary is not None:
            values.secondary.append(secondary)


def _count_detail(values: MetricSample, record: dict[str, Any], side: str) -> None:
    """Count the declared detail string that sits beside a flagged output (`Output.detail`)."""
    key = values.metric.output.detail
    if key is None:
        return
    container = record.get(values.metric.evaluator)
    if not values.metric.pairwise and isinstance(container, dict):
        container = container.get(side)
    detail = container.get(key) if isinstance(container, dict) else None
    if isinstance(detail, str) and detail:
        values.details[detail[:120]] += 1


def _collect_operational(record: dict[str, Any], sample: Sample) -> None:
    error = view.side_error(record, "candidate")
    sample.candidate_errors.append(error)
    if error:
        sample.candidate_error_kinds[view.error_kind(record, "candidate")] += 1
    sample.candidate_failures.append(not view.side_answered(record, "candidate"))
    sample.baseline_failures.append(not view.side_answered(record, "baseline"))
    sides = ["baseline", "candidate"]
    secondary = view.side_answered(record, "secondary")
    if secondary is not None:
        sides.append("secondary")
        sample.secondary_failures.append(not secondary)
    for side in sides:
        if not view.side_answered(record, side):
            continue
        latency, ttft = record.get(f"{side}_latency_ms"), record.get(f"{side}_ttft_ms")
        if _number(latency):
            sample.latency[side].append(float(latency))
        if _number(ttft):
            sample.ttft[side].append(float(ttft))


def _number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and value == value
        and abs(value) != float("inf")
    )


__all__ = ["MetricSample", "Sample", "collect", "is_event"]
