"""Does a text stay on its topic? The two-segment split whose halves are least alike (`best_split`), the
breaks found by splitting again (`find_breaks`, the evaluator's `breaks`), and how much more alike the
sentences are within the sides of a split than across it (`split_contrast`, `best_contrast`).

One of the coherence evaluator's measure families (`evaluators.coherence`), apart from the order measures
(`evaluators.coherence_order`): these catch a text glued from two sources, those a shuffle.
"""

from __future__ import annotations

import numpy as np


def best_split(embeddings: np.ndarray, baseline: float = 0.0) -> tuple[float, int]:
    """The two-segment split whose segment centroids are least alike: (their cosine, first sentence after).

    Cosines are rescaled so that the encoder's `baseline` (what unrelated texts reach) reads as 0.
    Each side keeps at least two sentences; with fewer than four sentences there is no split: (1.0, 0).
    """
    n = len(embeddings)
    best, best_gap = 1.0, 0
    prefix = np.cumsum(embeddings, axis=0)
    total = prefix[-1]
    for gap in range(2, n - 1):
        head, tail = prefix[gap - 1], total - prefix[gap - 1]
        cosine = float(head @ tail / (np.linalg.norm(head) * np.linalg.norm(tail) + 1e-12))
        cosine = (cosine - baseline) / (1.0 - baseline)
        if cosine < best:
            best, best_gap = cosine, gap
    return best, best_gap


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
    stack = np.asarray(similarity, dtype=np.float64)
    single = stack.ndim == 2
    stack = stack[None] if single else stack
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


def best_contrast(similarity: np.ndarray) -> float:
    """The largest `split_contrast` over every split with two sentences or more on each side (0 below 4)."""
    profile = contrast_profile(similarity)
    return float(profile.max()) if profile.size else 0.0


def split_z_profile(similarity: np.ndarray, draws: int = 100) -> np.ndarray:
    """`contrast_profile` at every split (gaps 2 .. n - 2), each in standard deviations of the contrast
    that split reaches over random orders of the same sentences (empty below 5 sentences).

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
    n = len(similarity)
    if n < 5:
        return np.zeros(0)
    rng = np.random.default_rng(n)
    orders = np.argsort(rng.random((draws, n)), axis=1)
    shuffled = np.asarray(similarity, dtype=np.float64)[orders[:, :, None], orders[:, None, :]]
    reordered = contrast_profile(shuffled)
    return (contrast_profile(similarity) - reordered.mean(axis=0)) / (reordered.std(axis=0) + 1e-9)


__all__ = [
    "best_contrast",
    "best_split",
    "contrast_profile",
    "find_breaks",
    "split_contrast",
    "split_z_profile",
]
