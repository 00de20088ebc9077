"""The always-valid tests: they reject real differences and keep repeated looks honest."""

from __future__ import annotations

import numpy as np
import pytest

from shadow.gate import stats


def test_binomial_mixture_is_a_valid_p_value_under_repeated_looks() -> None:
    # Identical rates, looked at after every 25 events up to 1000: the share of runs that ever reject
    # must stay under alpha (Ville's inequality), where the fixed-sample binomial test would not.
    rng = np.random.default_rng(0)
    alpha, runs = 0.05, 300
    ever_valid = ever_fixed = 0
    for _ in range(runs):
        draws = rng.random(1000) < 0.5
        rejected_valid = rejected_fixed = False
        for m in range(25, 1001, 25):
            x = int(draws[:m].sum())
            rejected_valid |= stats.binomial_mixture_p(x, m, 0.5) < alpha
            rejected_fixed |= stats.rate_above(x, m, 0.5).p_value_fixed < alpha
        ever_valid += rejected_valid
        ever_fixed += rejected_fixed
    assert ever_valid / runs <= alpha
    assert ever_fixed / runs > ever_valid / runs  # what the correction buys


def test_normal_mixture_rejects_a_real_shift_and_not_noise() -> None:
    rng = np.random.default_rng(1)
    shifted = stats.mann_whitney_greater(rng.normal(0.3, 1, 800), rng.normal(0, 1, 800), tau=0.25)
    assert shifted.p_value < 0.001 and shifted.effect_size > 0.05
    same = [
        stats.mann_whitney_greater(rng.normal(0, 1, 400), rng.normal(0, 1, 400), 0.25).p_value
        for _ in range(100)
    ]
    assert sum(p < 0.05 for p in same) <= 2


def test_normal_mixture_p_is_always_at_least_the_fixed_p() -> None:
    for z in (0.5, 1.5, 2.5, 3.5):
        fixed = float(1 - __import__("scipy").stats.norm.cdf(z))
        assert stats.normal_mixture_p(z, 200, 0.25) >= fixed


def test_rates_and_effects() -> None:
    result = stats.rates_greater(47, 1000, 3, 1000, effect_size=0.044)
    assert result.p_value < 0.001 and result.p_value_fixed < result.p_value
    assert stats.rates_greater(3, 1000, 3, 1000, effect_size=0.0).p_value == pytest.approx(1.0)
    assert stats.rate_above(100, 100, 0.02).p_value < 1e-10
    assert stats.median_above([0.5] * 60, 0.3).p_value < 0.001
    assert stats.wilcoxon_greater([0.0] * 10, 0.25).p_value == 1.0
