"""The gate as a straight pipeline: select the pairs → collect values → judge each check → score → verdict.

Verdict rules (Kayenta's, with `nodata` never a silent pass):

1. A critical check that fails fails the gate (score 0).
2. Otherwise, a required check without a verdict (`nodata` or `error`) makes the gate `inconclusive`.
3. Otherwise the score is the weighted share of passing non-critical checks (100 when there are none):
   `>= pass_score` passes, `< marginal_score` fails, in between is `inconclusive` (a person should look).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from shadow.core import view
from shadow.core.timeparse import parse_instant
from shadow.core.verdicts import CheckVerdict, Verdict
from shadow.gate.checks import run_checks
from shadow.gate.policy import GatePolicy

SEQUENTIAL_METHOD = (
    "always-valid p-values (mixture sequential probability ratio tests, Ville's inequality): any number of "
    "looks at any times keeps each check's false-failure rate at or below 1 - confidence"
)


def evaluate_gate(
    records: Iterable[dict[str, Any]],
    policy: GatePolicy | None = None,
    *,
    segment: dict[str, str] | None = None,
    since: timedelta | None = None,
    last: int | None = None,
    now: datetime | None = None,
    experiment: str | None = None,
) -> dict[str, Any]:
    """Judge scored pairs (the dicts of a scores JSONL) and return the gate's JSON object.

    `since` keeps pairs created within that long before `now` (default: the current time); `last` keeps
    the latest N pairs after the other filters; `segment` keeps pairs whose segment tags match (`lang` is
    derived from the text when it is not a tag).
    """
    policy = policy or GatePolicy()
    selected = select_pairs(records, segment=segment, since=since, last=last, now=now, experiment=experiment)
    checks = run_checks(selected, policy)
    verdict, score, reason = decide(checks, policy)
    return _json_safe(
        {
            "verdict": verdict,
            "score": score,
            "n_pairs": len(selected),
            "reason": reason,
            "experiment": experiment,
            "segment": dict(segment or {}),
            "window": {"since_seconds": since.total_seconds() if since else None, "last": last},
            "confidence": policy.confidence,
            "sequential_method": SEQUENTIAL_METHOD,
            "checks": checks,
        }
    )


def select_pairs(
    records: Iterable[dict[str, Any]],
    *,
    segment: dict[str, str] | None = None,
    since: timedelta | None = None,
    last: int | None = None,
    now: datetime | None = None,
    experiment: str | None = None,
) -> list[dict[str, Any]]:
    selected = [r for r in records if experiment is None or r.get("experiment") == experiment]
    if segment:
        selected = [r for r in selected if matches_segment(r, segment)]
    if since is not None or last is not None:
        selected.sort(key=_created_at)
    if since is not None:
        cutoff = (now or datetime.now(UTC)) - since
        selected = [r for r in selected if _created_at(r) >= cutoff]
    if last is not None:
        selected = selected[-last:] if last > 0 else []
    return selected


def matches_segment(record: dict[str, Any], wanted: dict[str, str]) -> bool:
    """Whether the pair's segment tags match (`lang`, when not a tag, is `view.pair_language`)."""
    return all(view.segment_value(record, key) == value for key, value in wanted.items())


def decide(checks: list[dict[str, Any]], policy: GatePolicy) -> tuple[Verdict, float, str]:
    critical_failures = [c for c in checks if c["critical"] and c["verdict"] == CheckVerdict.FAIL]
    if critical_failures:
        names = ", ".join(c["name"] for c in critical_failures)
        return Verdict.FAIL, 0.0, f"critical check(s) failed: {names}. {critical_failures[0]['reason']}"
    missing = [
        c for c in checks if c["required"] and c["verdict"] in (CheckVerdict.NODATA, CheckVerdict.ERROR)
    ]
    judged = [
        c for c in checks if not c["critical"] and c["verdict"] in (CheckVerdict.PASS, CheckVerdict.FAIL)
    ]
    total = sum(c["weight"] for c in judged)
    score = (
        100.0 * sum(c["weight"] for c in judged if c["verdict"] == CheckVerdict.PASS) / total
        if total > 0
        else 100.0
    )
    if missing:
        names = ", ".join(c["name"] for c in missing)
        return (
            Verdict.INCONCLUSIVE,
            (score if judged else 0.0),
            f"no verdict yet for: {names}. {missing[0]['reason']}",
        )
    failed = [c for c in judged if c["verdict"] == CheckVerdict.FAIL]
    if score < policy.marginal_score:
        names = ", ".join(c["name"] for c in failed)
        return (
            Verdict.FAIL,
            score,
            f"score {score:.0f} is below {policy.marginal_score:.0f}; failed: {names}.",
        )
    if score < policy.pass_score:
        names = ", ".join(c["name"] for c in failed)
        return (
            Verdict.INCONCLUSIVE,
            score,
            f"score {score:.0f} is marginal (pass at {policy.pass_score:.0f}); failed: {names}; "
            "a person should look.",
        )
    # A check that need not hold the verdict back (no long answers, no tool turns in the window) is still
    # named: "all checks passed" would say it was judged.
    unjudged = [c["name"] for c in checks if c["verdict"] in (CheckVerdict.NODATA, CheckVerdict.ERROR)]
    if unjudged:
        return (
            Verdict.PASS,
            score,
            f"every check with a verdict passed (score {score:.0f}); no verdict, not required: "
            f"{', '.join(unjudged)}.",
        )
    return Verdict.PASS, score, f"all checks passed (score {score:.0f})."


def _created_at(record: dict[str, Any]) -> datetime:
    """When the pair was created; a pair without a readable time sorts first (and is outside any window)."""
    return parse_instant(record.get("created_at")) or datetime.min.replace(tzinfo=UTC)


def _json_safe(value: Any) -> Any:
    """Infinite or NaN floats become null: the answer must be strict JSON for Argo and Flagger."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


__all__ = ["SEQUENTIAL_METHOD", "decide", "evaluate_gate", "matches_segment", "select_pairs"]
