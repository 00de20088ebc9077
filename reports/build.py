"""The report's data model: what the page shows, as one JSON-ready dict (`shadow report --format json`).

A straight pipeline over scored pairs: flatten (`export_table.scores_frame`) → summary and counts →
a panel per declared evaluator output against its reference (`panels.py`) → operational numbers →
per-segment rows → the worst pairs for the table (`table.py`). Every statistic uses all pairs; only the pair table is capped (`table_cap`), and it
keeps the worst pairs by each metric so nothing alarming is sampled away.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from evaluators.metrics import Metric
from reports.export_table import scores_frame
from reports.numbers import describe, rate
from reports.panels import hotspots, is_rate, metric_panels, panel_metrics, segment_rows, thresholds
from reports.table import event_name, table_rows
from shadow.core.verdicts import CheckVerdict, Verdict

SCHEMA = "shadow-report/1"
TABLE_CAP = 1000
"""Pairs embedded in the page's table (with their texts); beyond it the table holds the worst by each
metric. Statistics and charts always use every pair."""
TEXT_CAP = 6000
"""Characters kept of each prompt and answer in the table; the rest is cut with a visible notice."""


@dataclass(frozen=True, slots=True)
class ReportOptions:
    table_cap: int = TABLE_CAP
    text_cap: int = TEXT_CAP
    sample_rate: float | None = None
    """Share of users mirrored (`shadow report --sample-rate`, the proxy's `mirror_sample_rate`); pairs do
    not record it."""
    seed: int = 0


def build_report(
    records: Sequence[Mapping[str, Any]],
    gate: Mapping[str, Any],
    options: ReportOptions | None = None,
    *,
    frame: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Everything the page shows, JSON-ready. `gate` is `shadow.gate.evaluate_gate(records)`."""
    options = options or ReportOptions()
    if frame is None:
        frame = scores_frame(records)
    metrics = panel_metrics(frame)
    limits = thresholds(metrics)
    segments = segment_rows(frame, metrics)
    return clean_json(
        {
            "schema": SCHEMA,
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "summary": summary(frame, metrics, options),
            "gate": gate_view(gate),
            "metrics": metric_panels(frame, metrics),
            "operational": operational(frame),
            "segments": segments,
            "hotspots": hotspots(segments, limits),
            "thresholds": {name: list(bounds) for name, bounds in limits.items()},
            "flags": [
                "error",
                *(event_name(m) for m in metrics if is_rate(m) and m.output.check),
                "truncated",
            ],
            "pairs": table_rows(
                records, frame, metrics, cap=options.table_cap, text_cap=options.text_cap, seed=options.seed
            ),
        }
    )


# --- summary ---------------------------------------------------------------------------------------------


def scored_pairs(frame: pd.DataFrame, metrics: Sequence[Metric]) -> int:
    """Pairs whose candidate answered and has a score from any evaluator."""
    columns = [m.column() if m.pairwise else m.column("candidate") for m in metrics]
    columns = [c for c in columns if c in frame.columns]
    if not columns:
        return 0
    return int((frame["candidate_ok"].eq(True) & frame[columns].notna().any(axis=1)).sum())


def summary(frame: pd.DataFrame, metrics: Sequence[Metric], options: ReportOptions) -> dict:
    total = len(frame)
    times = frame["created_at"].dropna()
    sample_rate = options.sample_rate
    with_secondary = int(frame["secondary_ok"].notna().sum())
    return {
        "experiments": _counts(frame["experiment"]),
        "models": {side: _counts(frame[f"{side}_model"]) for side in ("baseline", "candidate", "secondary")},
        "time_range": {
            "start": times.min().isoformat() if len(times) else None,
            "end": times.max().isoformat() if len(times) else None,
        },
        "counts": {
            "pairs": total,
            "candidate_ok": int((frame["candidate_ok"].eq(True)).sum()),
            "candidate_failed": int((frame["candidate_ok"].eq(False)).sum()),
            "baseline_failed": int((frame["baseline_ok"].eq(False)).sum()),
            "scored": scored_pairs(frame, metrics),
            "with_secondary": with_secondary,
            "user_cancelled": int(frame["user_cancelled"].sum()),
            "streamed": int(frame["stream"].sum()),
            "languages": _counts(frame["language"]),
        },
        "sampling": {
            "mirror_sample_rate": sample_rate,
            "secondary_share": with_secondary / total if total else None,
            "table_pairs": min(total, options.table_cap),
            "table_cap": options.table_cap,
        },
    }


def gate_view(gate: Mapping[str, Any]) -> dict[str, Any]:
    """The gate's result with its checks ordered for reading: failures first, then critical ones."""
    order = {
        CheckVerdict.FAIL: 0,
        Verdict.INCONCLUSIVE: 1,
        CheckVerdict.NODATA: 1,
        CheckVerdict.ERROR: 1,
        CheckVerdict.PASS: 2,
    }
    checks = [dict(check) for check in gate.get("checks", []) if isinstance(check, Mapping)]
    checks.sort(
        key=lambda c: (order.get(str(c.get("verdict")), 1), not c.get("critical"), str(c.get("name")))
    )
    return {
        "verdict": str(gate.get("verdict", Verdict.INCONCLUSIVE)),
        "reason": gate.get("reason"),
        "score": gate.get("score"),
        "n_pairs": gate.get("n_pairs"),
        "checks": checks,
    }


def operational(frame: pd.DataFrame) -> dict[str, Any]:
    out = {}
    for side in ("baseline", "candidate", "secondary"):
        present = frame[f"{side}_ok"].notna()
        ok = frame[f"{side}_ok"].eq(True)
        finish = frame.loc[ok, f"{side}_finish_reason"]
        out[side] = {
            "n": int(present.sum()),
            "error_rate": rate(~ok[present]),
            "truncated_rate": rate(finish.dropna() == "length"),
            "latency_ms": describe(frame.loc[ok, f"{side}_latency_ms"]),
            "ttft_ms": describe(frame.loc[ok, f"{side}_ttft_ms"]),
            "completion_tokens": describe(frame.loc[ok, f"{side}_completion_tokens"]),
        }
    return out


# --- helpers -----------------------------------------------------------------------------------------------


def clean_json(value: Any) -> Any:
    """NaN / inf → None and numpy scalars → Python, recursively, so `json.dumps` gives strict JSON."""
    if isinstance(value, Mapping):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NaT:
        return None
    return value


def _counts(series: pd.Series) -> list[list[Any]]:
    return [[str(k), int(v)] for k, v in series.dropna().astype(str).value_counts().items()]


__all__ = [
    "ReportOptions",
    "SCHEMA",
    "TABLE_CAP",
    "TEXT_CAP",
    "build_report",
    "clean_json",
    "gate_view",
    "operational",
    "summary",
]
