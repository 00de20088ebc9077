"""Does a text stay on its topic? The two-segment split whose halves are least alike (`best_split`), the
breaks found by splitting again (`find_breaks`, the evaluator's `breaks`), and how much more alike the
sentences are within the sides of a split than across it (`split_contrast`, `best_contrast`).

One of the coherence evaluator's measure families (`evaluators.coherence`), apart from the order measures
(`evaluators.coherence_order`): these catch a text glued from two sources, those a shuffle.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def best_split(embeddings: np.ndarray, baseline: float = 0.0) -> tuple[float, int]:
    """The two-segment split whose segment centroids are least alike: (their cosine, first sentence after).

    Cosines are rescaled so that the encoder's `baseline` (what unrelated texts reach) reads as 0.
    Each side keeps at least two sentences; with fewer than four sentences there is no split: (1.0, 0).
    """
    n = len(embeddings)
    if n < 4:
        return 1.0, 0
    prefix = np.cumsum(embeddings, axis=0)
    gaps = np.arange(2, n - 1)
    head, tail = prefix[gaps - 1], prefix[-1] - prefix[gaps - 1]
    norms = np.linalg.norm(head, axis=1) * np.linalg.norm(tail, axis=1) + 1e-12
    cosines = (np.einsum("ij,ij->i", head, tail) / norms - baseline) / (1.0 - baseline)
    best = int(cosines.argmin())  # the first of equal minima, as a scan from the left finds
    return (float(cosines[best]), int(gaps[best])) if cosines[best] < 1.0 else (1.0, 0)


def find_breaks(
    embeddings: np.ndarray, *, break_cosine: float, baseline: float = 0.0, offset: int = 0
) -> list[int]:
    """Binary segmentation: split where the segment centroids are least alike while that is below
    `break_cosine`, then look for further breaks in each segment of four sentences or more."""
    cosine, gap = best_split(embeddings, baseline)
    if gap == 0 or cosine >= break_cosine:
        return []
    return sorted(
        find_breaks(embeddings[:gap], break_cosine=break_cosine, baseline=baseline, offset=offset)
        + [offset + gap]
        + find_breaks(embeddings[gap:], break_cosine=break_cosine, baseline=baseline, offset=offset + gap)
    )


def split_contrast(similarity: np.ndarray, gap: int) -> float:
    """Mean similarity within the two sides of a split minus that across it (0 without a split).

    >>> round(split_contrast(np.array([[1, .9, .1, .1], [.9, 1, .1, .1], [.1, .1, 1, .9], [.1, .1, .9, 1]]), 2), 2)
    0.8
    """
    n = len(similarity)
    if not 0 < gap < n:
        return 0.0
    side = np.arange(n) >= gap
    same_side = side[:, None] == side[None, :]
    within = similarity[same_side & ~np.eye(n, dtype=bool)]
    return float(within.mean() - similarity[~same_side].mean()) if within.size else 0.0


def contrast_profile(similarity: np.ndarray) -> np.ndarray:
    """`split_contrast` at every split with two sentences or more on each side (gaps 2 .. n - 2), for one
    (n, n) matrix or a stack (k, n, n) of them, from block sums of the cumulated matrix: O(n^2) in all
    rather than O(n^2) per split.

    >>> blocks = np.array([[1, .9, .1, .1], [.9, 1, .1, .1], [.1, .1, 1, .9], [.1, .1, .9, 1]])
    >>> contrast_profile(blocks).round(2).tolist()
    [0.8]
    """
    stack, single = _as_stack(similarity)
    n = stack.shape[-1]
    if n < 4:
        return np.zeros((0,) if single else (len(stack), 0))
    cumulated = np.zeros((len(stack), n + 1, n + 1))
    cumulated[:, 1:, 1:] = stack.cumsum(axis=1).cumsum(axis=2)
    diagonal = np.zeros((len(stack), n + 1))
    diagonal[:, 1:] = np.diagonal(stack, axis1=1, axis2=2).cumsum(axis=1)
    gaps = np.arange(2, n - 1)
    head = cumulated[:, gaps, gaps] - diagonal[:, gaps]
    tail = (
        cumulated[:, n, n][:, None] - cumulated[:, gaps, n] - cumulated[:, n, gaps] + cumulated[:, gaps, gaps]
    )
    tail = tail - (diagonal[:, n][:, None] - diagonal[:, gaps])
    across = (
        cumulated[:, gaps, n] - cumulated[:, gaps, gaps] + cumulated[:, n, gaps] - cumulated[:, gaps, gaps]
    )
    within_pairs = gaps * (gaps - 1) + (n - gaps) * (n - gaps - 1)
    profile = (head + tail) / within_pairs - across / (2 * gaps * (n - gaps))
    return profile[0] if single else profile


def _as_stack(similarity: np.ndarray) -> tuple[np.ndarray, bool]:
    """A (k, n, n) float stack of `similarity`, and whether it was one (n, n) matrix."""
    stack = np.asarray(similarity, dtype=np.float64)
    return (stack[None], True) if stack.ndim == 2 else (stack, False)


def best_contrast(similarity: np.ndarray) -> float:
    """The largest `split_contrast` over every split with two sentences or more on each side (0 below 4)."""
    profile = contrast_profile(similarity)
    return float(profile.max()) if profile.size else 0.0


def split_z_profile(similarity: np.ndarray, draws: int = 100) -> np.ndarray:
    """`contrast_profile` at every split (gaps 2 .. n - 2), each in standard deviations of the contrast
    that split reaches over random orders of the same sentences (empty below 5 sentences); for one (n, n)
    matrix or a stack (k, n, n) of them, all read against the same reorderings.

    Two sources glued together have one contiguous split that no reordering of their sentences matches; a
    text that stays on its topic has none. Standardising each split against reorderings does two things a
    raw contrast cannot: it takes out how alike a domain's sentences are overall (technical sentences share
    their vocabulary, news sentences less), and it takes out that a split with two sentences on one side
    has a noisier contrast than a split in the middle, which otherwise wins in a long text of short
    sentences. Seeded by the sentence count: the same text always gets the same profile.

    >>> blocks = np.kron(np.array([[1.0, 0.0], [0.0, 1.0]]), np.ones((4, 4)))
    >>> profile = split_z_profile(blocks)
    >>> int(profile.argmax()) + 2, bool(profile.max() > 2.0)
    (4, True)
    """
    stack, single = _as_stack(similarity)
    n = stack.shape[-1]
    if n < 5:
        return np.zeros((0,) if single else (len(stack), 0))
    reordered = _reordered_contrasts(stack, draws)
    profile = (contrast_profile(stack) - reordered.mean(axis=1)) / (reordered.std(axis=1) + 1e-9)
    return profile[0] if single else profile


def _reordered_contrasts(stack: np.ndarray, draws: int) -> np.ndarray:
    """(k, draws, gaps): `contrast_profile` of each symmetric matrix of the stack in each reordering.

    Equal to `contrast_profile` of the reordered matrices, from fewer and smaller arrays: with sentence
    order o, the similarity within the first g sentences is twice the sum of the lower triangle of the
    reordered matrix up to row g - 1 (a cumulated sum of its gathered lower triangle), the similarity of
    each sentence to all others is its row sum, and the rest follows from those two. On texts of 16
    sentences this is two to three times faster than reordering and cumulating whole matrices.
    """
    k, n = stack.shape[0], stack.shape[-1]
    lower, orders = _reordered_lower_triangle(n, draws)
    gaps = np.arange(2, n - 1)
    head = 2.0 * np.cumsum(stack.reshape(k, n * n)[:, lower], axis=2)[:, :, gaps * (gaps - 1) // 2 - 1]
    rows = stack.sum(axis=2) - np.diagonal(stack, axis1=1, axis2=2)  # each sentence against all others
    across = 2.0 * np.cumsum(rows[:, orders], axis=2)[:, :, gaps - 1] - 2.0 * head
    tail = rows.sum(axis=1)[:, None, None] - head - across
    within_pairs = gaps * (gaps - 1) + (n - gaps) * (n - gaps - 1)
    return (head + tail) / within_pairs - across / (2 * gaps * (n - gaps))


def _reordered_lower_triangle(n: int, draws: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices (draws, n (n - 1) / 2) of the lower triangle, row by row, of an (n, n) matrix in each
    of the `reorderings`, and those reorderings. Kept for up to 64 sentences (at most 1.6 MB each)."""
    if n <= 64:
        return _cached_lower_triangle(n, draws)
    return _lower_triangle(n, draws)


def _lower_triangle(n: int, draws: int) -> tuple[np.ndarray, np.ndarray]:
    orders = reorderings(n, draws)
    row, column = np.tril_indices(n, -1)
    lower = (orders[:, row] * n + orders[:, column]).astype(np.intp)
    lower.flags.writeable = False
    return lower, orders


_cached_lower_triangle = lru_cache(maxsize=64)(_lower_triangle)


@lru_cache(maxsize=256)
def reorderings(n: int, draws: int) -> np.ndarray:
    """`draws` random orders of n sentences, seeded by n: the same for every text of n sentences, and so
    drawn once per length rather than once per text and measure."""
    orders = np.argsort(np.random.default_rng(n).random((draws, n)), axis=1)
    orders.flags.writeable = False
    return orders


__all__ = [
    "best_contrast",
    "best_split",
    "contrast_profile",
    "find_breaks",
    "reorderings",
    "split_contrast",
    "split_z_profile",
]
