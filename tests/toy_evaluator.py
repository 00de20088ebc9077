"""A toy evaluator that exists only to prove the extension point: one module plus one registry line.

Per text, it flags answers that shout ("!!!") and gives the share of exclamation marks among the
characters. It declares both outputs, and a critical gate check for the shouting rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from evaluators.base import Evaluator, GateCheck, Output, ScoringContext


class ToyEvaluator(Evaluator):
    name: ClassVar[str] = "toy"
    version: ClassVar[str] = "1"
    higher_is_better: ClassVar[bool] = False
    primary_metric: ClassVar[str] = "shouts"
    pairwise: ClassVar[bool] = False
    outputs: ClassVar[tuple[Output, ...]] = (
        Output(
            "shouts",
            "shouting rate",
            kind="flag",
            event="shouts",
            check=GateCheck("toy_shouting", critical=True, tolerance=0.05, min_pairs=20),
            severity=(0.05, 0.10),
            badness=0.4,
        ),
        Output("exclamation_share", "exclamation share"),
    )

    def score_texts(
        self, texts: Sequence[str], finish_reasons: Sequence[str | None], context: ScoringContext
    ) -> list[dict[str, Any]]:
        return [
            {"shouts": "!!!" in text, "exclamation_share": text.count("!") / max(1, len(text))}
            for text in texts
        ]
