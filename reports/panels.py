"""What the report shows per declared evaluator output: a panel, a segment column, a severity colour.

The outputs come from the evaluators' declarations (`evaluators.metrics`): those with a gate check or a
report severity get a panel (its chart in `charts.py`), and those with a severity also a coloured column
in the segments table. Nothing here names an evaluator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from evaluators.metrics import Metric, declared_metrics
from reports.numbers import describe, rate

SIDES = ("baseline", "candidate", "secondary")
MAX_SEGMENT_TAGS = 8
MAX_SEGMENT_VALUES = 12
MIN_SEGMENT_PAIRS = 5
"""Segments with fewer pairs are still listed, but never coloured: too few to call."""
MIN_SEGMENT_NOISE = 10
"""A segment's own noise floor needs this many secondaries; below it the experiment's is used."""

OPERATIONAL_THRESHOLDS: dict[str, tuple[float, float]] = {
    "errors": (0.02, 0.05),  # candidate error rate minus the primary's
    "latency": (1.2, 1.5),  # candidate P95 latency / the primary's
}


def panel_metrics(frame: pd.DataFrame | None = None) -> tuple[Metric, ...]:
    """Outputs with a gate check or a severity; given a frame, only those that some pair has a value for
    (a report of plain chat shows no empty tool-call panels)."""
    shown = [m for m in declared_metrics() if m.output.check is not None or m.output.severity is not None]
    if frame is not None:
        shown = [m for m in shown if any(c in frame and frame[c].notna().any() for c in m.columns())]
    return tuple(shown)


def thresholds(metrics: Sequence[Metric]) -> dict[str, tuple[float, float]]:
    """(warn, bad) per coloured column; shown in the page's legend."""
    own = {m.name: m.output.severity for m in metrics if m.output.severity is not None}
    return {**own, **OPERATIONAL_THRESHOLDS}  # type: ignore[dict-item]


def is_rate(metric: Metric) -> bool:
    return metric.output.kind in ("flag", "count")


def side_flags(frame: pd.DataFrame, column: str, metric: Metric) -> pd.Series:
    """A flag or count column as events (count > 0), missing stays missing."""
    values = frame[column]
    if metric.output.kind == "count":
        numbers = pd.to_numeric(values, errors="coerce")
        return (numbers > 0).where(numbers.notna())
    return values


def metric_panels(frame: pd.DataFrame, metrics: Sequence[Metric]) -> dict[str, Any]:
    """Per panel: its label and kind, and the candidate's numbers beside the reference's."""
    panels: dict[str, Any] = {}
    for metric in metrics:
        panel: dict[str, Any] = {"label": metric.label, "kind": "rate" if is_rate(metric) else "distribution"}
        summarise = (
            (lambda c, m=metric: rate(side_flags(frame, c, m)))
            if is_rate(metric)
            else (lambda c: describe(frame[c]))
        )
        if metric.pairwise:
            panel["reference"] = "noise"
            panel["candidate"] = summarise(metric.column())
            panel["noise"] = summarise(metric.column(noise=True)) if metric.output.noise_floor else None
        else:
            panel["reference"] = "baseline"
            for side in SIDES:
                panel[side] = summarise(metric.column(side))
        panels[metric.name] = panel
    return panels


# --- segments ----------------------------------------------------------------------------------------------


def segment_dimensions(frame: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """(dimension name, group label per pair): language, lengths, language × answer length, then tags."""
    dims: list[tuple[str, pd.Series]] = [
        ("language", frame["language"].fillna("other")),
        ("answer length", frame["answer_length"].fillna("unknown")),
        ("prompt length", frame["prompt_length"].fillna("unknown")),
        (
            "language × answer length",
            frame["language"].fillna("other") + " · " + frame["answer_length"].fillna("unknown"),
        ),
    ]
    # Agent traffic: the route, requests with tools, answers after tool results; shown when they vary.
    for name, column in (
        ("route", "route"),
        ("tools offered", "tools"),
        ("after tool results", "after_tool"),
    ):
        values = frame[column].fillna("unknown").astype(str)
        if values.nunique() > 1:
            dims.append((name, values))
    tag_columns = [c for c in frame.columns if c.startswith("segment_")]
    tag_columns.sort(key=lambda c: -int(frame[c].notna().sum()))
    for column in tag_columns[:MAX_SEGMENT_TAGS]:
        values = frame[column].fillna("(none)")
        top = values.value_counts().index[:MAX_SEGMENT_VALUES]
        dims.append((column.removeprefix("segment_"), values.where(values.isin(top), "(other)")))
    return dims


def segment_rows(frame: pd.DataFrame, metrics: Sequence[Metric]) -> list[dict[str, Any]]:
    coloured = [m for m in metrics if m.output.severity is not None]
    floors = {m.name: _stat(m, frame[m.column(noise=True)]) for m in coloured if _has_noise_floor(m)}
    limits = thresholds(coloured)
    rows = []
    for dimension, labels in segment_dimensions(frame):
        for value, group in frame.groupby(labels, sort=True):
            numbers = segment_numbers(group, coloured, floors)
            numbers["severity"] = severity(numbers["gaps"], limits) if len(group) >= MIN_SEGMENT_PAIRS else {}
            rows.append({"dimension": dimension, "value": str(value), **numbers})
    return rows


def segment_numbers(
    group: pd.DataFrame, metrics: Sequence[Metric], floors: Mapping[str, float | None]
) -> dict[str, Any]:
    """The candidate's number and its reference per coloured metric, the operational pair, and the gaps
    (how much worse the candidate is, in the metric's own units) that the colours are judged on."""
    cells: dict[str, dict[str, float | None]] = {}
    gaps: dict[str, float | None] = {}
    for metric in metrics:
        candidate, reference = _segment_pair(group, metric, floors.get(metric.name))
        cells[metric.name] = {"candidate": _clean(candidate), "reference": _clean(reference)}
        gaps[metric.name] = _gap(metric, _clean(candidate), _clean(reference))
    ok_c = group["candidate_ok"].eq(True)
    ok_b = group["baseline_ok"].eq(True)
    errors_c = _clean(1 - ok_c[group["candidate_ok"].notna()].mean())
    errors_b = _clean(1 - ok_b[group["baseline_ok"].notna()].mean())
    latency_c = _clean(group.loc[ok_c, "candidate_latency_ms"].quantile(0.95))
    latency_b = _clean(group.loc[ok_b, "baseline_latency_ms"].quantile(0.95))
    cells["errors"] = {"candidate": errors_c, "reference": errors_b}
    cells["latency"] = {"candidate": latency_c, "reference": latency_b}
    gaps["errors"] = None if errors_c is None or errors_b is None else errors_c - errors_b
    gaps["latency"] = latency_c / latency_b if latency_c is not None and latency_b else None
    return {"n": len(group), "cells": cells, "gaps": gaps}


def severity(gaps: Mapping[str, float | None], limits: Mapping[str, tuple[float, float]]) -> dict[str, str]:
    """'warn' or 'bad' per metric whose candidate number is worse than its reference by the limits.

    >>> severity({"a": 0.3, "b": 0.1, "c": None}, {"a": (0.1, 0.2), "b": (0.05, 0.2), "c": (0, 1)})
    {'a': 'bad', 'b': 'warn'}
    """
    out = {}
    for name, gap in gaps.items():
        warn, bad = limits[name]
        if gap is not None and gap > bad:
            out[name] = "bad"
        elif gap is not None and gap > warn:
            out[name] = "warn"
    return out


def hotspots(
    rows: Sequence[Mapping[str, Any]], limits: Mapping[str, tuple[float, float]], limit: int = 3
) -> list[Mapping[str, Any]]:
    """The segments with the most metrics marked 'bad', the furthest past their limits first: the page's
    "where it breaks"."""
    bad = [row for row in rows if "bad" in row["severity"].values()]

    def key(row: Mapping[str, Any]) -> tuple[int, float]:
        marked = [name for name, level in row["severity"].items() if level == "bad"]
        return (-len(marked), -sum((row["gaps"][name] or 0) / (limits[name][1] or 1) for name in marked))

    return sorted(bad, key=key)[:limit]


def _has_noise_floor(metric: Metric) -> bool:
    return metric.pairwise and metric.output.noise_floor and not metric.output.magnitude


def _segment_pair(group: pd.DataFrame, metric: Metric, floor: float | None) -> tuple[Any, Any]:
    if metric.pairwise:
        candidate = _stat(metric, group[metric.column()])
        if not _has_noise_floor(metric):
            return candidate, None  # a magnitude (|median log length ratio|) is its own gap
        noise = group[metric.column(noise=True)].dropna()
        own = _stat(metric, noise) if len(noise) >= MIN_SEGMENT_NOISE else None
        return candidate, own if own is not None else floor
    if is_rate(metric):
        return (
            rate(side_flags(group, metric.column("candidate"), metric))["rate"],
            rate(side_flags(group, metric.column("baseline"), metric))["rate"],
        )
    return _stat(metric, group[metric.column("candidate")]), _stat(metric, group[metric.column("baseline")])


def _stat(metric: Metric, values: pd.Series) -> float | None:
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    if numbers.empty:
        return None
    return abs(float(numbers.median())) if metric.output.magnitude else float(numbers.mean())


def _gap(metric: Metric, candidate: float | None, reference: float | None) -> float | None:
    if candidate is None:
        return None
    if reference is None:
        return candidate if metric.output.magnitude else None
    if metric.output.worse == "lower":
        return reference - candidate
    return candidate - reference


def _clean(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


__all__ = [
    "MIN_SEGMENT_PAIRS",
    "OPERATIONAL_THRESHOLDS",
    "hotspots",
    "metric_panels",
    "panel_metrics",
    "segment_rows",
    "severity",
    "side_flags",
    "thresholds",
]
