"""Acceptance on simulated experiments with known truth (tests/gate_simulation.py).

`scripts/bench_gate` runs 200 seeds per scenario and finds the smallest sample sizes; these tests rerun
each scenario at that documented size with fewer seeds (and a smaller text pool), with looser bounds that
still fail if the gate is broken: an identical candidate must pass, each degraded one must fail.
"""

from __future__ import annotations

import pytest

from shadow.gate import evaluate_gate
from tests.gate_simulation import build_pool, simulate_records

# Smallest sizes (pairs) at which scripts/bench_gate saw >= 95 % right verdicts over 200 seeds.
DOCUMENTED_SIZES = {
    "identical": 200,
    "loop_3pct": 800,
    "longer_40pct": 600,
    "breaks_5pct": 4800,
    "slow_p95_1.5x": 300,
    "off_topic_25pct": 800,
    "all_error": 100,
}


@pytest.fixture(scope="module")
def pool():
    return build_pool(24)


def share(scenario: str, size: int, seeds: range, pool, verdict: str) -> float:
    hits = sum(
        evaluate_gate(simulate_records(scenario, size, seed, pool=pool))["verdict"] == verdict
        for seed in seeds
    )
    return hits / len(seeds)


@pytest.mark.parametrize(
    "scenario", ["loop_3pct", "longer_40pct", "slow_p95_1.5x", "off_topic_25pct", "all_error"]
)
def test_degraded_candidates_fail(pool, scenario: str) -> None:
    assert share(scenario, DOCUMENTED_SIZES[scenario], range(1000, 1040), pool, "fail") >= 0.85


def test_identical_candidate_passes(pool) -> None:
    assert share("identical", DOCUMENTED_SIZES["identical"], range(1000, 1040), pool, "pass") >= 0.9


@pytest.mark.slow
def test_logic_breaks_fail_and_identical_still_passes_at_the_largest_size(pool) -> None:
    size = DOCUMENTED_SIZES["breaks_5pct"]
    assert share("breaks_5pct", size, range(2000, 2012), pool, "fail") >= 10 / 12
    assert share("identical", size, range(2000, 2012), pool, "pass") >= 11 / 12


def test_degradations_are_really_there(pool) -> None:
    # Guard against a simulation that silently stops degrading (the tests above would then test nothing).
    loops = simulate_records("loop_3pct", 3000, 1, pool=pool)
    looped = sum(bool(r["loop"].get("candidate", {}).get("flag")) for r in loops)
    assert 0.02 < looped / 3000 < 0.05
    longer = simulate_records("longer_40pct", 500, 1, pool=pool)
    ratios = [r["length"]["log_ratio"] for r in longer if r.get("length")]
    assert 0.25 < sum(ratios) / len(ratios) < 0.45
