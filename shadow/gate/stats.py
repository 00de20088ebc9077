"""One-sided tests whose p-values stay valid however often the gate looks.

The gate is re-run every few minutes during a rollout, on a window that keeps growing. A fixed-sample
p-value checked at every look would fail an identical candidate far more often than `1 - confidence`.
We therefore judge with *always-valid* p-values (Johari, Pekelis & Walsh, "Always valid inference",
2017; Howard et al., "Time-uniform, nonparametric, nonasymptotic confidence sequences", 2021):

- `p = min(1, 1 / L_n)`, where `L_n` is a mixture likelihood ratio, a non-negative (super)martingale
  under the null hypothesis. By Ville's inequality, `P(L_n >= 1/alpha for some n) <= alpha`, so the
  chance that *any* look ever rejects a candidate that is no worse is at most alpha, for any number of
  looks at any times. It needs no state between runs: the gate does not have to count its looks.
- Rates (loops, breaks, errors, latency exceedances): an exact binomial mixture. For two samples we
  condition on the total number of events, as Fisher's exact test does: under the null each event
  belongs to the candidate with probability `n_c / (n_c + n_b)`. The mixing distribution is uniform on
  the alternative side, `q ~ U(p0, 1)`, which gives a closed form.
- Distributions (divergence, length, coherence): the Mann-Whitney U (or, paired, the Wilcoxon signed-rank)
  statistic as a z-score with effective sample size `n_eff`; `L_n` is the one-sided normal mixture
  (`theta ~ N+(0, tau^2)`) applied to it, valid asymptotically (rank statistics are asymptotically
  normal sums). `tau` (`mixture_scale`) is the standardized effect the test is most sensitive to.

Each result also carries the classical fixed-sample p-value (Mann-Whitney, Wilcoxon, Fisher, binomial),
for comparison; only the always-valid one decides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special, stats


@dataclass(frozen=True, slots=True)
class TestResult:
    test: str
    p_value: float
    """Always valid: judge with this one."""
    p_value_fixed: float
    """Classical fixed-sample p-value, for comparison with a single look."""
    effect_size: float


def normal_mixture_p(z: float, n_eff: float, tau: float) -> float:
    """Always-valid one-sided p-value for a z-score built from `n_eff` standardized observations.

    `L = 2 (1 + n tau^2)^(-1/2) exp(n tau^2 z^2 / (2 (1 + n tau^2))) Phi(z sqrt(n tau^2 / (1 + n tau^2)))`
    is the likelihood ratio of a Brownian motion with drift mixed over `theta ~ N+(0, tau^2)`.

    >>> round(normal_mixture_p(0.0, 100, 0.25), 3)
    1.0
    >>> normal_mixture_p(5.0, 100, 0.25) < 0.001
    True
    """
    if not (math.isfinite(z) and n_eff > 0):
        return 1.0
    v = n_eff * tau * tau
    shrink = v / (1.0 + v)
    log_l = (
        math.log(2.0)
        - 0.5 * math.log1p(v)
        + 0.5 * shrink * z * z
        + float(special.log_ndtr(z * math.sqrt(shrink)))
    )
    return float(min(1.0, math.exp(-log_l)))


def binomial_mixture_p(x: int, m: int, p0: float) -> float:
    """Always-valid p-value for H0: success probability <= p0, after `x` successes in `m` trials.

    `L = integral over q in (p0, 1) of the likelihood ratio (q/p0)^x ((1-q)/(1-p0))^(m-x), q uniform`.

    >>> binomial_mixture_p(0, 10, 0.5)
    1.0
    >>> binomial_mixture_p(20, 20, 0.02) < 1e-10
    True
    """
    if m <= 0 or not 0.0 < p0 < 1.0:
        return 1.0
    a, b = x + 1.0, m - x + 1.0
    upper = float(special.betaincc(a, b, p0))
    if upper <= 0.0:
        return 1.0
    log_l = (
        float(special.betaln(a, b))
        + math.log(upper)
        - math.log1p(-p0)
        - x * math.log(p0)
        - (m - x) * math.log1p(-p0)
    )
    return float(min(1.0, math.exp(-log_l)))


def mann_whitney_greater(candidate: Sequence[float], reference: Sequence[float], tau: float) -> TestResult:
    """Is `candidate` stochastically greater than `reference`? Effect: Vargha-Delaney A - 1/2."""
    x = np.asarray(candidate, dtype=float)
    y = np.asarray(reference, dtype=float)
    n1, n2 = len(x), len(y)
    result = stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic", use_continuity=False)
    a_stat = float(result.statistic) / (n1 * n2)
    z = _z_of(float(result.pvalue))
    n_eff = n1 * n2 / (n1 + n2)
    # z ~ (A - 1/2) sqrt(12 n_eff): the standardized effect per effective observation is (A - 1/2) sqrt(12).
    return TestResult(
        test="Mann-Whitney U, one-sided",
        p_value=normal_mixture_p(z, n_eff, tau),
        p_value_fixed=float(result.pvalue),
        effect_size=a_stat - 0.5,
    )


def wilcoxon_greater(differences: Sequence[float], tau: float) -> TestResult:
    """Paired: are the differences positive? Effect: P(d > 0) + P(d = 0)/2 - 1/2."""
    d = np.asarray(differences, dtype=float)
    n = len(d)
    effect = (float(np.sum(d > 0)) + 0.5 * float(np.sum(d == 0))) / n - 0.5
    if not np.any(d != 0):
        return TestResult("Wilcoxon signed-rank, one-sided", 1.0, 1.0, effect)
    result = stats.wilcoxon(d, alternative="greater", zero_method="zsplit", method="approx")
    z = _z_of(float(result.pvalue))
    return TestResult(
        test="Wilcoxon signed-rank, one-sided",
        p_value=normal_mixture_p(z, n, tau),
        p_value_fixed=float(result.pvalue),
        effect_size=effect,
    )


def rates_greater(x_c: int, n_c: int, x_b: int, n_b: int, *, effect_size: float) -> TestResult:
    """Is the candidate's rate `x_c / n_c` higher than the reference's `x_b / n_b`?"""
    fixed = stats.fisher_exact([[x_c, n_c - x_c], [x_b, n_b - x_b]], alternative="greater").pvalue
    p0 = n_c / (n_c + n_b)
    return TestResult(
        test="Fisher's exact, one-sided; sequential conditional binomial",
        p_value=binomial_mixture_p(x_c, x_c + x_b, p0),
        p_value_fixed=float(fixed),
        effect_size=effect_size,
    )


def rate_above(x: int, n: int, p0: float) -> TestResult:
    """Is the rate `x / n` higher than the fixed `p0`? Effect: the rate itself."""
    fixed = stats.binomtest(x, n, p0, alternative="greater").pvalue
    return TestResult(
        test="exact binomial, one-sided; sequential binomial mixture",
        p_value=binomial_mixture_p(x, n, p0),
        p_value_fixed=float(fixed),
        effect_size=x / n,
    )


def median_above(values: Sequence[float], threshold: float) -> TestResult:
    """Sign test: is the median above `threshold`? Effect: median - threshold."""
    v = np.asarray(values, dtype=float)
    above = int(np.sum(v > threshold))
    decided = above + int(np.sum(v < threshold))
    fixed = stats.binomtest(above, decided, 0.5, alternative="greater").pvalue if decided else 1.0
    return TestResult(
        test="sign test against the absolute threshold, one-sided; sequential binomial mixture",
        p_value=binomial_mixture_p(above, decided, 0.5),
        p_value_fixed=float(fixed),
        effect_size=float(np.median(v)) - threshold,
    )


def p95(values: Sequence[float]) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), 95))


def _z_of(p_value: float) -> float:
    return float(stats.norm.isf(min(max(p_value, 1e-300), 1.0)))


__all__ = [
    "TestResult",
    "binomial_mixture_p",
    "mann_whitney_greater",
    "median_above",
    "normal_mixture_p",
    "p95",
    "rate_above",
    "rates_greater",
    "wilcoxon_greater",
]
