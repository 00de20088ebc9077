"""Which tokens equal the token a lag back, for many texts and lags at once: the arrays under the loop
detector's periodicity signals (`evaluators.loop_periods`).

Comparing every token with the one L back for every lag L up to half the text is a square's worth of
work, almost all of it wasted on prose. Instead, positions are sorted by value (`SortedGroups`: equal
tokens, or equal n-grams, side by side), and the pairs of equal values a lag apart are enumerated
(`SortedGroups.partners`); sorted by (text, lag, position), pairs in a row are runs of matches (`runs`).
A lag compared over a whole batch at once gives one segment per text, each ending in a False, and their
longest runs are found together (`first_longest_runs`); so do (text, lag) rows of comparisons laid end to
end (`Rows`). Sorting packed integers (`np.sort`) is far cheaper than a stable argsort.

>>> ids = np.array([7, 1, 2, 1, 2, 1, 2, 9, 5, 5])  # two texts: 8 tokens, then 2
>>> bounds = np.array([0, 8, 10])
>>> groups = SortedGroups.of(ids)
>>> partners = groups.partners(bounds, np.repeat([0, 1], [8, 2]), [1, 1], [3, 1])
>>> [(earlier.tolist(), later.tolist()) for earlier, later in partners.pairs()]
[([1, 3, 2, 4, 8], [3, 5, 4, 6, 9])]
>>> equal = np.zeros(10, dtype=bool)
>>> equal[:-2] = ids[2:] == ids[:-2]  # lag 2, batch-wide
>>> equal[[6, 7, 8, 9]] = False  # comparisons that would cross into the next text, or past the end
>>> starts, lengths = first_longest_runs(bounds, equal)
>>> starts.tolist(), lengths.tolist()
([1, 0], [4, 0])
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

# Pairs held at once (a few arrays of this many int64: tens of MiB).
PAIR_CHUNK = 1 << 19
# Row slots handled at once: the dozen arrays of one chunk stay in the processor's cache.
ROW_CHUNK = 1 << 13


def _bits(count: int) -> int:
    return max(int(count).bit_length(), 1)


@dataclass(frozen=True, slots=True)
class SortedGroups:
    """Positions sorted by value and then by position. `rank` numbers the distinct values in that order."""

    order: np.ndarray  # positions
    rank: np.ndarray  # rank of each sorted position's value
    keys: np.ndarray  # rank << shift | position, ascending
    shift: int

    @staticmethod
    def of(values: np.ndarray) -> SortedGroups:
        count = len(values)
        shift = _bits(count)
        if count and int(values.min()) >= 0 and _bits(int(values.max())) + shift <= 62:
            packed = np.sort((values.astype(np.int64) << shift) | np.arange(count))
            order = packed & ((1 << shift) - 1)
            value = packed >> shift
        else:  # values too wide to pack beside a position
            order = values.argsort(kind="stable")
            value = values[order]
        new = np.ones(count, dtype=bool)
        new[1:] = value[1:] != value[:-1]
        rank = running_count(new) - 1
        return SortedGroups(order, rank, (rank << shift) | order, shift)

    def ranks(self) -> np.ndarray:
        """Per position, the rank of its value (compact ids: 0 to distinct - 1)."""
        by_position = np.empty(len(self.order), dtype=np.int64)
        by_position[self.order] = self.rank
        return by_position

    def distinct(self) -> int:
        return int(self.rank[-1]) + 1 if len(self.rank) else 0

    def partners(
        self,
        bounds: np.ndarray,
        text: np.ndarray,
        shortest: np.ndarray | list[int],
        longest: np.ndarray | list[int],
        chosen: np.ndarray | None = None,
    ) -> Partners:
        """For every position, its later equal values in the same text, `shortest[t]` to `longest[t]`
        positions on in text t (`text`: the text of each position). `chosen` limits the positions."""
        shortest, longest = np.asarray(shortest), np.asarray(longest)
        # Only a position followed by an equal value has partners (in prose, few n-grams repeat).
        active = np.zeros(len(self.order), dtype=bool)
        active[:-1] = self.rank[1:] == self.rank[:-1]
        if chosen is not None:
            active &= chosen[self.order]
        rank = active.nonzero()[0]
        position = self.order[rank]
        keys, rank_text = self.keys[rank], text[position]
        reach = np.minimum(longest[rank_text], bounds[rank_text + 1] - 1 - position)
        low = self.keys.searchsorted(keys + shortest[rank_text], side="left")
        count = np.maximum(self.keys.searchsorted(keys + reach, side="right") - low, 0)
        per_text = np.bincount(rank_text, weights=count, minlength=len(bounds) - 1).astype(np.int64)
        return Partners(self, position, keys, rank_text, reach, low, count, shortest, longest, per_text)


@dataclass(frozen=True, slots=True)
class Partners:
    """Positions with later equal values (`SortedGroups.partners`): where their partners begin in the
    sorted order and how many there are, and the pairs per text."""

    groups: SortedGroups
    position: np.ndarray
    keys: np.ndarray
    text: np.ndarray
    reach: np.ndarray
    low: np.ndarray
    count: np.ndarray
    shortest: np.ndarray
    longest: np.ndarray
    per_text: np.ndarray

    def pairs(self, texts: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The pairs (earlier, later) of the chosen texts (all by default), a group of whole texts at a
        time; a text with more pairs than fit in a chunk is split by lag."""
        groups = self.groups
        per_text = self.per_text if texts is None else np.where(texts, self.per_text, 0)
        for chosen, lags in _chunks(per_text, self.shortest, self.longest):
            picked, start = np.where(chosen[self.text], self.count, 0), self.low
            if lags is not None:
                first, last = lags
                start = groups.keys.searchsorted(
                    self.keys + np.maximum(self.shortest[self.text], first), side="left"
                )
                stop = groups.keys.searchsorted(self.keys + np.minimum(self.reach, last), side="right")
                picked = np.where(chosen[self.text], np.maximum(stop - start, 0), 0)
            total = int(picked.sum())
            if not total:
                continue
            earlier = np.repeat(np.arange(len(picked)), picked)
            offset = np.arange(total) - np.repeat(picked.cumsum() - picked, picked)
            yield self.position[earlier], groups.order[start[earlier] + offset]


def comparisons(lengths: np.ndarray, shortest: np.ndarray, longest: np.ndarray) -> np.ndarray:
    """Per text, the token comparisons of all lags shortest..longest: what a dense check costs."""
    lags = np.maximum(longest - shortest + 1, 0)
    return lags * lengths - lags * (shortest + longest) // 2


def _chunks(
    per_text: np.ndarray, shortest: np.ndarray, longest: np.ndarray
) -> Iterator[tuple[np.ndarray, tuple[int, int] | None]]:
    """Groups of whole texts with about `PAIR_CHUNK` pairs; a bigger text alone, by lag windows."""
    big = per_text > PAIR_CHUNK
    small = (per_text > 0) & ~big
    cumulative = np.cumsum(np.where(small, per_text, 0))
    group = (cumulative - 1) // PAIR_CHUNK
    for chosen in np.unique(group[small]).tolist():
        yield small & (group == chosen), None
    for text in big.nonzero()[0].tolist():
        alone = np.zeros(len(per_text), dtype=bool)
        alone[text] = True
        low, high = int(shortest[text]), int(longest[text])
        width = max(1, (high - low + 1) * PAIR_CHUNK // int(per_text[text]))
        for first in range(low, high + 1, width):
            yield alone, (first, min(high, first + width - 1))


def runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs of consecutive integers in `keys` (sorted ascending, distinct): first key and length of each."""
    if not len(keys):
        return keys, keys
    new_run = np.ones(len(keys), dtype=bool)
    new_run[1:] = keys[1:] != keys[:-1] + 1
    begins = new_run.nonzero()[0]
    return keys[begins], np.diff(begins, append=len(keys))


@dataclass(frozen=True, slots=True)
class Rows:
    """(text, lag) rows of comparisons i = 0..width-1 (token i + lag against token i of the text), laid
    end to end, each followed by one spare slot: row r's slots are `offsets[r]` to `offsets[r + 1] - 1`."""

    text: np.ndarray
    lag: np.ndarray
    begin: np.ndarray  # the text's first token in the batch
    width: np.ndarray
    offsets: np.ndarray

    @staticmethod
    def of(bounds: np.ndarray, text: np.ndarray, lag: np.ndarray) -> Rows:
        begin = bounds[text]
        width = np.maximum(bounds[text + 1] - begin - lag, 0)
        offsets = np.zeros(len(text) + 1, dtype=np.int64)
        np.cumsum(width + 1, out=offsets[1:])
        return Rows(text, lag, begin, width, offsets)

    def chunks(self) -> Iterator[tuple[slice, Rows]]:
        """Consecutive rows holding about `ROW_CHUNK` slots each (one row may hold more)."""
        cuts = np.unique(self.offsets.searchsorted(np.arange(0, int(self.offsets[-1]), ROW_CHUNK)))
        edges = [*cuts[cuts < len(self.text)].tolist(), len(self.text)]
        for low, high in zip(edges[:-1], edges[1:], strict=True):
            chosen = slice(low, high)
            offsets = self.offsets[low : high + 1] - self.offsets[low]
            rows = Rows(self.text[chosen], self.lag[chosen], self.begin[chosen], self.width[chosen], offsets)
            yield chosen, rows

    def slots(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per slot: its row, its comparison i within the row, and the batch index of the earlier token
        compared (the spare slot of a row points past its comparisons and must be masked)."""
        row = np.repeat(np.arange(len(self.text)), self.width + 1)
        index = np.arange(int(self.offsets[-1])) - self.offsets[row]
        return row, index, index + self.begin[row]

    def ends(self) -> np.ndarray:
        """The spare slot of every row."""
        return self.offsets[1:] - 1


def longest_true_run(mask: np.ndarray) -> tuple[int, int] | None:
    """The first longest run of True in `mask`: (start, end) with `end` exclusive; None if all False."""
    if not mask.any():
        return None
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.view(np.int8), [0]))))
    run_starts, run_ends = edges[0::2], edges[1::2]
    longest = int(np.argmax(run_ends - run_starts))
    return int(run_starts[longest]), int(run_ends[longest])


def first_longest_runs(offsets: np.ndarray, flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per segment `offsets[r]`..`offsets[r + 1] - 1` of `flags` (each ending in a False): the start
    within the segment and the length of its first longest run of True (0, 0 for none)."""
    count = len(offsets) - 1
    starts = np.zeros(count, dtype=np.int64)
    lengths = np.zeros(count, dtype=np.int64)
    run_first, run_length = runs(flags.nonzero()[0])
    if not len(run_first):
        return starts, lengths
    run_row = offsets.searchsorted(run_first, side="right") - 1
    chosen = first_maxima(run_length, run_row)
    starts[run_row[chosen]] = run_first[chosen] - offsets[run_row[chosen]]
    lengths[run_row[chosen]] = run_length[chosen]
    return starts, lengths


def first_maxima(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Indices of the first largest value of each group (`group` ascending)."""
    if not len(group):
        return np.zeros(0, dtype=np.int64)
    new_group = np.ones(len(group), dtype=bool)
    new_group[1:] = group[1:] != group[:-1]
    largest = np.maximum.reduceat(values, new_group.nonzero()[0])
    candidates = (values == largest[running_count(new_group) - 1]).nonzero()[0]
    first_of_group = np.ones(len(candidates), dtype=bool)
    first_of_group[1:] = group[candidates[1:]] != group[candidates[:-1]]
    return candidates[first_of_group]


def running_count(flags: np.ndarray) -> np.ndarray:
    """How many of flags[0..i] are set, for every i (into an int64 buffer: a bool array's own cumsum
    takes a slow conversion path)."""
    counts = np.empty(len(flags), dtype=np.int64)
    flags.cumsum(out=counts)
    return counts
