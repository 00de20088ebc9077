"""The report's data model: what the page shows, as one JSON-ready dict (`shadow report --format json`).

A straight pipeline over scored pairs: flatten (`export_table.scores_frame`) → summary and counts →
per-metric distributions against the noise floor → operational numbers → per-segment rows → the worst
pairs for the table. Every statistic uses all pairs; only the pair table is capped (`table_cap`), and it
keeps the worst pairs by each metric so nothing alarming is sampled away.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from reports.export_table import scores_frame
from shadow.core.text import sentence_spans

SCHEMA = "shadow-report/1"
TABLE_CAP = 1000
"""Pairs embedded in the page's table (with their texts); beyond it the table holds the worst by each
metric. Statistics and charts always use every pair."""
TEXT_CAP = 6000
"""Characters kept of each prompt and answer in the table; the rest is cut with a visible notice."""
MAX_SEGMENT_TAGS = 8
MAX_SEGMENT_VALUES = 12
MIN_SEGMENT_PAIRS = 5
"""Segments with fewer pairs are still listed, but never coloured: too few to call."""

# Severity of a segment's number against its reference: (warn, bad). Shown in the page's legend.
THRESHOLDS: dict[str, tuple[float, float]] = {
    "divergence": (0.05, 0.10),  # candidate mean divergence minus the noise floor's
    "length": (0.20, 0.40),  # |median log length ratio|
    "loop": (0.02, 0.05),  # candidate loop rate minus the primary's
    "coherence": (0.05, 0.10),  # primary mean coherence minus the candidate's
    "errors": (0.02, 0.05),  # candidate error rate minus the primary's
    "latency": (1.2, 1.5),  # candidate P95 latency / the primary's
}


@dataclass(frozen=True, slots=True)
class ReportOptions:
    table_cap: int = TABLE_CAP
    text_cap: int = TEXT_CAP
    sample_rate: float | None = None
    """Share of users mirrored (the proxy's `sample_rate`); shown when known."""
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
    segments = segment_rows(frame)
    return clean_json(
        {
            "schema": SCHEMA,
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "summary": summary(frame, records, options),
            "gate": gate_view(gate),
            "metrics": metric_summaries(frame),
            "operational": operational(frame),
            "segments": segments,
            "hotspots": hotspots(segments),
            "thresholds": {name: list(bounds) for name, bounds in THRESHOLDS.items()},
            "pairs": table_rows(records, frame, options),
        }
    )


# --- summary ---------------------------------------------------------------------------------------------


def summary(frame: pd.DataFrame, records: Sequence[Mapping[str, Any]], options: ReportOptions) -> dict:
    total = len(frame)
    times = frame["created_at"].dropna()
    sample_rate = options.sample_rate
    if sample_rate is None:
        rates = {
            r.get("sample_rate") for r in records[:1000] if isinstance(r.get("sample_rate"), int | float)
        }
        sample_rate = rates.pop() if len(rates) == 1 else None
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
            "scored": int(frame["semantic_divergence"].notna().sum()),
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
    order = {"fail": 0, "inconclusive": 1, "nodata": 1, "error": 1, "pass": 2}
    checks = [dict(check) for check in gate.get("checks", []) if isinstance(check, Mapping)]
    checks.sort(
        key=lambda c: (order.get(str(c.get("verdict")), 1), not c.get("critical"), str(c.get("name")))
    )
    return {
        "verdict": str(gate.get("verdict", "inconclusive")),
        "reason": gate.get("reason"),
        "score": gate.get("score"),
        "n_pairs": gate.get("n_pairs"),
        "checks": checks,
    }


# --- metrics -----------------------------------------------------------------------------------------------


def describe(values: pd.Series) -> dict[str, Any]:
    """n, mean and percentiles of the non-missing values.

    >>> describe(pd.Series([1.0, 2.0, 3.0, None]))["p50"]
    2.0
    """
    values = values.dropna().to_numpy(dtype=float)
    if values.size == 0:
        return {"n": 0, "mean": None, "p50": None, "p90": None, "p95": None}
    p50, p90, p95 = np.percentile(values, [50, 90, 95])
    return {"n": int(values.size), "mean": float(values.mean()), "p50": p50, "p90": p90, "p95": p95}


def rate(flags: pd.Series) -> dict[str, Any]:
    """Share of True among the known flags, with its 95% Wilson interval."""
    known = flags.dropna().astype(bool)
    n = int(known.size)
    if n == 0:
        return {"n": 0, "rate": None, "low": None, "high": None}
    share = float(known.mean())
    z = 1.96
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # Clamped so the interval always contains the share, despite rounding at 0 and 1.
    return {
        "n": n,
        "rate": share,
        "low": min(share, max(0.0, centre - half)),
        "high": max(share, min(1.0, centre + half)),
    }


def metric_summaries(frame: pd.DataFrame) -> dict[str, Any]:
    sides = ("baseline", "candidate", "secondary")
    return {
        "semantic_divergence": {
            "candidate": describe(frame["semantic_divergence"]),
            "noise": describe(frame["noise_semantic_divergence"]),
        },
        "length_log_ratio": {
            "candidate": describe(frame["length_log_ratio"]),
            "noise": describe(frame["noise_length_log_ratio"]),
        },
        "loop_rate": {side: rate(frame[f"loop_{side}_flag"]) for side in sides},
        "coherence": {side: describe(frame[f"coherence_{side}_score"]) for side in sides},
        "coherence_breaks": {side: describe(frame[f"coherence_{side}_breaks"]) for side in sides},
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
    tag_columns = [c for c in frame.columns if c.startswith("segment_")]
    tag_columns.sort(key=lambda c: -int(frame[c].notna().sum()))
    for column in tag_columns[:MAX_SEGMENT_TAGS]:
        values = frame[column].fillna("(none)")
        top = values.value_counts().index[:MAX_SEGMENT_VALUES]
        dims.append((column.removeprefix("segment_"), values.where(values.isin(top), "(other)")))
    return dims


def segment_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    noise_floor = frame["noise_semantic_divergence"].mean()
    rows = []
    for dimension, labels in segment_dimensions(frame):
        for value, group in frame.groupby(labels, sort=True):
            rows.append({"dimension": dimension, "value": str(value), **segment_numbers(group, noise_floor)})
    return rows


def segment_numbers(group: pd.DataFrame, global_noise_floor: float) -> dict[str, Any]:
    noise = group["noise_semantic_divergence"].dropna()
    # A segment's own noise floor when it has enough secondaries; else the experiment's.
    floor = noise.mean() if len(noise) >= 10 else global_noise_floor
    ok_c = group["candidate_ok"].eq(True)
    ok_b = group["baseline_ok"].eq(True)
    numbers = {
        "n": len(group),
        "divergence": group["semantic_divergence"].mean(),
        "noise_divergence": floor,
        "length_log_ratio": group["length_log_ratio"].median(),
        "loop_candidate": rate(group["loop_candidate_flag"])["rate"],
        "loop_baseline": rate(group["loop_baseline_flag"])["rate"],
        "coherence_candidate": group["coherence_candidate_score"].mean(),
        "coherence_baseline": group["coherence_baseline_score"].mean(),
        "errors_candidate": 1 - ok_c[group["candidate_ok"].notna()].mean(),
        "errors_baseline": 1 - ok_b[group["baseline_ok"].notna()].mean(),
        "latency_p95_candidate": group.loc[ok_c, "candidate_latency_ms"].quantile(0.95),
        "latency_p95_baseline": group.loc[ok_b, "baseline_latency_ms"].quantile(0.95),
    }
    numbers = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in numbers.items()}
    numbers["severity"] = segment_severity(numbers) if len(group) >= MIN_SEGMENT_PAIRS else {}
    return numbers


def hotspots(rows: Sequence[Mapping[str, Any]], limit: int = 3) -> list[Mapping[str, Any]]:
    """The segments with the most metrics marked 'bad', most divergent first: the page's "where it breaks"."""
    bad = [row for row in rows if "bad" in row["severity"].values()]

    def key(row: Mapping[str, Any]) -> tuple[int, float]:
        n_bad = sum(level == "bad" for level in row["severity"].values())
        return (-n_bad, -((row["divergence"] or 0) - (row["noise_divergence"] or 0)))

    return sorted(bad, key=key)[:limit]


def segment_severity(n: Mapping[str, Any]) -> dict[str, str]:
    """'warn' or 'bad' per metric whose candidate number is worse than its reference (see THRESHOLDS)."""
    gaps = {
        "divergence": _gap(n["divergence"], n["noise_divergence"]),
        "length": abs(n["length_log_ratio"]) if n["length_log_ratio"] is not None else None,
        "loop": _gap(n["loop_candidate"], n["loop_baseline"]),
        "coherence": _gap(n["coherence_baseline"], n["coherence_candidate"]),
        "errors": _gap(n["errors_candidate"], n["errors_baseline"]),
        "latency": (
            n["latency_p95_candidate"] / n["latency_p95_baseline"]
            if n["latency_p95_candidate"] is not None and n["latency_p95_baseline"]
            else None
        ),
    }
    out = {}
    for metric, gap in gaps.items():
        warn, bad = THRESHOLDS[metric]
        if gap is not None and gap > bad:
            out[metric] = "bad"
        elif gap is not None and gap > warn:
            out[metric] = "warn"
    return out


def _gap(worse: float | None, reference: float | None) -> float | None:
    return None if worse is None or reference is None else worse - reference


# --- worst pairs -------------------------------------------------------------------------------------------


def badness(frame: pd.DataFrame) -> pd.Series:
    """One number per pair for the table's default order: how much a reviewer should look at it.

    Divergence (0-1), plus 1 for a failed candidate, 0.5 for a loop the primary does not have, the drop
    in coherence, and up to 0.3 for a length change.
    """
    new_loop = (frame["loop_candidate_flag"].eq(True)) & (frame["loop_baseline_flag"].ne(True))
    coherence_drop = (frame["coherence_baseline_score"] - frame["coherence_candidate_score"]).clip(lower=0)
    return (
        frame["semantic_divergence"].fillna(0)
        + (frame["candidate_ok"].eq(False)).astype(float)
        + 0.5 * new_loop.astype(float)
        + coherence_drop.fillna(0)
        + 0.3 * frame["length_log_ratio"].abs().clip(upper=1).fillna(0)
    )


def select_table(frame: pd.DataFrame, cap: int, seed: int = 0) -> list[int]:
    """Row positions for the table: all pairs when they fit; else the worst by each metric, the worst
    overall, and a random rest so that ordinary pairs of each segment can be seen too."""
    if len(frame) <= cap:
        return list(range(len(frame)))
    score = badness(frame).to_numpy()
    keys = {
        "divergence": frame["semantic_divergence"].to_numpy(),
        "loop": frame["loop_candidate_score"].to_numpy(),
        "coherence_drop": (frame["coherence_baseline_score"] - frame["coherence_candidate_score"]).to_numpy(),
        "length": frame["length_log_ratio"].abs().to_numpy(),
        "failed": (frame["candidate_ok"].eq(False)).to_numpy(dtype=float),
    }
    chosen: dict[int, None] = {}
    per_metric = cap // 10
    for values in keys.values():
        order = np.argsort(-np.nan_to_num(values.astype(float), nan=-np.inf), kind="stable")
        chosen.update(dict.fromkeys(int(i) for i in order[:per_metric]))
    for i in np.argsort(-score, kind="stable"):
        if len(chosen) >= cap * 3 // 4:
            break
        chosen.setdefault(int(i))
    rest = [i for i in range(len(frame)) if i not in chosen]
    chosen.update(dict.fromkeys(random.Random(seed).sample(rest, min(len(rest), cap - len(chosen)))))
    return list(chosen)


def table_rows(
    records: Sequence[Mapping[str, Any]], frame: pd.DataFrame, options: ReportOptions
) -> list[dict[str, Any]]:
    positions = select_table(frame, options.table_cap, options.seed)
    score = badness(frame)
    rows = [pair_row(records[i], frame.iloc[i], float(score.iloc[i]), options.text_cap) for i in positions]
    rows.sort(key=lambda row: -row["badness"])
    return rows


def pair_row(record: Mapping[str, Any], row: pd.Series, score: float, text_cap: int) -> dict[str, Any]:
    """One table row: the numbers, the (capped) texts, and where to mark loops and coherence breaks."""
    flags = []
    if _is(row["candidate_ok"], False):
        flags.append("error")
    if _is(row["loop_candidate_flag"], True):
        flags.append("loop")
    if (row["coherence_candidate_breaks"] or 0) > 0:
        flags.append("breaks")
    if row["candidate_finish_reason"] == "length":
        flags.append("truncated")
    segment = record.get("segment") if isinstance(record.get("segment"), Mapping) else {}
    texts = {side: _text(record.get(side)) for side in ("prompt", "baseline", "candidate")}
    return {
        "id": str(record.get("id", "")),
        "created_at": row["created_at"].isoformat() if pd.notna(row["created_at"]) else None,
        "language": row["language"],
        "prompt_length": row["prompt_length"],
        "answer_length": row["answer_length"],
        "segment": [[str(k), str(v)] for k, v in segment.items()],
        "badness": round(score, 4),
        "divergence": row["semantic_divergence"],
        "log_ratio": row["length_log_ratio"],
        "loop_candidate": row["loop_candidate_score"],
        "loop_baseline": row["loop_baseline_score"],
        "coherence_candidate": row["coherence_candidate_score"],
        "coherence_baseline": row["coherence_baseline_score"],
        "latency_candidate": row["candidate_latency_ms"],
        "latency_baseline": row["baseline_latency_ms"],
        "candidate_error": row["candidate_error"],
        "flags": flags,
        "texts": {side: text[:text_cap] for side, text in texts.items()},
        "text_lengths": {side: len(text) for side, text in texts.items()},
        "marks": {side: text_marks(record, side, texts[side]) for side in ("baseline", "candidate")},
    }


def text_marks(record: Mapping[str, Any], side: str, text: str) -> dict[str, Any]:
    """The loop span [start, end) and the character offsets of coherence breaks, in code points."""
    loop = _mapping(_mapping(record.get("loop")).get(side))
    span = loop.get("span")
    valid = isinstance(span, list | tuple) and len(span) == 2 and all(isinstance(x, int) for x in span)
    breaks = _mapping(_mapping(record.get("coherence")).get(side)).get("breaks") or []
    offsets = []
    if breaks and text:
        starts = [start for start, _ in sentence_spans(text)]
        offsets = [starts[i] for i in breaks if isinstance(i, int) and 0 <= i < len(starts)]
    return {"loop": [int(span[0]), int(span[1])] if valid else None, "breaks": offsets}


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


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _is(value: Any, target: bool) -> bool:
    return value is not None and not pd.isna(value) and bool(value) is target


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


__all__ = [
    "ReportOptions",
    "SCHEMA",
    "TABLE_CAP",
    "TEXT_CAP",
    "THRESHOLDS",
    "badness",
    "build_report",
    "clean_json",
    "describe",
    "gate_view",
    "hotspots",
    "rate",
    "segment_rows",
    "select_table",
    "table_rows",
]
