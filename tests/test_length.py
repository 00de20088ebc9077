"""Length ratio (evaluators/length.py)."""

import math

from evaluators.base import ScoringContext, TextPair
from evaluators.length import LengthEvaluator, length_log_ratio


def test_log_ratio_with_add_one_smoothing():
    assert length_log_ratio(9, 19) == math.log(20 / 10)
    assert length_log_ratio(0, 0) == 0.0
    assert math.isfinite(length_log_ratio(0, 100)) and math.isfinite(length_log_ratio(100, 0))


def test_evaluator_output_names():
    pairs = [
        TextPair(reference="你好，世界", candidate="Hello world, 你好"),
        TextPair(reference="", candidate=""),
    ]
    results = LengthEvaluator().score_pairs(pairs, ScoringContext())
    assert results[0] == {"baseline_units": 4, "candidate_units": 4, "log_ratio": 0.0}
    assert results[1]["log_ratio"] == 0.0
    assert LengthEvaluator.metadata()["primary_metric"] == "log_ratio"
