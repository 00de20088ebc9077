"""The coherence measures' fast paths equal the direct computations they replace: the reordered split
contrasts against `contrast_profile` of explicitly reordered matrices, the stacked permutation z against
one matrix at a time, the vectorised best split against a scan, the integer n-gram counts against
counting joined strings."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from evaluators.coherence_cues import (
    CACHED_SENTENCE_CHARS,
    TextUnits,
    lexical_units,
    tfidf_similarity,
)
from evaluators.coherence_order import permutation_z, permutation_z_stack
from evaluators.coherence_topic import _reordered_contrasts, best_split, contrast_profile, reorderings


def _symmetric(rng: np.random.Generator, n: int) -> np.ndarray:
    matrix = rng.random((n, n))
    return (matrix + matrix.T) / 2


@pytest.mark.parametrize("n", [5, 6, 17, 64, 65, 90])  # both sides of the cached-index bound
def test_reordered_contrasts_equal_contrast_profile_of_reordered_matrices(n: int) -> None:
    rng = np.random.default_rng(n)
    stack = np.stack([_symmetric(rng, n) for _ in range(3)])
    orders = reorderings(n, 40)
    direct = np.stack([contrast_profile(matrix[orders[:, :, None], orders[:, None, :]]) for matrix in stack])
    assert np.allclose(_reordered_contrasts(stack, 40), direct, atol=1e-12)


def test_stacked_permutation_z_equals_one_matrix_at_a_time() -> None:
    rng = np.random.default_rng(3)
    stack = rng.random((4, 12, 12))  # the adjacency head is not symmetric
    for gap in (0, 5):
        together = permutation_z_stack(stack, gap=gap)
        assert together == pytest.approx([permutation_z(matrix, gap=gap) for matrix in stack], abs=1e-12)


def test_vectorised_best_split_equals_a_scan() -> None:
    rng = np.random.default_rng(4)
    for n in (4, 5, 11, 30):
        embeddings = rng.normal(size=(n, 8))
        embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
        best, best_gap = 1.0, 0
        for gap in range(2, n - 1):
            head, tail = embeddings[:gap].sum(axis=0), embeddings[gap:].sum(axis=0)
            cosine = (head @ tail / (np.linalg.norm(head) * np.linalg.norm(tail) + 1e-12) - 0.1) / 0.9
            if cosine < best:
                best, best_gap = cosine, gap
        found = best_split(embeddings, 0.1)
        assert found[1] == best_gap and found[0] == pytest.approx(best, abs=1e-12)


def test_tfidf_equals_counting_joined_strings() -> None:
    sentences = [
        "北京下雨，路上车多。",
        "Rain in Beijing slows the traffic downtown.",
        "北京的交通很慢。",
        "足球比赛。",
    ]
    for size in (1, 2, 3):
        bags = [
            Counter("\x1f".join(units[i : i + size]) for i in range(len(units) - size + 1))
            for units in map(lexical_units, sentences)
        ]
        frequency = Counter(gram for bag in bags for gram in bag)
        vocabulary = sorted(frequency)
        counts = np.array(
            [[bag[g] * math.log((len(sentences) + 1) / frequency[g]) for g in vocabulary] for bag in bags]
        )
        unit = counts / np.maximum(np.linalg.norm(counts, axis=1, keepdims=True), 1e-12)
        assert np.allclose(tfidf_similarity(sentences, size), unit @ unit.T, atol=1e-12)


def test_ngram_codes_of_a_huge_vocabulary_number_the_same_ngrams_alike() -> None:
    units = TextUnits(["北京下雨，北京下雨。", "北京下雨了。", "足球比赛在北京。"])
    small_codes, small_rows = units.grams(3)
    units.vocabulary = 3_000_000  # vocabulary ** 3 > 2 ** 62: the distinct n-grams are numbered instead
    large_codes, large_rows = units.grams(3)
    assert small_rows.tolist() == large_rows.tolist()
    same = lambda codes: (codes[:, None] == codes[None, :]).tolist()  # noqa: E731
    assert same(small_codes) == same(large_codes)


def test_long_sentences_stay_out_of_the_unit_cache() -> None:
    cache = lexical_units.cache  # type: ignore[attr-defined]
    cache.cache_clear()  # a cache filled to its bound by earlier tests would not grow
    lexical_units("长" * (CACHED_SENTENCE_CHARS + 1))
    assert cache.cache_info().currsize == 0
    lexical_units("一句不长的话。")
    assert cache.cache_info().currsize == 1
