"""The gate's checks: each turns scored pairs into one judged verdict with its evidence.

A check reads plain values out of the pairs (`Sample`), runs one test from `stats.py`, and returns a dict
with a closed set of verdicts (pass / fail / nodata / error), the statistics of both sides and of the
noise floor, the effect size, the always-valid p-value, the tolerance, and one sentence for people.
A difference fails only when it is both significant and larger than the tolerance (as Kayenta judges).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shadow.gate import stats
from shadow.gate.policy import GatePolicy

PASS, FAIL, NODATA, ERROR = "pass", "fail", "nodata", "error"
VERDICTS = (PASS, FAIL, NODATA, ERROR)


@dataclass(slots=True)
class Sample:
    """The values the checks need, read once from the pairs that have a candidate answer."""

    divergence: list[float] = field(default_factory=list)
    noise_divergence: list[float] = field(default_factory=list)
    abs_log_ratio: list[float] = field(default_factory=list)
    noise_abs_log_ratio: list[float] = field(default_factory=list)
    loop_candidate: list[bool] = field(default_factory=list)
    loop_baseline: list[bool] = field(default_factory=list)
    loop_secondary: list[bool] = field(default_factory=list)
    coherence_candidate: list[float] = field(default_factory=list)
    coherence_baseline: list[float] = field(default_factory=list)
    breaks_candidate: list[bool] = field(default_factory=list)
    breaks_baseline: list[bool] = field(default_factory=list)
    breaks_secondary: list[bool] = field(default_factory=list)
    candidate_errors: list[bool] = field(default_factory=list)
    candidate_error_kinds: Counter[str] = field(default_factory=Counter)
    candidate_failures: list[bool] = field(default_factory=list)
    baseline_failures: list[bool] = field(default_factory=list)
    secondary_failures: list[bool] = field(default_factory=list)
    latency: dict[str, list[float]] = field(
        default_factory=lambda: {"baseline": [], "candidate": [], "secondary": []}
    )
    ttft: dict[str, list[float]] = field(
        default_factory=lambda: {"baseline": [], "candidate": [], "secondary": []}
    )


def has_candidate(record: dict[str, Any]) -> bool:
    return "candidate_status" in record or "candidate_error" in record or record.get("candidate") is not None


def side_ok(record: dict[str, Any], side: str) -> bool:
    status = record.get(f"{side}_status")
    return record.get(f"{side}_error") is None and isinstance(status, int) and 200 <= status < 300


def side_error(record: dict[str, Any], side: str) -> bool:
    """A 5xx answer, a transport error, or no answer at all: what canary analysis calls an error."""
    status = record.get(f"{side}_status")
    return record.get(f"{side}_error") is not None or not isinstance(status, int) or status >= 500


def collect(records: Sequence[dict[str, Any]], policy: GatePolicy) -> Sample:
    sample = Sample()
    for record in records:
        if not has_candidate(record):
            continue
        _collect_operational(record, sample)
        if not side_ok(record, "candidate"):
            continue  # a failed candidate has null scores; the operational checks count it
        semantic = _get(record, "semantic", "divergence")
        if _number(semantic):
            sample.divergence.append(float(semantic))
        noise_divergence = _get(record, "noise", "semantic", "divergence")
        if _number(noise_divergence):
            sample.noise_divergence.append(float(noise_divergence))
        log_ratio = _get(record, "length", "log_ratio")
        if _number(log_ratio):
            sample.abs_log_ratio.append(abs(float(log_ratio)))
        noise_log_ratio = _get(record, "noise", "length", "log_ratio")
        if _number(noise_log_ratio):
            sample.noise_abs_log_ratio.append(abs(float(noise_log_ratio)))
        loop_b, loop_c = _get(record, "loop", "baseline", "flag"), _get(record, "loop", "candidate", "flag")
        if isinstance(loop_b, bool) and isinstance(loop_c, bool):
            sample.loop_baseline.append(loop_b)
            sample.loop_candidate.append(loop_c)
        loop_s = _get(record, "loop", "secondary", "flag")
        if isinstance(loop_s, bool):
            sample.loop_secondary.append(loop_s)
        _collect_coherence(record, sample)
    return sample


def _collect_operational(record: dict[str, Any], sample: Sample) -> None:
    error = side_error(record, "candidate")
    sample.candidate_errors.append(error)
    if error:
        kind = record.get("candidate_error") or f"HTTP {record.get('candidate_status')}"
        sample.candidate_error_kinds[str(kind)[:80]] += 1
    sample.candidate_failures.append(not side_ok(record, "candidate"))
    sample.baseline_failures.append(not side_ok(record, "baseline"))
    sides = ["baseline", "candidate"]
    if "secondary_status" in record or "secondary_error" in record:
        sides.append("secondary")
        sample.secondary_failures.append(not side_ok(record, "secondary"))
    for side in sides:
        if not side_ok(record, side):
            continue
        latency, ttft = record.get(f"{side}_latency_ms"), record.get(f"{side}_ttft_ms")
        if _number(latency):
            sample.latency[side].append(float(latency))
        if _number(ttft):
            sample.ttft[side].append(float(ttft))


def _collect_coherence(record: dict[str, Any], sample: Sample) -> None:
    # The coherence evaluator marks an answer applicable when it is a long Chinese answer; both sides must
    # be, so that the comparison is between answers to the same kind of prompt.
    base, cand = _get(record, "coherence", "baseline"), _get(record, "coherence", "candidate")
    if not (_applicable(base) and _applicable(cand)):
        return
    sample.coherence_baseline.append(float(base["score"]))
    sample.coherence_candidate.append(float(cand["score"]))
    sample.breaks_baseline.append(bool(base.get("breaks")))
    sample.breaks_candidate.append(bool(cand.get("breaks")))
    secondary = _get(record, "coherence", "secondary")
    if _applicable(secondary):
        sample.breaks_secondary.append(bool(secondary.get("breaks")))


def _applicable(value: Any) -> bool:
    return isinstance(value, dict) and value.get("applicable") is True and _number(value.get("score"))


# --- the checks -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckSpec:
    name: str
    metric: str
    run: Callable[[Sample, GatePolicy, str], dict[str, Any]]


def check_semantic(sample: Sample, policy: GatePolicy, name: str) -> dict[str, Any]:
    return _noise_floor_check(
        name,
        "semantic divergence, candidate vs primary",
        sample.divergence,
        sample.noise_divergence,
        policy,
        worse="candidate answers diverge from the primary's",
        unit="",
    )


def check_length(sample: Sample, policy: GatePolicy, name: str) -> dict[str, Any]:
    return _noise_floor_check(
        name,
        "|log length ratio|, candidate vs primary",
        sample.abs_log_ratio,
        sample.noise_abs_log_ratio,
        policy,
        worse="candidate answer lengths differ from the primary's",
        unit="",
    )


def _noise_floor_check(
    name: str,
    metric: str,
    values: list[float],
    noise: list[float],
    policy: GatePolicy,
    *,
    worse: str,
    unit: str,
) -> dict[str, Any]:
    conf = policy.check(name)
    need = policy.min_pairs_for(name)
    out = _base(name, metric, policy, candidate=_dist(values), baseline=None, noise=_dist(noise))
    if len(values) < need:
        return _nodata(out, f"only {len(values)} scored candidate answers in the window (need {need})")
    if len(noise) >= policy.min_noise_pairs:
        result = stats.mann_whitney_greater(values, noise, policy.mixture_scale)
        summary = (
            f"{worse} with median {np.median(values):.3g}{unit} vs {np.median(noise):.3g}{unit} between the "
            f"primary and its own reruns (P(higher) = {0.5 + result.effect_size:.2f})"
        )
        return _judge(out, result, conf.tolerance, policy, summary)
    if conf.absolute_threshold is None:
        return _nodata(
            out,
            f"only {len(noise)} secondaries for a noise floor (need {policy.min_noise_pairs}) "
            "and no absolute threshold is configured",
        )
    result = stats.median_above(values, conf.absolute_threshold)
    out["baseline"] = {"absolute_threshold": conf.absolute_threshold}
    summary = (
        f"{worse} with median {np.median(values):.3g}{unit} against the absolute threshold "
        f"{conf.absolute_threshold:.3g} (too few secondaries for a noise floor)"
    )
    return _judge(out, result, 0.0, policy, summary)


def check_loop(sample: Sample, policy: GatePolicy, name: str) -> dict[str, Any]:
    cand, base = sample.loop_candidate, sample.loop_baseline
    out = _base(
        name,
        "loop rate, candidate vs primary",
        policy,
        _rate(cand),
        _rate(base),
        _rate(sample.loop_secondary),
    )
    need = policy.min_pairs_for(name)
    if len(cand) < need:
        return _nodata(out, f"only {len(cand)} pairs with loop scores on both sides (need {need})")
    x_c, x_b = sum(cand), sum(base)
    diff = x_c / len(cand) - x_b / len(base)
    result = stats.rates_greater(x_c, len(cand), x_b, len(base), effect_size=diff)
    summary = (
        f"candidate loops in {_pct(x_c, len(cand))} of answers vs {_pct(x_b, len(base))} for the primary"
    )
    return _judge(out, result, policy.check(name).tolerance, policy, summary)


def check_coherence_score(sample: Sample, policy: GatePolicy, name: str) -> dict[str, Any]:
    cand, base = sample.coherence_candidate, sample.coherence_baseline
    out = _base(
        name,
        "coherence of long Chinese answers, candidate vs primary",
        policy,
        _dist(cand),
        _dist(base),
        None,
    )
    need = policy.min_pairs_for(name)
    if len(cand) < need:
        return _nodata(
            out, f"only {len(cand)} long Chinese answers with coherence scores on both sides (need {need})"
        )
    differences = np.asarray(base) - np.asarray(cand)
    result = stats.wilcoxon_greater(differences, policy.mixture_scale)
    summary = (
        f"on long Chinese answers the candidate's coherence has median {np.median(cand):.3g} vs "
        f"{np.median(base):.3g} for the primary; the primary is more coherent on "
        f"{0.5 + result.effect_size:.0%} of the same prompts"
    )
    return _judge(out, result, policy.check(name).tolerance, policy, summary)


def check_break_rate(sample: Sample, policy: GatePolicy, name: str) -> dict[str, Any]:
    cand, base = sample.breaks_candidate, sample.breaks_baseline
    out = _base(
        name,
        "share of long Chinese answers with a logic break, candidate vs primary",
        policy,
        _rate(cand),
        _rate(base),
        _rate(sample.breaks_secondary),
    )
    need = policy.min_pairs_for(name)
    if len(cand) < need:
        return _nodata(
            out, f"only {len(cand)} long Chinese answers with coherence scores on both sides (need {need})"
        )
    x_c, x_b = sum(cand), sum(base)
    diff = x_c / len(cand) - x_b / len(base)
    result = stats.rates_greater(x_c, len(cand), x_b, len(base), effect_size=diff)
    summary = (
        f"{_pct(x_c, len(cand))} of the candidate's long Chinese answers have a logic break vs "
        f"{_pct(x_b, len(base))} of the primary's"
    )
    return _judge(out, result, policy.check(name).tolerance, policy, summary)


def check_error_rate(sample: Sample, policy: GatePolicy, name: str) -> dict[str, Any]:
    errors = sample.candidate_errors
    limit = policy.check(name).tolerance
    out = _base(name, "candidate 5xx/transport-error rate", policy, _rate(errors), None, None)
    need = policy.min_pairs_for(name)
    if len(errors) < need:
        return _nodata(out, f"only {len(errors)} mirrored requests in the window (need {need})")
    x = sum(errors)
    result = stats.rate_above(x, len(errors), limit)
    summary = f"the candidate answered {_pct(x, len(errors))} of {len(errors)} requests with an error"
    if sample.candidate_error_kinds:
        kind, count = sample.candidate_error_kinds.most_common(1)[0]
        summary += f" (most often {kind!r}, {count}x)"
    summary += f", limit {100 * limit:.1f} %"
    return _judge(out, result, limit, policy, summary)


def check_failure_rate(sample: Sample, policy: GatePolicy, name: str) -> dict[str, Any]:
    cand, base = sample.candidate_failures, sample.baseline_failures
    out = _base(
        name,
        "failure rate, candidate / primary",
        policy,
        _rate(cand),
        _rate(base),
        _rate(sample.secondary_failures),
    )
    need = policy.min_pairs_for(name)
    if len(cand) < need:
        return _nodata(out, f"only {len(cand)} mirrored requests in the window (need {need})")
    x_c, x_b = sum(cand), sum(base)
    rate_c, rate_b = x_c / len(cand), x_b / len(base)
    ratio = rate_c / rate_b if rate_b > 0 else (math.inf if rate_c > 0 else 1.0)
    result = stats.rates_greater(x_c, len(cand), x_b, len(base), effect_size=ratio)
    summary = (
        f"the candidate failed {_pct(x_c, len(cand))} of requests vs {_pct(x_b, len(base))} for the primary"
    )
    return _judge(out, result, policy.check(name).tolerance, policy, summary)


def check_latency(sample: Sample, policy: GatePolicy, name: str) -> dict[str, Any]:
    return _p95_check(name, "total latency P95, candidate / primary", sample.latency, policy, "latency")


def check_ttft(sample: Sample, policy: GatePolicy, name: str) -> dict[str, Any]:
    return _p95_check(
        name, "time-to-first-token P95, candidate / primary", sample.ttft, policy, "time to first token"
    )


def _p95_check(
    name: str, metric: str, values: dict[str, list[float]], policy: GatePolicy, what: str
) -> dict[str, Any]:
    cand, base, secondary = values["candidate"], values["baseline"], values["secondary"]
    out = _base(name, metric, policy, _dist(cand), _dist(base), _dist(secondary))
    need = policy.min_pairs_for(name)
    if min(len(cand), len(base)) < need:
        return _nodata(
            out, f"only {min(len(cand), len(base))} successful answers with a {what} (need {need})"
        )
    # A quantile test: if the candidate's P95 were no higher than the primary's, no more of its requests
    # than of the primary's would exceed the primary's P95.
    limit = stats.p95(base)
    x_c = int(np.sum(np.asarray(cand) > limit))
    x_b = int(np.sum(np.asarray(base) > limit))
    ratio = stats.p95(cand) / limit if limit > 0 else 1.0
    result = stats.rates_greater(x_c, len(cand), x_b, len(base), effect_size=ratio)
    summary = (
        f"the candidate's P95 {what} is {stats.p95(cand):.0f} ms vs {limit:.0f} ms for the primary "
        f"({ratio:.2f}x, limit {policy.check(name).tolerance:.2g}x)"
    )
    return _judge(out, result, policy.check(name).tolerance, policy, summary)


CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec("error_rate", "candidate 5xx/transport-error rate", check_error_rate),
    CheckSpec("failure_rate", "failure rate, candidate / primary", check_failure_rate),
    CheckSpec("latency_p95", "total latency P95, candidate / primary", check_latency),
    CheckSpec("ttft_p95", "time-to-first-token P95, candidate / primary", check_ttft),
    CheckSpec("semantic_divergence", "semantic divergence, candidate vs primary", check_semantic),
    CheckSpec("length_ratio", "|log length ratio|, candidate vs primary", check_length),
    CheckSpec("loop_rate", "loop rate, candidate vs primary", check_loop),
    CheckSpec("coherence_score", "coherence of long Chinese answers", check_coherence_score),
    CheckSpec("coherence_break_rate", "logic-break rate of long Chinese answers", check_break_rate),
)


def run_checks(sample: Sample, policy: GatePolicy) -> list[dict[str, Any]]:
    results = []
    for spec in CHECKS:
        if not policy.check(spec.name).enabled:
            continue
        try:
            results.append(spec.run(sample, policy, spec.name))
        except Exception as exc:  # one broken check must not hide the others' verdicts
            out = _base(spec.name, spec.metric, policy, None, None, None)
            out["verdict"] = ERROR
            out["reason"] = f"the check could not be computed ({type(exc).__name__}: {exc})."
            results.append(out)
    return results


# --- helpers ----------------------------------------------------------------------------------------------


def _base(
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
        "verdict": NODATA,
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


def _nodata(out: dict[str, Any], why: str) -> dict[str, Any]:
    out["verdict"] = NODATA
    out["reason"] = f"No verdict: {why}."
    return out


def _judge(
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
        out["verdict"] = FAIL
        out["reason"] = f"{_capital(summary)}, {p_text}."
    elif significant:
        out["verdict"] = PASS
        out["reason"] = (
            f"{_capital(summary)}; the difference is significant ({p_text}) but within the tolerance "
            f"(effect {format_effect(result.effect_size)} <= {tolerance:.3g})."
        )
    else:
        out["verdict"] = PASS
        out["reason"] = f"{_capital(summary)}; not a significant difference ({p_text})."
    return out


def format_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def format_effect(effect: float | None) -> str:
    if effect is None:
        return "-"
    return "inf" if math.isinf(effect) else f"{effect:+.3g}"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _pct(x: int, n: int) -> str:
    return f"{100.0 * x / n:.1f} %" if n else "n/a"


def _dist(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "median": None, "p95": None}
    array = np.asarray(values, dtype=float)
    return {"n": len(array), "median": float(np.median(array)), "p95": float(np.percentile(array, 95))}


def _rate(flags: Sequence[bool]) -> dict[str, Any]:
    n = len(flags)
    events = int(sum(flags))
    return {"n": n, "events": events, "rate": events / n if n else None}


def _get(record: dict[str, Any], *keys: str) -> Any:
    value: Any = record
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


__all__ = ["CHECKS", "VERDICTS", "Sample", "collect", "format_p", "run_checks"]
