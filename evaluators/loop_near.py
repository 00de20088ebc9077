"""Signal 1 of the loop detector (`evaluators.loop`) for a batch of texts: near periodicity.

In prose, `fuzzy_match` of the words equal to the word one period back, over `fuzzy_min_count` copies of
the period (a loop where a counter or a word changes between copies). A period is compared in full only
if a window of it holds enough pairs of equal words one period apart (from the sorted tokens; in prose,
almost no period does), or if the text is mostly one loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from evaluators.loop_batch import Batch, Finding, dense_texts, period_offsets, prefix
from evaluators.loop_lags import Rows, first_longest_runs, longest_true_run
from evaluators.loop_tokens import PROSE

if TYPE_CHECKING:
    from evaluators.loop import LoopThresholds


def max_fuzzy_periods(limits: LoopThresholds, lengths: np.ndarray) -> np.ndarray:
    """Longer periods cannot hold `fuzzy_min_count` copies (nor any comparison past the text's end)."""
    if limits.fuzzy_match is None:
        return np.zeros(len(lengths), dtype=np.int64)
    copies = (lengths / limits.fuzzy_min_count).astype(np.int64)
    return np.maximum(np.minimum(np.minimum(limits.max_period_units, copies), lengths - 1), 0)


def fuzzy_periodic_findings(batch: Batch, limits: LoopThresholds) -> list[list[Finding]]:
    """Per text, its near-period findings by period: `fuzzy_match` of the words equal the word one
    period back, over at least `fuzzy_min_count` copies (a word or a counter changes between copies)."""
    assert limits.fuzzy_match is not None
    tokens = batch.tokens
    findings: list[list[Finding]] = [[] for _ in range(len(tokens.lengths))]
    longest = max_fuzzy_periods(limits, tokens.lengths)
    texts, periods, dense = _fuzzy_candidates(batch, limits, longest)
    for text in dense.nonzero()[0].tolist():  # mostly one loop: period by period
        for period in range(limits.fuzzy_min_period, int(longest[text]) + 1):
            found = _near_period(batch, limits, text, period)
            if found is not None:
                findings[text].append(found)
    windows = np.round((limits.fuzzy_min_count - 1) * periods).astype(np.int64)
    for chosen, rows in Rows.of(tokens.bounds, texts, periods).chunks():
        for found in _near_periods(batch, limits, rows, windows[chosen]):
            findings[int(batch.text[found.first])].append(found)
    return findings


def _fuzzy_candidates(
    batch: Batch, limits: LoopThresholds, longest: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(text, period) where some window of `(fuzzy_min_count - 1) * period` comparisons holds enough pairs
    of equal words one period apart for `fuzzy_match`, by text and then by period: no other period fits.
    And the texts that are mostly one loop, where counting the pairs would cost more than trying all."""
    assert limits.fuzzy_match is not None
    tokens = batch.tokens
    offsets = period_offsets(longest)
    period_of = np.arange(int(offsets[-1])) - np.repeat(offsets[:-1], longest + 1)  # by (text, period)
    window_of = np.round((limits.fuzzy_min_count - 1) * period_of).astype(np.int64)
    needed_of = limits.fuzzy_match * window_of / 2
    at_least = np.maximum(np.ceil(needed_of).astype(np.int64), 1)
    shift = max(int(len(tokens.exact) + window_of.max(initial=0)).bit_length(), 1)
    base = offsets[batch.text]
    shortest = np.full(len(longest), limits.fuzzy_min_period)
    partners = batch.unigrams.partners(tokens.bounds, batch.text, shortest, longest, tokens.content)
    dense = dense_texts(partners, tokens.lengths, shortest, longest)
    found = [np.zeros(0, dtype=np.int64)]
    for earlier, later in partners.pairs(~dense):
        keys = np.sort(((base[earlier] + later - earlier) << shift) | earlier)
        flat = keys >> shift
        # The pairs of one period come in order; a window from one of them holds `at_least` pairs when
        # the pair that many places on is still of that period and inside the window.
        ahead = np.arange(len(keys)) + at_least[flat] - 1
        enough = keys[np.minimum(ahead, len(keys) - 1)] < keys + window_of[flat]
        enough &= ahead < len(keys)
        found.append(_distinct(flat[enough]))
    flat = np.sort(np.concatenate(found))
    return offsets.searchsorted(flat, side="right") - 1, period_of[flat], dense


def _distinct(ascending: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array (no second sort, as `np.unique` would do)."""
    new = np.ones(len(ascending), dtype=bool)
    new[1:] = ascending[1:] != ascending[:-1]
    return ascending[new]


def _near_periods(batch: Batch, limits: LoopThresholds, rows: Rows, windows: np.ndarray) -> list[Finding]:
    """`_near_period` for many (text, period) rows at once."""
    assert limits.fuzzy_match is not None
    tokens = batch.tokens
    row, index, position = rows.slots()
    later = np.minimum(position + rows.lag[row], len(tokens.digitless) - 1)
    words = tokens.content[later]
    words[rows.ends()] = False
    same = (tokens.digitless[later] == tokens.digitless[position]) & words
    matched, content = prefix(same), prefix(words)
    slot = np.arange(len(same))
    window = windows[row]
    valid = index + window <= rows.width[row]  # windows that fit in the row
    needed = limits.fuzzy_match * windows / 2
    valid &= (matched[rows.ends()] - matched[rows.offsets[:-1]] >= needed)[row]
    high = np.where(valid, slot + window, slot)
    matched = matched[high] - matched[slot]
    content = content[high] - content[slot]
    rate = matched / np.maximum(content, 1)
    run_start, run_length = first_longest_runs(
        rows.offsets, valid & (rate >= limits.fuzzy_match) & (content >= window / 2)
    )
    findings = []
    for found in run_length.nonzero()[0].tolist():
        begin = int(rows.offsets[found] + run_start[found])
        found_rate = rate[begin : begin + int(run_length[found])]
        first = int(rows.begin[found] + run_start[found])
        finding = _near_finding(
            batch, limits, int(rows.text[found]), int(rows.lag[found]), int(windows[found]), first, found_rate
        )
        if finding is not None:
            findings.append(finding)
    return findings


def _near_finding(
    batch: Batch, limits: LoopThresholds, text: int, period: int, window: int, first: int, rate: np.ndarray
) -> Finding | None:
    """The finding of a run of fitting windows from token `first` on (`rate`: theirs), if it is prose."""
    assert limits.fuzzy_match is not None
    last = first + len(rate) - 1 + window - 1 + period
    if batch.zones(np.array([first]), np.array([last]))[0] != PROSE:
        return None
    match = float(rate.mean()) / limits.fuzzy_match
    content_units = int(batch.content[last + 1] - batch.content[first])  # separator lines have none
    at_end = batch.at_length_limit[text] and last == batch.tokens.bounds[text + 1] - 1
    relief = limits.length_relief if at_end else 1.0
    strength = min(match, content_units / (limits.min_loop_units * relief))
    if batch.distinct_words(first, first + period) >= 3:  # a short sentence said again, a little differently
        strength = max(strength, min(match, content_units / limits.short_sentence_content))
    return Finding(strength, first, last, "near-period", period)


def _near_period(batch: Batch, limits: LoopThresholds, text: int, period: int) -> Finding | None:
    """The finding of one text and period: the first longest run of windows whose words match the words
    a period back often enough, where the region is prose."""
    assert limits.fuzzy_match is not None
    begin, end = int(batch.tokens.bounds[text]), int(batch.tokens.bounds[text + 1])
    ids, words = batch.tokens.digitless[begin:end], batch.tokens.content[begin:end]
    window = int(round((limits.fuzzy_min_count - 1) * period))
    # Only words and Han characters count: a separator line is periodic but says nothing.
    same = (ids[period:] == ids[:-period]) & words[period:]
    if same.sum() < limits.fuzzy_match * window / 2:
        return None
    matched, content = prefix(same), prefix(words[period:])
    matched, content = matched[window:] - matched[:-window], content[window:] - content[:-window]
    rate = matched / np.maximum(content, 1)  # rate[i]: comparisons i..i+window-1
    run = longest_true_run((rate >= limits.fuzzy_match) & (content >= window / 2))
    if run is None:
        return None
    return _near_finding(batch, limits, text, period, window, begin + run[0], rate[run[0] : run[1]])
