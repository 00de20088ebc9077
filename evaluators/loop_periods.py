"""Signal 1 of the loop detector (`evaluators.loop`) for a batch of texts: exact periodicity.

For each period L, the first longest stretch where every token equals the one L back, once on the tokens
and once with digits normalised; only the strongest finding of each pass and text (the first of equals)
can decide a text's result, so only that one is kept. A stretch of L >= n tokens is a run of n-grams
equal to the n-gram L back, so for those periods the stretches come from the pairs of equal n-grams (few
in prose); shorter periods are compared token by token over the whole batch at once, and texts that are
mostly one short loop period by period. The digit-normalised pass only looks at periods where
normalising changes a comparison: elsewhere it would find what the first pass found, later.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from evaluators.loop_batch import Batch, Finding, dense_texts, every_period, period_offsets
from evaluators.loop_lags import first_longest_runs, first_maxima, longest_true_run, runs
from evaluators.loop_tokens import CODE, TABLE

if TYPE_CHECKING:
    from evaluators.loop import LoopThresholds


def max_periods(limits: LoopThresholds, lengths: np.ndarray) -> np.ndarray:
    """Per text, its longest period: two copies must fit."""
    return np.minimum(limits.max_period_units, lengths // 2)


@dataclass(frozen=True, slots=True)
class _Stretches:
    """Periodic stretches (the first longest of their text and period), by text and then by period."""

    text: np.ndarray
    period: np.ndarray
    first: np.ndarray  # batch indices of the tokens covered
    last: np.ndarray

    @staticmethod
    def join(parts: list[_Stretches]) -> _Stretches:
        text, period, first, last = (np.concatenate(column) for column in zip(*parts, strict=True))
        order = np.lexsort((period, text))
        return _Stretches(text[order], period[order], first[order], last[order])

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.text, self.period, self.first, self.last))

    def where(self, keep: np.ndarray) -> _Stretches:
        return _Stretches(self.text[keep], self.period[keep], self.first[keep], self.last[keep])


def periodic_findings(batch: Batch, limits: LoopThresholds) -> list[list[Finding]]:
    """Per text, the strongest exact-period finding of each pass (tokens, digit-normalised), in order."""
    findings: list[list[Finding]] = [[] for _ in range(len(batch.tokens.lengths))]
    longest = max_periods(limits, batch.tokens.lengths)
    for digit_normalised, stretches in enumerate(_stretches(batch, longest)):
        for text, found in _strongest(batch, limits, stretches, bool(digit_normalised)):
            findings[text].append(found)
    return findings


def _stretches(batch: Batch, longest: np.ndarray) -> list[_Stretches]:
    """The first longest stretch of every text and period up to `longest` that covers two copies: of
    the tokens, then (where normalising digits changes a comparison) of the digit-normalised tokens."""
    tokens, ngram = batch.tokens, batch.ngram
    offsets = period_offsets(longest)
    changed, changed_texts = _digit_periods(batch, longest, offsets)
    room = tokens.bounds[batch.text + 1] - 1 - np.arange(len(batch.text))  # tokens after each in its text
    passes = [[_short_stretches(batch, tokens.exact, longest, offsets, room, None)]]
    if changed_texts.any():
        passes.append([_short_stretches(batch, tokens.digitless, longest, offsets, room, changed)])
    shortest = np.full(len(longest), ngram)
    partners = batch.ngrams.partners(tokens.bounds, batch.text, shortest, longest)
    dense = dense_texts(partners, tokens.lengths, shortest, longest)
    base = offsets[batch.text]
    for earlier, later in partners.pairs(~dense):
        flat = base[earlier] + later - earlier
        # The first pass needs the n-grams' tokens equal, not only once digits are normalised.
        same = np.ones(len(earlier), dtype=bool)
        suspect = changed_texts[batch.text[earlier]].nonzero()[0]
        for offset in range(ngram):
            same[suspect] &= tokens.exact[earlier[suspect] + offset] == tokens.exact[later[suspect] + offset]
        passes[0].append(_pair_stretches(batch, offsets, flat[same], earlier[same]))
        if len(passes) > 1:
            chosen = changed[flat]
            passes[1].append(_pair_stretches(batch, offsets, flat[chosen], earlier[chosen]))
    for text in dense.nonzero()[0].tolist():  # mostly one short loop: compare period by period
        periods = range(ngram, int(longest[text]) + 1)
        passes[0].append(_dense_stretches(batch, tokens.exact, text, periods))
        if len(passes) > 1:
            periods = [period for period in periods if changed[offsets[text] + period]]
            passes[1].append(_dense_stretches(batch, tokens.digitless, text, periods))
    return [_Stretches.join(parts) for parts in passes]


def _dense_stretches(batch: Batch, ids: np.ndarray, text: int, periods: Iterable[int]) -> _Stretches:
    begin = int(batch.tokens.bounds[text])
    values = ids[begin : batch.tokens.bounds[text + 1]]
    found = []
    for period in periods:
        run = longest_true_run(values[period:] == values[:-period])
        if run is not None and run[1] - run[0] >= period:  # two copies
            found.append((text, period, begin + run[0], begin + run[1] + period - 1))
    columns = np.array(found, dtype=np.int64).reshape(-1, 4).T
    return _Stretches(*columns)


def _digit_periods(batch: Batch, longest: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(text, period) flags, at `offsets[text] + period`, where normalising digits makes two tokens one
    period apart equal (the only periods where the second pass can differ), and the texts with any."""
    tokens = batch.tokens
    changed = np.zeros(int(offsets[-1]), dtype=bool)
    texts = np.zeros(len(longest), dtype=bool)
    differs = tokens.digitless != tokens.exact
    if not differs.any():
        return changed, texts
    ranks = batch.unigrams.ranks()
    in_group = np.zeros(batch.unigrams.distinct(), dtype=bool)
    in_group[ranks[differs]] = True  # "0" pairs with "12" as well as "12" with "34"
    shortest = np.ones(len(longest), dtype=np.int64)
    partners = batch.unigrams.partners(tokens.bounds, batch.text, shortest, longest, in_group[ranks])
    dense = dense_texts(partners, tokens.lengths, shortest, longest)
    text, lag = every_period(shortest, np.where(dense, longest, shortest - 1))
    changed[offsets[text] + lag] = True  # texts of numbers: every period may change
    texts[dense] = True
    for earlier, later in partners.pairs(~dense):
        apart = tokens.exact[earlier] != tokens.exact[later]
        text = batch.text[earlier[apart]]
        changed[offsets[text] + (later - earlier)[apart]] = True
        texts[text] = True
    return changed, texts


def _short_stretches(
    batch: Batch,
    ids: np.ndarray,
    longest: np.ndarray,
    offsets: np.ndarray,
    room: np.ndarray,
    only: np.ndarray | None,
) -> _Stretches:
    """Periods shorter than the n-gram, each compared over the whole batch in one operation."""
    tokens, total = batch.tokens, len(ids)
    parts = [_Stretches(*(np.zeros(0, dtype=np.int64),) * 4)]
    for period in range(1, min(batch.ngram, int(longest.max(initial=0)) + 1)):
        equal = np.zeros(total, dtype=bool)
        equal[: total - period] = ids[period:] == ids[:-period]
        equal &= room >= period
        allowed = period <= longest
        if only is not None:
            allowed &= only[np.minimum(offsets[:-1] + period, len(only) - 1)]
        if not allowed.all():
            equal &= allowed[batch.text]
        start, length = first_longest_runs(tokens.bounds, equal)
        text = (length >= period).nonzero()[0]
        first = tokens.bounds[text] + start[text]
        parts.append(_Stretches(text, np.full(len(text), period), first, first + length[text] + period - 1))
    return _Stretches.join(parts)


def _pair_stretches(batch: Batch, offsets: np.ndarray, flat: np.ndarray, earlier: np.ndarray) -> _Stretches:
    """Periods of at least the n-gram's length, from pairs of equal n-grams (`flat`: their text and
    period, as `offsets` numbers them): a run of such pairs makes a stretch `ngram - 1` tokens longer,
    and every stretch that long is such a run."""
    shift = max(len(batch.text).bit_length(), 1)
    keys = np.sort((flat << shift) | earlier)
    run_first, run_length = runs(keys)
    run_flat = run_first >> shift
    chosen = first_maxima(run_length, run_flat)
    first = run_first[chosen] & ((1 << shift) - 1)
    text = batch.text[first]
    period = run_flat[chosen] - offsets[text]
    length = run_length[chosen] + batch.ngram - 1
    return _Stretches(text, period, first, first + length + period - 1).where(length >= period)


def _strongest(
    batch: Batch, limits: LoopThresholds, stretches: _Stretches, digit_normalised: bool
) -> list[tuple[int, Finding]]:
    zone = batch.zones(stretches.first, stretches.last)
    if digit_normalised:
        # Numbered table rows and code are legitimately alike up to their numbers, and rows of numbers
        # alone ("| 1 | 2 |") are no loop.
        words = batch.words[stretches.first + stretches.period] - batch.words[stretches.first]
        keep = (zone != CODE) & (zone != TABLE) & (words >= 3)
        stretches, zone = stretches.where(keep), zone[keep]
    if not len(stretches.text):
        return []
    strength = _period_strengths(batch, limits, stretches, zone)
    reason = "numbered-period" if digit_normalised else "period"
    text, period, first, last = stretches
    return [
        (
            int(text[index]),
            Finding(float(strength[index]), int(first[index]), int(last[index]), reason, int(period[index])),
        )
        for index in first_maxima(strength, text).tolist()
    ]


def _period_strengths(
    batch: Batch, limits: LoopThresholds, stretches: _Stretches, zone: np.ndarray
) -> np.ndarray:
    """How far each exact periodic stretch goes past the thresholds that apply to it (>= 1: a loop).

    The short-sentence strength needs three distinct words in the period; they are counted only where
    that strength could make the stretch its text's strongest."""
    text, period, first, last = stretches
    covered = last - first + 1
    count = covered / period
    code_like = (zone == CODE) | (zone == TABLE)
    count_needed = np.where(code_like, limits.code_min_count, limits.min_count)
    units_needed = np.where(code_like, float(limits.code_min_loop_units), float(limits.min_loop_units))
    content_in_period = batch.content[first + period] - batch.content[first]
    symbols = (content_in_period == 0) & (batch.separator[first + period] - batch.separator[first] == period)
    units_needed = np.where(symbols, np.maximum(units_needed, limits.min_symbol_units), units_needed)
    tail = batch.at_length_limit[text] & (last == batch.tokens.bounds[text + 1] - 1)
    count_needed = np.where(tail, count_needed * limits.length_relief, count_needed)
    units_needed = np.where(tail, units_needed * limits.length_relief, units_needed)
    strength = np.minimum(count / count_needed, covered / units_needed)
    content_units = batch.content[last + 1] - batch.content[first]
    sentence = np.minimum(count / limits.short_sentence_count, content_units / limits.short_sentence_content)
    open_question = ~code_like & (content_in_period >= 3) & (sentence > strength)
    if open_question.any():
        strongest = strength[first_maxima(strength, text)]
        open_question &= sentence >= strongest[np.searchsorted(np.unique(text), text)]
    for index in open_question.nonzero()[0].tolist():
        if batch.distinct_words(int(first[index]), int(first[index] + period[index])) >= 3:
            strength[index] = sentence[index]  # a short sentence said again and again
    return strength
