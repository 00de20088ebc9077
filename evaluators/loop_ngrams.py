"""Signals 2 and 3 of the loop detector (`evaluators.loop`) for a batch of texts: the share of n-grams
that are the fourth copy or later nearby, confirmed by how well zlib compresses the dense region.

An n-gram's earlier copies are its neighbours when the n-grams of the batch are sorted by value and then
by position (`Batch.ngrams`), so "three earlier copies among the last four remembered, within reach" is a
comparison with the entries one to four places back. Only texts with enough repeated n-grams for one
dense window go on to the windowed density and the compression check, one by one.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

import numpy as np

from evaluators.loop_batch import Batch, Finding
from evaluators.loop_lags import longest_true_run
from evaluators.loop_tokens import PROSE

if TYPE_CHECKING:
    from evaluators.loop import LoopThresholds

# Of an n-gram's earlier copies, only the last this many are remembered.
_REMEMBERED_COPIES = 4


def ngram_findings(batch: Batch, limits: LoopThresholds) -> list[Finding | None]:
    """Per text, its repeated-n-gram finding, if any."""
    assert limits.ngram_density is not None
    tokens = batch.tokens
    findings: list[Finding | None] = [None] * len(tokens.lengths)
    ngram, window = limits.ngram, limits.min_loop_units
    long_enough = tokens.lengths >= window + ngram
    if not long_enough.any():
        return findings
    repeated, origin = _repeated_ngrams(batch, limits.ngram_min_earlier, 4 * window * ngram)
    if repeated is None:
        return findings
    per_text = np.bincount(batch.text, weights=repeated, minlength=len(tokens.lengths))
    # A dense window needs this many (the margin covers the rounding of the windowed mean).
    dense_possible = long_enough & (per_text >= limits.ngram_density * window - 0.5)
    for text in dense_possible.nonzero()[0].tolist():
        begin, end = int(tokens.bounds[text]), int(tokens.bounds[text + 1])
        findings[text] = _ngram_finding(batch, limits, begin, repeated[begin:end], origin[begin:end])
    return findings


def _ngram_finding(
    batch: Batch, limits: LoopThresholds, begin: int, repeated: np.ndarray, origin: np.ndarray
) -> Finding | None:
    """Signal 2 in one text (its tokens from `begin` on), confirmed by signal 3."""
    assert limits.ngram_density is not None
    density_threshold, window = limits.ngram_density, limits.min_loop_units
    n = len(repeated)
    density = np.convolve(repeated, np.ones(window) / window, mode="valid")  # density[i]: tokens i..i+w-1
    run = longest_true_run(density >= density_threshold)
    if run is None:
        return None
    first, last = run[0], min(n - 1, run[1] - 1 + window - 1)
    covered = last - first + 1
    strength = min(float(density[run[0] : run[1]].mean()) / density_threshold, covered / window)
    # The looping region starts with the first copy of what repeats in it.
    region_first = int(origin[first : last + 1].min())
    if limits.min_compression_gain is not None:
        ids = batch.tokens.first_appearance_ids(region_first, begin + last)
        strength = min(strength, _compression_gain(ids) / limits.min_compression_gain)
    return Finding(strength, region_first, begin + last, "repeated-ngrams")


def _repeated_ngrams(
    batch: Batch, min_earlier: int, max_distance: int
) -> tuple[np.ndarray | None, np.ndarray]:
    """`repeated[i]`: 1.0 where the n-gram at i has `min_earlier` copies among the last four before it
    in its text within `max_distance` tokens, and holds a word of prose (code, tables and lists have
    templates); `origin[i]`: there, the earliest of those copies, elsewhere i. None: nothing repeats."""
    tokens, ngram = batch.tokens, batch.ngram
    total = len(tokens.digitless)
    origin = np.arange(total)
    if not 1 <= min_earlier <= _REMEMBERED_COPIES:
        # Never reached (only four copies are remembered), or every n-gram counts (the sequential scan
        # this replaces failed there on the first n-gram).
        return None, origin
    # Copies of one n-gram side by side, in text order; n-grams past a text's end are unique.
    order, gram = batch.ngrams.order, batch.ngrams.rank
    text = batch.text[order]
    copies = np.zeros(total, dtype=np.int64)  # earlier copies in reach, of the last four
    for back in range(1, _REMEMBERED_COPIES + 1):
        in_reach = np.zeros(total, dtype=bool)
        in_reach[back:] = (
            (gram[back:] == gram[:-back])
            & (text[back:] == text[:-back])
            & (order[back:] - order[:-back] <= max_distance)
        )
        if not in_reach.any():
            break
        copies += in_reach
    ranks = (copies >= min_earlier).nonzero()[0]
    if not ranks.size:
        return None, origin
    eligible = np.zeros(total + 1, dtype=np.int64)
    ((tokens.zone == PROSE) & tokens.content).cumsum(out=eligible[1:])
    positions = order[ranks]
    holds_word = eligible[positions + ngram] > eligible[positions]
    ranks, positions = ranks[holds_word], positions[holds_word]
    repeated = np.zeros(total, dtype=np.float64)
    repeated[positions] = 1.0
    origin[positions] = order[ranks - copies[ranks]]
    return repeated, origin


def _compression_gain(ids: np.ndarray) -> float:
    """Share of the second half of `ids` that zlib explains by the first half (0: prose, 1: a copy).

    Token ids are renumbered by first appearance and packed two bytes each, so the measure does not depend
    on the script; comparing halves cancels zlib's fixed overhead and the growth with length that a global
    gzip ratio suffers from.
    """
    _, renumbered = np.unique(ids, return_inverse=True)
    raw = renumbered.astype(np.uint16).tobytes()
    half = len(raw) // 4 * 2
    whole, first_half, second_half = (len(zlib.compress(part, 9)) for part in (raw, raw[:half], raw[half:]))
    return float(np.clip(1.0 - (whole - first_half) / second_half, 0.0, 1.0))
