"""Length of the candidate's answer against the baseline's, in units (Han characters + other words).

`log_ratio = ln((candidate_units + 1) / (baseline_units + 1))`: add-one smoothing, so empty answers give a
finite number (both empty: 0; an empty candidate against 99 units: ln(1/100)) instead of a crash or inf.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

from evaluators.base import Evaluator, GateCheck, Output, ScoringContext, TextPair
from shadow.core.text import count_units


def length_log_ratio(baseline_units: int, candidate_units: int) -> float:
    """ln((candidate + 1) / (baseline + 1)).

    >>> length_log_ratio(0, 0)
    0.0
    """
    return math.log((candidate_units + 1) / (baseline_units + 1))


class LengthEvaluator(Evaluator):
    """Pairwise: `{"baseline_units", "candidate_units", "log_ratio"}`."""

    name: ClassVar[str] = "length"
    version: ClassVar[str] = "1.0"
    higher_is_better: ClassVar[bool] = False  # neither direction is better; the gate reads |log_ratio|
    primary_metric: ClassVar[str] = "log_ratio"
    pairwise: ClassVar[bool] = True
    outputs: ClassVar[tuple[Output, ...]] = (
        Output("baseline_units", "length of the primary's answer", worse=None, noise_floor=True),
        Output("candidate_units", "length of the compared answer", worse=None, noise_floor=True),
        Output(
            "log_ratio",
            "log length ratio",
            magnitude=True,
            noise_floor=True,
            event="differ in length from the primary's",
            # Effect: A - 0.5 on |log(candidate units / baseline units)| vs the same for the secondary.
            check=GateCheck("length_ratio", critical=True, tolerance=0.10, absolute_threshold=0.30),
            severity=(0.20, 0.40),
            badness=0.3,
        ),
    )

    def score_pairs(self, pairs: Sequence[TextPair], context: ScoringContext) -> list[dict[str, Any]]:
        results = []
        for pair in pairs:
            baseline, candidate = count_units(pair.reference), count_units(pair.candidate)
            results.append(
                {
                    "baseline_units": baseline,
                    "candidate_units": candidate,
                    "log_ratio": length_log_ratio(baseline, candidate),
                }
            )
        return results
