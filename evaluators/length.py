"""Length of the candidate's answer against the baseline's, in units (Han characters + other words).

`log_ratio = ln((candidate_units + 1) / (baseline_units + 1))`: add-one smoothing, so empty answers give a
finite number (both empty: 0; an empty candidate against 99 units: ln(1/100)) instead of a crash or inf.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

from evaluators.base import Evaluator, ScoringContext, TextPair
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
