"""Scored pairs as one flat, pandas-ready table: one row per pair, one column per score or fact.

`shadow export --scores` writes it for analysts; the report builds its statistics from it, so a number on
the page can be recomputed from the export. Pure apart from `write_table`.

Score columns come from the evaluators' declared outputs (`evaluators.metrics`): `<evaluator>_<key>` for
pairwise outputs (and `noise_<evaluator>_<key>` for their noise floor), `<evaluator>_<side>_<key>` for
per-text ones; a span becomes `_start` and `_end`, a list its length. Derived columns: `language`
(zh / en / other, `shadow.core.view.pair_language`),
`prompt_units` with `prompt_length` (short < 50 units, medium < 300, long), and `answer_units` with
`answer_length` (the primary's answer: short < 100 units, medium < 500, long). Segment tags become
`segment_<tag>` columns.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from evaluators.metrics import Metric, declared_metrics
from shadow.core import view
from shadow.core.errors import UserError
from shadow.core.text import count_units
from shadow.core.timeparse import parse_instant

SIDES = ("baseline", "candidate", "secondary")
PROMPT_LENGTH_BUCKETS = ((50, "short"), (300, "medium"), (math.inf, "long"))
ANSWER_LENGTH_BUCKETS = ((100, "short"), (500, "medium"), (math.inf, "long"))

FORMATS = ("parquet", "csv")


class ExportError(UserError, ValueError):
    """A table that cannot be written as asked; the message says what to change."""


def bucket_of(units: int | None, buckets: tuple[tuple[float, str], ...]) -> str | None:
    """The name of the first bucket whose upper bound exceeds `units`.

    >>> bucket_of(10, PROMPT_LENGTH_BUCKETS), bucket_of(300, PROMPT_LENGTH_BUCKETS), bucket_of(None, ())
    ('short', 'long', None)
    """
    if units is None:
        return None
    for upper, name in buckets:
        if units < upper:
            return name
    return buckets[-1][1]


def flatten_record(
    record: Mapping[str, Any], *, include_texts: bool = False, metrics: tuple[Metric, ...] | None = None
) -> dict[str, Any]:
    """One scored pair (a JSONL object) as a flat dict of scalars."""
    metrics = declared_metrics() if metrics is None else metrics
    prompt = record.get("prompt") if isinstance(record.get("prompt"), str) else ""
    baseline_text = record.get("baseline") if isinstance(record.get("baseline"), str) else ""
    length = _mapping(record.get("length"))
    prompt_units = count_units(prompt)
    answer_units = length.get("baseline_units")
    if not isinstance(answer_units, int | float):
        answer_units = count_units(baseline_text) if baseline_text else None
    row: dict[str, Any] = {
        "id": record.get("id"),
        "experiment": record.get("experiment"),
        "created_at": _time(record.get("created_at")),
        "route": record.get("route"),
        "stream": bool(record.get("stream", False)),
        "user_cancelled": bool(record.get("user_cancelled", False)),
        "user_bucket": record.get("user_bucket"),
        "language": view.pair_language(record),
        "tools": view.segment_value(record, "tools"),
        "after_tool": view.segment_value(record, "after_tool"),
        "prompt_units": prompt_units,
        "prompt_length": bucket_of(prompt_units, PROMPT_LENGTH_BUCKETS),
        "answer_units": answer_units,
        "answer_length": bucket_of(answer_units, ANSWER_LENGTH_BUCKETS),
    }
    for side in SIDES:
        usage = _mapping(record.get(f"{side}_usage"))
        row[f"{side}_ok"] = view.side_answered(record, side)
        row[f"{side}_status"] = record.get(f"{side}_status")
        row[f"{side}_latency_ms"] = _number(record.get(f"{side}_latency_ms"))
        row[f"{side}_ttft_ms"] = _number(record.get(f"{side}_ttft_ms"))
        row[f"{side}_finish_reason"] = record.get(f"{side}_finish_reason")
        row[f"{side}_error"] = _text_or_none(record.get(f"{side}_error"))
        row[f"{side}_model"] = record.get(f"{side}_model")
        row[f"{side}_prompt_tokens"] = _number(usage.get("prompt_tokens"))
        row[f"{side}_completion_tokens"] = _number(usage.get("completion_tokens"))
    for metric in metrics:
        _add_metric(row, metric, record)
    segment = _mapping(record.get("segment"))
    for key, value in segment.items():
        row[f"segment_{key}"] = None if value is None else str(value)
    if include_texts:
        row["prompt"] = prompt
        for side in SIDES:
            row[f"{side}_text"] = _text_or_none(record.get(side))
    return row


def scores_frame(records: Iterable[Mapping[str, Any]], *, include_texts: bool = False) -> pd.DataFrame:
    """All pairs as a DataFrame; score columns are float (NaN where a score is missing)."""
    metrics = declared_metrics()
    # The cyclic GC would rescan the growing list of row dicts again and again (quadratic at 100,000
    # pairs); rows hold no cycles, so it is paused while they are built.
    collecting = gc.isenabled()
    gc.disable()
    try:
        rows = [flatten_record(record, include_texts=include_texts, metrics=metrics) for record in records]
    finally:
        if collecting:
            gc.enable()
    frame = pd.DataFrame.from_records(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=list(flatten_record({}, include_texts=include_texts, metrics=metrics)))
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    numeric = {column for metric in metrics if metric.output.kind != "flag" for column in metric.columns()}
    for column in frame.columns:
        if column in numeric or column.endswith(("_ms", "_tokens", "_units")):
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return frame


def write_table(records: Iterable[Mapping[str, Any]], path: str | Path, format: str | None = None) -> Path:
    """Write the flat table as parquet or csv (by `format`, else by the file's suffix)."""
    path = Path(path)
    chosen = (format or path.suffix.lstrip(".")).lower()
    if chosen not in FORMATS:
        raise ExportError(f"unknown table format {chosen!r}; use --format parquet or --format csv")
    frame = scores_frame(records)
    path.parent.mkdir(parents=True, exist_ok=True)
    if chosen == "parquet":
        # Object columns may mix None and str (segment tags); parquet wants one type per column.
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def _add_metric(row: dict[str, Any], metric: Metric, record: Mapping[str, Any]) -> None:
    if metric.pairwise:
        places = [(metric.column(), "candidate", False)]
        if metric.output.noise_floor:
            places.append((metric.column(noise=True), "candidate", True))
    else:
        places = [(metric.column(side), side, False) for side in SIDES]
    for column, side, noise in places:
        value = metric.read(record, side, noise=noise)
        if metric.output.kind == "span":
            row[f"{column}_start"], row[f"{column}_end"] = value if value is not None else (None, None)
        else:
            row[column] = value


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float | None:
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is int:
        return float(value)
    return None  # None, bool, str, anything else


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _time(value: Any) -> datetime | None:
    return parse_instant(value)


__all__ = [
    "ANSWER_LENGTH_BUCKETS",
    "ExportError",
    "FORMATS",
    "PROMPT_LENGTH_BUCKETS",
    "bucket_of",
    "flatten_record",
    "scores_frame",
    "write_table",
]
