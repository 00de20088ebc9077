"""One language's coherence model: the two logits `scripts/fit_coherence` fits and the break threshold.

The weights themselves are data (`evaluators.coherence_weights`, written by the fitting script); this
module only says what they mean, so that the evaluator and the script read them one way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class CoherenceModel:
    """`global_*`: the logit of "original rather than spliced"; `local_*`: "original rather than
    shuffled"; `break_logit`: below it the global logit reports a logic break; `neutral`: the value of a
    measure whose inputs (the sentences' text, the encoder's heads) are missing."""

    global_weights: Mapping[str, float]
    global_bias: float
    local_weights: Mapping[str, float]
    local_bias: float
    break_logit: float
    neutral: Mapping[str, float]

    def global_logit(self, features: Mapping[str, float], shift: float = 0.0) -> float:
        return self.global_bias + shift + sum(w * features[k] for k, w in self.global_weights.items())

    def local_logit(self, features: Mapping[str, float]) -> float:
        return self.local_bias + sum(w * features[k] for k, w in self.local_weights.items())


__all__ = ["CoherenceModel"]
