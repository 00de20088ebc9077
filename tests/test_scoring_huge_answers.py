"""A captured answer can hold megabytes (`capture_max_bytes`): the text evaluators whose work grows with
the square of the sentences bound what they read, so one huge answer cannot exhaust the scorer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evaluators.base import ScoringContext, TextPair
from evaluators.coherence import CoherenceEvaluator
from evaluators.semantic import MAX_UNITS, SemanticEvaluator


class StandInEncoder:
    """One seeded random unit vector per text; records how many texts each call passed."""

    name = "stand-in"
    max_seq_length = 512
    similarity_baseline = 0.0

    def __init__(self) -> None:
        self.calls: list[int] = []

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        self.calls.append(len(texts))
        rows = [
            np.random.default_rng(len(text) * 7919 + sum(map(ord, text[:8]))).standard_normal(32)
            for text in texts
        ]
        vectors = np.array(rows).reshape(len(texts), 32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def huge_answer(sentences: int, topic: str) -> str:
    return "".join(f"第{i}步，{topic}的处理继续进行，结果记录在第{i}号表中。" for i in range(sentences))


def test_semantic_compares_a_huge_answer_in_a_bounded_number_of_units() -> None:
    encoder = StandInEncoder()
    reference, candidate = huge_answer(6000, "数据"), huge_answer(5000, "日志")
    result = SemanticEvaluator().score_pairs(
        [TextPair(reference, candidate)], ScoringContext(encoder=encoder)
    )
    assert 0.0 <= result[0]["divergence"] <= 1.0
    # At most 512 runs of sentences a side (500 here), not 11,000 sentences.
    assert len(encoder.calls) == 1 and MAX_UNITS < encoder.calls[0] <= 2 * MAX_UNITS


def test_semantic_keeps_sentences_below_the_bound() -> None:
    encoder = StandInEncoder()
    text = huge_answer(40, "数据")
    SemanticEvaluator().score_pairs([TextPair(text, text)], ScoringContext(encoder=encoder))
    assert encoder.calls == [40]


def test_coherence_reads_a_huge_answer_up_to_max_sentences() -> None:
    encoder = StandInEncoder()
    results = CoherenceEvaluator().score_texts(
        [huge_answer(3000, "数据"), huge_answer(30, "数据")], [None, None], ScoringContext(encoder=encoder)
    )
    assert [result["sentences"] for result in results] == [256, 30]
    assert all(0.0 <= result["score"] <= 1.0 for result in results)
    assert encoder.calls == [256 + 30]
