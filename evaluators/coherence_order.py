"""Does a text's order flow? Measures on a sentence-similarity matrix that a shuffle of the same sentences
lowers: adjacent sentences against distant ones (`order_gain` and its variants), and the text's own order
against random orders of its sentences (`permutation_z`).

One of the coherence evaluator's measure families (`evaluators.coherence`), apart from the topic measures
(`evaluators.coherence_topic`): these catch a shuffle, those a splice. Each works on any square similarity
matrix (embedding cosines, shared bigrams, tf-idf, the learned adjacency head).
"""

from __future__ import annotations

import numpy as np


def order_gain(similarity: np.ndarray) -> float:
    """Mean similarity of adjacent sentences minus that of sentences two or more apart."""
    n = len(similarity)
    if n < 3:
        return 0.0
    distance = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    return float(similarity[distance == 1].mean() - similarity[distance >= 2].mean())


def locality_gradient(similarity: np.ndarray) -> float:
    """Mean similarity of adjacent sentences minus that of sentences two or three apart (0 below 4).

    >>> round(locality_gradient(np.array([[1, .8, .5, .2], [.8, 1, .8, .5], [.5, .8, 1, .8], [.2, .5, .8, 1]])), 2)
    0.4
    """
    n = len(similarity)
    if n < 4:
        return 0.0
    distance = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    near = (distance >= 2) & (distance <= 3)
    return float(similarity[distance == 1].mean() - similarity[near].mean())


def order_gain_z(similarity: np.ndarray) -> float:
    """`order_gain` against all pairs, in units of the spread of the text's own pair similarities."""
    n = len(similarity)
    if n < 3:
        return 0.0
    distance = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    pairs = similarity[distance >= 1]
    return float((similarity[distance == 1].mean() - pairs.mean()) / (pairs.std() + 1e-6))


def side_order_gain(similarity: np.ndarray, gap: int) -> float:
    """Mean `order_gain` within each side of a split (sides of three sentences or more; 0 if none)."""
    sides = [(0, gap), (gap, len(similarity))] if gap else [(0, len(similarity))]
    gains = [order_gain(similarity[a:b, a:b]) for a, b in sides if b - a >= 3]
    return float(np.mean(gains)) if gains else 0.0


def permutation_z(scores: np.ndarray, draws: int = 200, gap: int = 0) -> float:
    """How far the text's own order beats random orders of its sentences, in standard deviations: the sum
    of `scores[i, i + 1]` (how well sentence i + 1 follows sentence i) against that sum over `draws` random
    permutations. Reading each text against its own shuffles takes out how alike its sentences are overall,
    which varies far more between texts than order does. The permutations are seeded by the sentence count:
    the same text always gets the same value.

    With `gap`, sentences are only reordered within each side of the split before `gap`: a text glued
    from two sources has two blocks that any reordering across them breaks up, which would read as good
    order; kept apart, only the order within each source counts.

    >>> chain = 1.0 - 0.2 * np.abs(np.subtract.outer(np.arange(6), np.arange(6)))
    >>> permutation_z(chain) > 2.0, abs(permutation_z(np.ones((6, 6)))) < 1e-6
    (True, True)
    >>> blocks = np.kron(np.eye(2), np.ones((4, 4)))
    >>> permutation_z(blocks) > 2.0, abs(permutation_z(blocks, gap=4)) < 1e-6
    (True, True)
    """
    n = len(scores)
    if n < 3:
        return 0.0
    rng = np.random.default_rng(n)
    keys = rng.random((draws, n))
    if 0 < gap < n:
        keys[:, gap:] += 1.0  # every sentence after the gap sorts after every one before it
    orders = np.argsort(keys, axis=1)
    shuffled = scores[orders[:, :-1], orders[:, 1:]].sum(axis=1)
    own = float(np.trace(scores, offset=1))
    return float((own - shuffled.mean()) / (shuffled.std() + 1e-9))


__all__ = ["locality_gradient", "order_gain", "order_gain_z", "permutation_z", "side_order_gain"]
