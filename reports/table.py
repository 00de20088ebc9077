"""The worst-pairs table: which pairs the page embeds (with their texts), in which order, and how each row
reads. The order and the per-metric "worst by" picks come from the evaluators' declared `badness`."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from evaluators.metrics import Metric
from reports.panels import is_rate, side_flags
from shadow.core.text import sentence_spans


def contributions(frame: pd.DataFrame, metrics: Sequence[Metric]) -> dict[str, pd.Series]:
    """Per metric with a `badness` weight: how bad each pair looks by it alone, 0 (fine) to 1.

    A pairwise number counts as itself (|value| for magnitudes), a per-text event counts when the
    candidate has it and the primary does not, a per-text number by how much worse the candidate's is.
    """
    out = {}
    for metric in metrics:
        if metric.output.badness <= 0:
            continue
        sign = -1.0 if metric.output.worse == "lower" else 1.0
        if metric.pairwise:
            values = pd.to_numeric(frame[metric.column()], errors="coerce")
            values = values.abs() if metric.output.magnitude else sign * values
        elif is_rate(metric):
            cand = side_flags(frame, metric.column("candidate"), metric).eq(True)
            base = side_flags(frame, metric.column("baseline"), metric).eq(True)
            values = (cand & ~base).astype(float)
        else:
            cand = pd.to_numeric(frame[metric.column("candidate")], errors="coerce")
            base = pd.to_numeric(frame[metric.column("baseline")], errors="coerce")
            values = sign * (cand - base)
        out[metric.name] = values.clip(lower=0, upper=1).fillna(0)
    return out


def badness(frame: pd.DataFrame, metrics: Sequence[Metric]) -> pd.Series:
    """One number per pair for the table's default order: how much a reviewer should look at it.

    1 for a failed candidate, plus each metric's contribution times its declared `badness` weight.
    """
    score = frame["candidate_ok"].eq(False).astype(float)
    weights = {m.name: m.output.badness for m in metrics}
    for name, values in contributions(frame, metrics).items():
        score = score + weights[name] * values
    return score


def select_table(frame: pd.DataFrame, metrics: Sequence[Metric], cap: int, seed: int = 0) -> list[int]:
    """Row positions for the table: all pairs when they fit; else the worst by each metric, the worst
    overall, and a random rest so that ordinary pairs of each segment can be seen too."""
    if len(frame) <= cap:
        return list(range(len(frame)))
    score = badness(frame, metrics).to_numpy()
    keys = {name: values.to_numpy() for name, values in contributions(frame, metrics).items()}
    keys["failed"] = frame["candidate_ok"].eq(False).to_numpy(dtype=float)
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
    records: Sequence[Mapping[str, Any]],
    frame: pd.DataFrame,
    metrics: Sequence[Metric],
    *,
    cap: int,
    text_cap: int,
    seed: int = 0,
) -> list[dict[str, Any]]:
    positions = select_table(frame, metrics, cap, seed)
    score = badness(frame, metrics)
    rows = [pair_row(records[i], frame.iloc[i], float(score.iloc[i]), metrics, text_cap) for i in positions]
    rows.sort(key=lambda row: -row["badness"])
    return rows


def event_name(metric: Metric) -> str:
    """The table's flag for an event: the evaluator's name ("loop"), or its key ("breaks", "mismatch")."""
    return metric.evaluator if metric.output.key in ("flag", "mismatch", "refused") else metric.output.key


def pair_row(
    record: Mapping[str, Any], row: pd.Series, score: float, metrics: Sequence[Metric], text_cap: int
) -> dict[str, Any]:
    """One table row: the numbers, the (capped) texts, and where to mark loops and coherence breaks."""
    flags = []
    if _is(row["candidate_ok"], False):
        flags.append("error")
    for metric in metrics:
        if is_rate(metric):
            value = row.get(metric.column() if metric.pairwise else metric.column("candidate"))
            if metric.output.kind == "count":
                value = None if value is None or pd.isna(value) else value > 0
            if _is(value, True):
                flags.append(event_name(metric))
    if row["candidate_finish_reason"] == "length":
        flags.append("truncated")
    segment = record.get("segment") if isinstance(record.get("segment"), Mapping) else {}
    texts = {side: _text(record.get(side)) for side in ("prompt", "baseline", "candidate")}
    scores = []
    for metric in metrics:
        if metric.pairwise:
            reference = row.get(metric.column(noise=True)) if metric.output.noise_floor else None
            scores.append([metric.label, row.get(metric.column()), reference, "noise floor"])
        else:
            scores.append(
                [
                    metric.label,
                    row.get(metric.column("candidate")),
                    row.get(metric.column("baseline")),
                    "primary",
                ]
            )
    return {
        "id": str(record.get("id", "")),
        "created_at": row["created_at"].isoformat() if pd.notna(row["created_at"]) else None,
        "language": row["language"],
        "prompt_length": row["prompt_length"],
        "answer_length": row["answer_length"],
        "segment": [[str(k), str(v)] for k, v in segment.items()],
        "badness": round(score, 4),
        # The columns of the page's sortable table (the built-in evaluators); `scores` lists every one.
        "divergence": row.get("semantic_divergence"),
        "log_ratio": row.get("length_log_ratio"),
        "loop_candidate": row.get("loop_candidate_score"),
        "loop_baseline": row.get("loop_baseline_score"),
        "coherence_candidate": row.get("coherence_candidate_score"),
        "coherence_baseline": row.get("coherence_baseline_score"),
        "latency_candidate": row["candidate_latency_ms"],
        "latency_baseline": row["baseline_latency_ms"],
        "candidate_error": row["candidate_error"],
        "scores": scores,
        "flags": flags,
        "agent": {side: agent_parts(record, side, text_cap) for side in ("baseline", "candidate")},
        "texts": {side: text[:text_cap] for side, text in texts.items()},
        "text_lengths": {side: len(text) for side, text in texts.items()},
        "marks": {side: text_marks(record, side, texts[side]) for side in ("baseline", "candidate")},
    }


def agent_parts(record: Mapping[str, Any], side: str, text_cap: int) -> dict[str, Any]:
    """What an agent's answer did besides text: its tool calls (name and arguments, capped), its refusal,
    and how long its reasoning was (the reasoning itself stays in the export: it can be long)."""
    calls = record.get(f"{side}_tool_calls")
    calls = [c for c in calls if isinstance(c, Mapping)] if isinstance(calls, list) else []
    refusal, reasoning = record.get(f"{side}_refusal"), record.get(f"{side}_reasoning")
    return {
        "tool_calls": [
            [str(call.get("name") or "?"), str(call.get("arguments") or "")[:text_cap]] for call in calls[:20]
        ],
        "refusal": refusal[:text_cap] if isinstance(refusal, str) else None,
        "reasoning_chars": len(reasoning) if isinstance(reasoning, str) else None,
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


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _is(value: Any, target: bool) -> bool:
    return value is not None and not pd.isna(value) and bool(value) is target


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


__all__ = ["agent_parts", "badness", "contributions", "pair_row", "select_table", "table_rows", "text_marks"]
