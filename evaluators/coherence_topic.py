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


def best_contrast(similarity: np.ndarray) -> float:
    """The largest `split_contrast` over every split with two sentences or more on each side (0 below 4)."""
    return max((split_contrast(similarity, gap) for gap in range(2, len(similarity) - 1)), default=0.0)


__all__ = ["best_contrast", "best_split", "find_breaks", "split_contrast"]
