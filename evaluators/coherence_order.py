"""Does a text's order flow? Measures on a sentence-similarity matrix that a shuffle of the same sentences
lowers: adjacent sentences against distant ones (`order_gain` and its variants), and the text's own order
against random orders of its sentences (`permutation_z`).

One of the coherence evaluator's measure families (`evaluators.coherence`), apart from the topic measures
(`evaluators.coherence_topic`): these catch a shuffle, those a splice. Each works on any square similarity
matrix (embedding cosines, shared bigrams, tf-idf, the learned adjacency head).
"""

from __future__ import annotations

from functools import lru_cache

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
    return float(permutation_z_stack(np.asarray(scores)[None], draws, gap)[0])


def permutation_z_stack(stack: np.ndarray, draws: int = 200, gap: int = 0) -> np.ndarray:
    """`permutation_z` of each matrix of a (k, n, n) stack, all against the same permutations."""
    k, n = stack.shape[0], stack.shape[-1]
    if n < 3:
        return np.zeros(k)
    orders = _permutations(n, draws, gap if 0 < gap < n else 0)
    shuffled = stack[:, orders[:, :-1], orders[:, 1:]].sum(axis=2)  # (k, draws)
    own = np.trace(stack, offset=1, axis1=1, axis2=2)
    return (own - shuffled.mean(axis=1)) / (shuffled.std(axis=1) + 1e-9)


@lru_cache(maxsize=1024)
def _permutations(n: int, draws: int, gap: int) -> np.ndarray:
    """The permutations `permutation_z` reads a text of n sentences against: seeded by n, drawn once per
    (n, gap) rather than for every text and matrix."""
    keys = np.random.default_rng(n).random((draws, n))
    if gap:
        keys[:, gap:] += 1.0  # every sentence after the gap sorts after every one before it
    orders = np.argsort(keys, axis=1)
    orders.flags.writeable = False
    return orders


__all__ = [
    "locality_gradient",
    "order_gain",
    "order_gain_z",
    "permutation_z",
    "permutation_z_stack",
    "side_order_gain",
]
