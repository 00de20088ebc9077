"""The gate's checks: each turns the collected `Sample` into one judged result (`judging.py`).

Two kinds. *Quality* checks are built from the evaluators' declared outputs (`evaluators.metrics`): a
pairwise number with a noise floor is compared with the primary against its own reruns; a per-text
number or rate is compared with the primary's on the same prompts. *Operational* checks (errors,
failures, latency) come from canary practice and read the sides' statuses and timings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evaluators.metrics import Metric, checked_metrics
from shadow.core.verdicts import CheckVerdict
from shadow.gate import stats
from shadow.gate.judging import base_result, dist, judge, nodata, pct, rate
from shadow.gate.policy import GatePolicy
from shadow.gate.sample import MetricSample, Sample, collect, is_event


@dataclass(frozen=True, slots=True)
class CheckSpec:
    name: str
    metric: str
    run: Callable[[Sample, GatePolicy, str], dict[str, Any]]


# --- quality checks, from the declarations -----------------------------------------------------------------


def metric_text(metric: Metric) -> str:
    """How a check names what it measures, e.g. "|log length ratio|, candidate vs primary"."""
    label = f"|{metric.label}|" if metric.output.magnitude else metric.label
    if metric.pairwise:
        return f"{label}, candidate vs primary"
    return f"{label} of {metric.output.population}, candidate vs primary"


def quality_check(metric: Metric) -> CheckSpec:
    name = metric.output.check.name  # type: ignore[union-attr]

    def run(sample: Sample, policy: GatePolicy, check_name: str) -> dict[str, Any]:
        values = sample.quality[check_name]
        if metric.pairwise:
            return (_pairwise_rate if is_event(metric) else _noise_floor)(values, policy, check_name)
        return (_per_text_rate if is_event(metric) else _per_text_values)(values, policy, check_name)

    return CheckSpec(name, metric_text(metric), run)


def _oriented(metric: Metric, values: Sequence[float]) -> list[float]:
    """Values with "worse" pointing up, so that every test asks "is the candidate higher?"."""
    return [-v for v in values] if metric.output.worse == "lower" else list(values)


def _noise_floor(values: MetricSample, policy: GatePolicy, name: str) -> dict[str, Any]:
    metric, cand, noise = values.metric, values.candidate, values.noise
    conf = policy.check(name)
    need = policy.min_pairs_for(name)
    out = base_result(name, metric_text(metric), policy, dist(cand), None, dist(noise))
    worse = (
        f"candidate answers {metric.output.event}"
        if metric.output.event
        else f"the candidate's {metric.label}"
    )
    if len(cand) < need:
        return nodata(out, f"only {len(cand)} scored candidate answers in the window (need {need})")
    if len(noise) >= policy.min_noise_pairs:
        result = stats.mann_whitney_greater(
            _oriented(metric, cand), _oriented(metric, noise), policy.mixture_scale
        )
        summary = (
            f"{worse} with median {np.median(cand):.3g} vs {np.median(noise):.3g} between the "
            f"primary and its own reruns (P(worse) = {0.5 + result.effect_size:.2f})"
        )
        return judge(out, result, conf.tolerance, policy, summary)
    if conf.absolute_threshold is None:
        return nodata(
            out,
            f"only {len(noise)} secondaries for a noise floor (need {policy.min_noise_pairs}) "
            "and no absolute threshold is configured",
        )
    oriented_threshold = (
        -conf.absolute_threshold if metric.output.worse == "lower" else conf.absolute_threshold
    )
    result = stats.median_above(_oriented(metric, cand), oriented_threshold)
    out["baseline"] = {"absolute_threshold": conf.absolute_threshold}
    summary = (
        f"{worse} with median {np.median(cand):.3g} against the absolute threshold "
        f"{conf.absolute_threshold:.3g} (too few secondaries for a noise floor)"
    )
    return judge(out, result, 0.0, policy, summary)


def _pairwise_rate(values: MetricSample, policy: GatePolicy, name: str) -> dict[str, Any]:
    """A pairwise event (e.g. "the calls differ"): against the same event between the primary and its
    secondary where there are enough, else against an absolute rate."""
    metric, cand, noise = values.metric, values.candidate, values.noise
    conf = policy.check(name)
    need = policy.min_pairs_for(name)
    out = base_result(name, metric_text(metric), policy, rate(cand), None, rate(noise))
    if len(cand) < need:
        return nodata(out, f"only {len(cand)} scored candidate answers in the window (need {need})")
    x_c = sum(cand)
    event = metric.output.event or f"show {metric.label}"
    if len(noise) >= policy.min_noise_pairs:
        x_n = sum(noise)
        diff = x_c / len(cand) - x_n / len(noise)
        result = stats.rates_greater(x_c, len(cand), x_n, len(noise), effect_size=diff)
        summary = (
            f"the candidate {event} in {pct(x_c, len(cand))} of pairs vs {pct(x_n, len(noise))} "
            "between the primary and its own reruns"
        )
        return judge(out, result, conf.tolerance, policy, summary + _most_often(values))
    limit = conf.absolute_threshold if conf.absolute_threshold is not None else conf.tolerance
    result = stats.rate_above(x_c, len(cand), limit)
    summary = f"the candidate {event} in {pct(x_c, len(cand))} of pairs, limit {100 * limit:.1f} %"
    return judge(out, result, limit, policy, summary + _most_often(values))


def _most_often(values: MetricSample) -> str:
    """ " (most often: <detail>, <n>x)" from the output's declared `detail` strings, or ""."""
    if not values.details:
        return ""
    detail, count = values.details.most_common(1)[0]
    return f" (most often: {detail}, {count}x)"


def _per_text_rate(values: MetricSample, policy: GatePolicy, name: str) -> dict[str, Any]:
    metric, cand, base = values.metric, values.candidate, values.baseline
    out = base_result(name, metric_text(metric), policy, rate(cand), rate(base), rate(values.secondary))
    need = policy.min_pairs_for(name)
    population = metric.output.population
    if len(cand) < need:
        return nodata(
            out, f"only {len(cand)} {population} with {metric.label} scores on both sides (need {need})"
        )
    # The reference is the primary's own rate on the same prompts, its reruns (secondaries) included: a
    # detector that also fires on some untouched answers fires as often on the primary's, so only a rate
    # above the primary's own counts, and the reruns make that reference steadier.
    reference = list(base) + list(values.secondary)
    x_c, x_r = sum(cand), sum(reference)
    diff = x_c / len(cand) - x_r / len(reference)
    result = stats.rates_greater(x_c, len(cand), x_r, len(reference), effect_size=diff)
    event = metric.output.event or f"is flagged for {metric.label}"
    whose = "for the primary" + (f" and its {len(values.secondary)} reruns" if values.secondary else "")
    summary = (
        f"candidate {event} in {pct(x_c, len(cand))} of {population} vs {pct(x_r, len(reference))} {whose}"
    )
    return judge(out, result, policy.check(name).tolerance, policy, summary + _most_often(values))


def _per_text_values(values: MetricSample, policy: GatePolicy, name: str) -> dict[str, Any]:
    metric, cand, base = values.metric, values.candidate, values.baseline
    out = base_result(name, metric_text(metric), policy, dist(cand), dist(base), None)
    need = policy.min_pairs_for(name)
    population = metric.output.population
    if len(cand) < need:
        return nodata(
            out, f"only {len(cand)} {population} with {metric.label} scores on both sides (need {need})"
        )
    differences = np.asarray(_oriented(metric, cand)) - np.asarray(_oriented(metric, base))
    result = stats.wilcoxon_greater(differences, policy.mixture_scale)
    summary = (
        f"on {population} the candidate's {metric.label} has median {np.median(cand):.3g} vs "
        f"{np.median(base):.3g} for the primary; the primary is better on "
        f"{0.5 + result.effect_size:.0%} of the same prompts"
    )
    return judge(out, result, policy.check(name).tolerance, policy, summary)


# --- operational checks ------------------------------------------------------------------------------------


def check_error_rate(sample: Sample, policy: GatePolicy, name: str) -> dict[str, Any]:
    errors = sample.candidate_errors
    limit = policy.check(name).tolerance
    out = base_result(name, "candidate 5xx/transport-error rate", policy, rate(errors), None, None)
    need = policy.min_pairs_for(name)
    if len(errors) < need:
        return nodata(out, f"only {len(errors)} mirrored requests in the window (need {need})")
    x = sum(errors)
    result = stats.rate_above(x, len(errors), limit)
    summary = f"the candidate answered {pct(x, len(errors))} of {len(errors)} requests with an error"
    if sample.candidate_error_kinds:
        kind, count = sample.candidate_error_kinds.most_common(1)[0]
        summary += f" (most often {kind!r}, {count}x)"
    summary += f", limit {100 * limit:.1f} %"
    return judge(out, result, limit, policy, summary)


def check_failure_rate(sample: Sample, policy: GatePolicy, name: str) -> dict[str, Any]:
    cand, base = sample.candidate_failures, sample.baseline_failures
    out = base_result(
        name,
        "failure rate, candidate / primary",
        policy,
        rate(cand),
        rate(base),
        rate(sample.secondary_failures),
    )
    need = policy.min_pairs_for(name)
    if len(cand) < need:
        return nodata(out, f"only {len(cand)} mirrored requests in the window (need {need})")
    x_c, x_b = sum(cand), sum(base)
    rate_c, rate_b = x_c / len(cand), x_b / len(base)
    ratio = rate_c / rate_b if rate_b > 0 else (math.inf if rate_c > 0 else 1.0)
    result = stats.rates_greater(x_c, len(cand), x_b, len(base), effect_size=ratio)
    summary = (
        f"the candidate failed {pct(x_c, len(cand))} of requests vs {pct(x_b, len(base))} for the primary"
    )
    return judge(out, result, policy.check(name).tolerance, policy, summary)


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
    out = base_result(name, metric, policy, dist(cand), dist(base), dist(secondary))
    need = policy.min_pairs_for(name)
    if not cand and not base and not secondary:
        # Nothing in the window records this timing (a file from another tool carries only texts):
        # waiting for more pairs will not help, so it cannot hold the verdict back. It is shown, not passed.
        out["required"] = False
        return nodata(out, f"no pair in the window records a {what}")
    if min(len(cand), len(base)) < need:
        return nodata(out, f"only {min(len(cand), len(base))} successful answers with a {what} (need {need})")
    reference, against, path = base, "the primary", ""
    if len(secondary) >= policy.min_noise_pairs:
        # The sidecar calls the candidate in the background, beside the capture of both answers and after
        # the user's request went out; the primary's reruns take that same path. Where they are measurably
        # slower than the primary's answers to users, the path adds a delay of its own that only the
        # reruns cancel (in the simulated demo a model answering in milliseconds looked 4.5x slower than
        # itself); otherwise the primary's answers, the larger sample, are the reference.
        overhead = _quantile_excess(secondary, base)
        if overhead.p_value < policy.alpha and overhead.effect_size > 1.0:
            reference, against = secondary, "the primary's reruns"
            path = (
                f", which take the same mirror path, slower than the users' ({stats.p95(base):.0f} ms for "
                "the primary's answers to users)"
            )
    result = _quantile_excess(cand, reference)
    summary = (
        f"the candidate's P95 {what} is {stats.p95(cand):.0f} ms vs {stats.p95(reference):.0f} ms for "
        f"{against} ({result.effect_size:.2f}x, limit {policy.check(name).tolerance:.2g}x){path}"
    )
    return judge(out, result, policy.check(name).tolerance, policy, summary)


def _quantile_excess(values: list[float], reference: list[float]) -> stats.TestResult:
    """A quantile test: if the P95 of `values` were no higher than that of `reference`, no more of them
    than of the reference would exceed the reference's P95. Effect: the ratio of the two P95s."""
    limit = stats.p95(reference)
    x_v = int(np.sum(np.asarray(values) > limit))
    x_r = int(np.sum(np.asarray(reference) > limit))
    ratio = stats.p95(values) / limit if limit > 0 else 1.0
    return stats.rates_greater(x_v, len(values), x_r, len(reference), effect_size=ratio)


OPERATIONAL_CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec("error_rate", "candidate 5xx/transport-error rate", check_error_rate),
    CheckSpec("failure_rate", "failure rate, candidate / primary", check_failure_rate),
    CheckSpec("latency_p95", "total latency P95, candidate / primary", check_latency),
    CheckSpec("ttft_p95", "time-to-first-token P95, candidate / primary", check_ttft),
)


def all_checks(metrics: Sequence[Metric] | None = None) -> tuple[CheckSpec, ...]:
    """The operational checks, then one per declared output with a `GateCheck`, in registry order."""
    metrics = checked_metrics() if metrics is None else metrics
    return OPERATIONAL_CHECKS + tuple(quality_check(metric) for metric in metrics if metric.output.check)


def run_checks(records: Sequence[dict[str, Any]], policy: GatePolicy) -> list[dict[str, Any]]:
    metrics = checked_metrics()
    sample = collect(records, metrics)
    results = []
    for spec in all_checks(metrics):
        if not policy.check(spec.name).enabled:
            continue
        values = sample.quality.get(spec.name)
        check = values.metric.output.check if values is not None else None
        if check is not None and check.skip_unscored and not values.candidate:  # type: ignore[union-attr]
            # No pair of the window is one it judges (its evaluator did not run, or nothing asked for
            # tools or JSON): the window is judged as if the check did not exist.
            continue
        try:
            result = spec.run(sample, policy, spec.name)
            if values is not None and result["verdict"] == CheckVerdict.NODATA and _nothing_to_judge(values):
                # Every answer it ran on had nothing for it (tool-only turns, refusals): more pairs of the
                # same traffic will not give it data, so it cannot hold the verdict back. Shown, not passed.
                result["required"] = False
                result["reason"] = (
                    f"No verdict: the {values.metric.evaluator} evaluator had nothing to judge on any of the "
                    f"{values.abstained} answers of this window (no text on a side: tool calls or refusals)."
                )
            results.append(result)
        except Exception as exc:  # one broken check must not hide the others' verdicts
            out = base_result(spec.name, spec.metric, policy, None, None, None)
            out["verdict"] = CheckVerdict.ERROR
            out["reason"] = f"the check could not be computed ({type(exc).__name__}: {exc})."
            results.append(out)
    return results


def _nothing_to_judge(values: MetricSample) -> bool:
    return not values.candidate and values.abstained > 0


__all__ = ["CheckSpec", "OPERATIONAL_CHECKS", "all_checks", "metric_text", "quality_check", "run_checks"]
