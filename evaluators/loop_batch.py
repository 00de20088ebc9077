"""What the loop detector's signals (`evaluators.loop_periods`, `evaluators.loop_near`,
`evaluators.loop_ngrams`) share about a batch of texts: the tokens, prefix sums of their flags (a count
over any region in two lookups), per text whether the answer hit the length limit, and the positions
sorted by digit-normalised token and by n-gram (`SortedGroups`), from which equal pairs are drawn.

Arrays indexed by (text, period) put text t's period L at `period_offsets(longest)[t] + L`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluators.loop_lags import Partners, SortedGroups, comparisons
from evaluators.loop_tokens import Tokens

# A text whose equal pairs are more than this share of its comparisons (mostly a loop with a period of a
# few tokens) is compared lag by lag instead: enumerating its pairs would cost more.
_DENSE_SHARE = 0.25


@dataclass(frozen=True, slots=True)
class Finding:
    strength: float  # >= 1 means a loop
    first: int  # first token of the looping region (an index into the batch's tokens)
    last: int  # last token (inclusive)
    reason: str
    period: int | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    """A batch of texts as the signals see it (see the module's docstring)."""

    tokens: Tokens
    text: np.ndarray  # per token, its text
    at_length_limit: np.ndarray
    content: np.ndarray
    words: np.ndarray  # content tokens that are not numbers
    separator: np.ndarray
    content_by_zone: np.ndarray | None  # (zones, tokens + 1); None: everything is prose
    tokens_by_zone: np.ndarray | None
    unigrams: SortedGroups
    ngram: int
    ngrams: SortedGroups  # n-grams across two texts are unique

    @staticmethod
    def of(tokens: Tokens, at_length_limit: np.ndarray, ngram: int) -> Batch:
        by_zone = None
        if tokens.zone.any():
            by_zone = tokens.zone == np.arange(int(tokens.zone.max()) + 1)[:, None]
        unigrams = SortedGroups.of(tokens.digitless)
        text = tokens.text_of()
        return Batch(
            tokens,
            text,
            at_length_limit,
            prefix(tokens.content),
            prefix(tokens.content & ~tokens.numeric),
            prefix(tokens.separator),
            None if by_zone is None else prefix(by_zone & tokens.content),
            None if by_zone is None else prefix(by_zone),
            unigrams,
            ngram,
            SortedGroups.of(_ngram_codes(unigrams, tokens.bounds, text, ngram)),
        )

    def zones(self, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """The zone most of each region's words are in (all its tokens if it has no words)."""
        if self.content_by_zone is None or self.tokens_by_zone is None:
            return np.zeros(len(first), dtype=np.int64)
        by_content = self.content_by_zone[:, last + 1] - self.content_by_zone[:, first]
        by_token = self.tokens_by_zone[:, last + 1] - self.tokens_by_zone[:, first]
        return np.where(by_content.any(axis=0), by_content, by_token).argmax(axis=0)

    def distinct_words(self, start: int, stop: int) -> int:
        """Distinct words and Han characters among the tokens start..stop-1."""
        content = self.tokens.content[start:stop]
        return len(np.unique(self.tokens.exact[start:stop][content]))


def prefix(flags: np.ndarray) -> np.ndarray:
    """`sums[..., i]`: flags set before position i, along the last axis."""
    sums = np.zeros((*flags.shape[:-1], flags.shape[-1] + 1), dtype=np.int64)
    flags.cumsum(axis=-1, out=sums[..., 1:])
    return sums


def _ngram_codes(unigrams: SortedGroups, bounds: np.ndarray, text: np.ndarray, ngram: int) -> np.ndarray:
    """Equal codes for equal n-grams (of digit-normalised tokens) in one text, a unique code for each
    position whose n-gram would run past its text's end. Built by doubling: two n-grams of half the
    length, numbered by rank."""
    total = len(text)
    codes, length = unigrams.ranks(), 1
    pieces = {1: codes}
    while 2 * length <= ngram:
        codes = _combine(codes, codes, length)
        length *= 2
        pieces[length] = codes
    for piece in sorted(pieces, reverse=True):  # the rest of `ngram`, largest pieces first
        if length + piece <= ngram:
            codes = _combine(codes, pieces[piece], length)
            length += piece
    past_end = np.arange(total) + ngram > bounds[text + 1]
    distinct = int(codes.max(initial=-1)) + 1
    codes[past_end] = distinct + past_end.nonzero()[0]
    return codes


def _combine(head: np.ndarray, tail: np.ndarray, head_length: int) -> np.ndarray:
    """Ranks of (head[i], tail[i + head_length]) pairs; positions without a tail get tail 0."""
    shifted = np.zeros(len(tail), dtype=np.int64)
    shifted[: max(len(tail) - head_length, 0)] = tail[head_length:]
    return SortedGroups.of(head * (int(tail.max(initial=0)) + 1) + shifted).ranks()


def period_offsets(longest: np.ndarray) -> np.ndarray:
    """Where text t's periods start in arrays indexed by (text, period): `offsets[t] + period`."""
    offsets = np.zeros(len(longest) + 1, dtype=np.int64)
    np.cumsum(longest + 1, out=offsets[1:])
    return offsets


def every_period(first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (text, period) with first[text] <= period <= last[text], by text and then by period."""
    count = np.maximum(last - first + 1, 0)
    text = np.repeat(np.arange(len(count)), count)
    begins = np.cumsum(count) - count
    return text, np.arange(len(text)) - begins[text] + first[text]


def dense_texts(
    partners: Partners, lengths: np.ndarray, shortest: np.ndarray, longest: np.ndarray
) -> np.ndarray:
    """Texts with so many equal pairs that comparing every period costs less than enumerating them."""
    return partners.per_text > _DENSE_SHARE * comparisons(lengths, shortest, longest)
