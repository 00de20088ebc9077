"""One check's verdict from one statistical test: the shared shape of every check's result.

A check's result is a dict with a closed set of verdicts (`CheckVerdict`), the statistics of both sides and
of the noise floor, the effect size, the always-valid p-value, the tolerance, and one sentence for people.
A difference fails only when it is both significant and larger than the tolerance (as Kayenta judges).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from shadow.core.verdicts import CheckVerdict
from shadow.gate import stats
from shadow.gate.policy import GatePolicy


def base_result(
    name: str,
    metric: str,
    policy: GatePolicy,
    candidate: dict[str, Any] | None,
    baseline: dict[str, Any] | None,
    noise: dict[str, Any] | None,
) -> dict[str, Any]:
    conf = policy.check(name)
    return {
        "name": name,
        "metric": metric,
        "verdict": CheckVerdict.NODATA,
        "critical": conf.critical,
        "required": conf.required,
        "weight": conf.weight,
        "candidate": candidate,
        "baseline": baseline,
        "noise": noise if noise and noise.get("n") else None,
        "effect_size": None,
        "p_value": None,
        "p_value_fixed": None,
        "test": None,
        "threshold": conf.tolerance,
        "alpha": policy.alpha,
        "reason": "",
    }


def nodata(out: dict[str, Any], why: str) -> dict[str, Any]:
    out["verdict"] = CheckVerdict.NODATA
    out["reason"] = f"No verdict: {why}."
    return out


def judge(
    out: dict[str, Any], result: stats.TestResult, tolerance: float, policy: GatePolicy, summary: str
) -> dict[str, Any]:
    significant = result.p_value < policy.alpha
    large = result.effect_size > tolerance
    out.update(
        effect_size=result.effect_size,
        p_value=result.p_value,
        p_value_fixed=result.p_value_fixed,
        test=result.test,
        threshold=tolerance,
    )
    p_text = format_p(result.p_value)
    if significant and large:
        out["verdict"] = CheckVerdict.FAIL
        out["reason"] = f"{capital(summary)}, {p_text}."
    elif significant:
        out["verdict"] = CheckVerdict.PASS
        out["reason"] = (
            f"{capital(summary)}; the difference is significant ({p_text}) but within the tolerance "
            f"(effect {format_effect(result.effect_size)} <= {tolerance:.3g})."
        )
    else:
        out["verdict"] = CheckVerdict.PASS
        out["reason"] = f"{capital(summary)}; not a significant difference ({p_text})."
    return out


def format_p(p: float) -> str:
    """
    >>> format_p(0.0001), format_p(0.25)
    ('p < 0.001', 'p = 0.250')
    """
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def format_effect(effect: float | None) -> str:
    if effect is None:
        return "-"
    return "inf" if math.isinf(effect) else f"{effect:+.3g}"


def capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def pct(x: int, n: int) -> str:
    return f"{100.0 * x / n:.1f} %" if n else "n/a"


def dist(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "median": None, "p95": None}
    array = np.asarray(values, dtype=float)
    return {"n": len(array), "median": float(np.median(array)), "p95": float(np.percentile(array, 95))}


def rate(flags: Sequence[bool]) -> dict[str, Any]:
    n = len(flags)
    events = int(sum(flags))
    return {"n": n, "events": events, "rate": events / n if n else None}


__all__ = ["base_result", "capital", "dist", "format_effect", "format_p", "judge", "nodata", "pct", "rate"]
