"""Degenerate-repetition ("loop") detection for LLM output, Chinese and English.

An LLM in a loop repeats a period of tokens, a sentence or a paragraph, often until it hits the length
limit (`finish_reason == "length"`), sometimes with small variations (a counter, a changed word). Three
signals, all computed on a token sequence where a token is one Han character, one word of another script or
one punctuation mark (whitespace dropped, digit runs normalised to "0" where noted), so thresholds mean the
same in Chinese and English:

1. **Periodicity** (as vLLM's repetition detector: pattern size and minimum count, but anywhere in the text,
   not only at the tail): the longest stretch where token i equals token i - L, for every period L. A
   stretch covering `count` periods of at least `min_loop_units` tokens is a loop.
2. **Repeated n-grams**: the share of n-grams in a sliding window that already occurred at least three
   times nearby (so they are the fourth copy or later). It catches loops that vary a little between copies.
3. **Windowed compression**: zlib ratio of the token ids of the suspicious window. It must confirm signal 2:
   a varying loop still compresses far better than prose. A single global gzip ratio is not used: it grows
   with length and UTF-8 Chinese compresses differently from English.

Legitimate repetition is spared by construction: a pattern needs content (a separator line, "……" or a table
rule has none) and `min_count` copies (a summary that restates a list once has two); fenced code and table
lines need more copies and are exempt from signal 2, and digit-normalised periodicity (numbered lists that
loop) is not applied there. Thresholds are keyword arguments of `loop_score`; `None` turns a check off.

>>> loop_score("今天天气很好。" * 2).flag
False
>>> result = loop_score("答案如下。" + "我们需要继续努力学习。" * 12, finish_reason="length")
>>> result.flag, result.span
(True, (5, 137))
"""

from __future__ import annotations

import re
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from evaluators.base import Evaluator, GateCheck, Output, ScoringContext
from shadow.core.text import HAN_RE

_TOKEN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]|[^\W_]+|\S")
_DIGITS_RE = re.compile(r"\d+")
_FENCE_LINE_RE = re.compile(r"^[ \t]*(```|~~~)", re.MULTILINE)
# Table rows and rules, markdown or box-drawn (│ ├ ┌ ...).
_TABLE_LINE_RE = re.compile(r"^[ \t]*[|+\u2500-\u257f].*$", re.MULTILINE)
# List items: siblings legitimately share a template ("- /var/lib/dpkg/info/x.postinst", "- ...x.preinst").
_LIST_LINE_RE = re.compile(r"^[ \t]*(?:[-*+•·]|\d{1,3}[.)、]|[（(]\d{1,3}[）)])[ \t].*$", re.MULTILINE)
# A paragraph with a shell prompt line ("$ ls -li foo") holds commands and their output.
_SHELL_BLOCK_RE = re.compile(r"(?:^|\n[ \t]*\n)((?:(?![ \t]*\n).*\n)*?[ \t]*\$ .*(?:\n(?![ \t]*\n).*)*)")
# Characters that make separator lines and ellipses: long runs of them are layout, not a loop.
_SEPARATOR_CHARS = frozenset("-=_*~—–─━·.…#+|/\\<>•")

PROSE, CODE, TABLE, LIST = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class LoopResult:
    """`score` in [0, 1] (0.5 is the flag threshold), `span` the looping region in characters."""

    score: float
    flag: bool
    span: tuple[int, int] | None
    reason: str | None = None
    period_units: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 4),
            "flag": self.flag,
            "span": list(self.span) if self.span else None,
            "reason": self.reason,
            "period_units": self.period_units,
        }


@dataclass(frozen=True, slots=True)
class _Tokens:
    texts: list[str]
    exact: np.ndarray  # token ids
    digitless: np.ndarray  # token ids with digit runs normalised
    content: np.ndarray  # bool: Han character or word (not punctuation)
    numeric: np.ndarray  # bool: a word that is only digits
    zone: np.ndarray  # PROSE, CODE or TABLE
    starts: np.ndarray  # character offsets
    ends: np.ndarray


@dataclass(frozen=True, slots=True)
class _Finding:
    strength: float  # >= 1 means a loop
    first: int  # first token of the looping region
    last: int  # last token (inclusive)
    reason: str
    period: int | None = None


@dataclass(frozen=True, slots=True)
class LoopThresholds:
    """Thresholds of `loop_score`, in tokens (a Han character, a word or a punctuation mark).

    - `min_count`: copies of a period needed (3: the same sentence three times in a row).
    - `min_loop_units`: tokens the looping region must cover (so "谢谢！谢谢！谢谢！" is not a loop) ...
    - `short_sentence_count`, `short_sentence_content`: ... unless a period with at least 3 distinct words
      or characters comes `short_sentence_count` times with this many content tokens in all
      ("So be cautious." four times).
    - `min_symbol_units`: tokens a loop of separator characters must cover (rules, "……", "* * *").
    - `max_period_units`: longest period searched (a paragraph).
    - `code_min_count`, `code_min_loop_units`: the same inside fenced code and table lines.
    - `fuzzy_match`, `fuzzy_min_count`: near-periodicity (a counter or a word that changes between copies):
      this share of tokens equal to the token one period back, over `fuzzy_min_count` copies of at least
      `fuzzy_min_period` tokens (parallel lines of classical prose, "不可得而亲，不可得而疏；", are shorter);
      `None` turns it off.
    - `ngram`, `ngram_density`, `ngram_min_earlier`: share of n-grams seen at least `ngram_min_earlier`
      times nearby in a window of `min_loop_units` tokens (a loop whose copies differ by insertions);
      `None` turns it off. Three earlier copies, because a classical poem's refrain comes three times with
      small changes (《诗经·采苓》).
    - `min_compression_gain`: share of that region's second half that zlib explains by its first half,
      which must confirm the n-gram signal; `None` skips the check.
    - `length_relief`: with `finish_reason == "length"`, a loop that reaches the end needs only this share
      of the counts and lengths above (a runaway was cut before it could repeat more).
    """

    min_count: float = 3.0
    min_loop_units: int = 30
    short_sentence_count: float = 4.0
    short_sentence_content: int = 12
    min_symbol_units: int = 200
    max_period_units: int = 1200
    code_min_count: float = 5.0
    code_min_loop_units: int = 100
    fuzzy_match: float | None = 0.8
    fuzzy_min_count: float = 4.0
    fuzzy_min_period: int = 8
    ngram: int = 4
    ngram_density: float | None = 0.6
    ngram_min_earlier: int = 3
    min_compression_gain: float | None = 0.5
    length_relief: float = 0.75


def loop_score(
    text: str, finish_reason: str | None = None, thresholds: LoopThresholds | None = None
) -> LoopResult:
    """Score `text` for degenerate repetition; `score` >= 0.5 exactly when `flag` is set.

    >>> loop_score("| a | b |\\n|---|---|\\n| 1 | 2 |\\n|---|---|\\n| 3 | 4 |").flag
    False
    """
    limits = thresholds or LoopThresholds()
    tokens = _tokenize(text)
    if len(tokens.exact) < 2:
        return LoopResult(0.0, False, None)
    at_length_limit = finish_reason == "length"
    findings = _periodic_findings(tokens, limits, at_length_limit)
    if limits.fuzzy_match is not None:
        findings.extend(_fuzzy_periodic_findings(tokens, limits, at_length_limit))
    if limits.ngram_density is not None:
        findings.extend(_ngram_findings(tokens, limits))
    if not findings:
        return LoopResult(0.0, False, None)
    best = max(findings, key=lambda finding: finding.strength)
    score = best.strength / (1.0 + best.strength)  # 0.5 exactly at the threshold
    if best.strength < 1.0:
        return LoopResult(score, False, None)
    first = best.first
    while first < best.last and not tokens.content[first] and tokens.content[first : best.last + 1].any():
        first += 1  # start the span at a word, not at the comma before it
    span = (int(tokens.starts[first]), int(tokens.ends[best.last]))
    return LoopResult(score, True, span, best.reason, best.period)


def _tokenize(text: str) -> _Tokens:
    zones = _zone_of_chars(text)
    ids: dict[str, int] = {}
    texts, exact, digitless, content, numeric, zone, starts, ends = [], [], [], [], [], [], [], []
    for match in _TOKEN_RE.finditer(text):
        token = match.group(0)
        texts.append(token)
        is_content = token[0].isalnum() or bool(HAN_RE.match(token))
        exact.append(ids.setdefault(token, len(ids)))
        digitless.append(ids.setdefault(_DIGITS_RE.sub("0", token), len(ids)))
        content.append(is_content)
        numeric.append(token.isdigit())
        zone.append(zones[match.start()])
        starts.append(match.start())
        ends.append(match.end())
    return _Tokens(
        texts,
        np.asarray(exact, dtype=np.int64),
        np.asarray(digitless, dtype=np.int64),
        np.asarray(content, dtype=bool),
        np.asarray(numeric, dtype=bool),
        np.asarray(zone, dtype=np.int8),
        np.asarray(starts, dtype=np.int64),
        np.asarray(ends, dtype=np.int64),
    )


def _zone_of_chars(text: str) -> np.ndarray:
    """PROSE, CODE (inside ``` fences), TABLE or LIST (by the start of the line) for every character."""
    zones = np.full(len(text) + 1, PROSE, dtype=np.int8)
    for list_line in _LIST_LINE_RE.finditer(text):
        zones[list_line.start() : list_line.end()] = LIST
    for table_line in _TABLE_LINE_RE.finditer(text):
        zones[table_line.start() : table_line.end()] = TABLE
    for block in _SHELL_BLOCK_RE.finditer(text):  # an unfenced terminal session: "$ ls -l" and its output
        zones[block.start() : block.end()] = CODE
    fences = [match.start() for match in _FENCE_LINE_RE.finditer(text)]
    fences.append(len(text))  # an unclosed fence runs to the end
    for opening, closing in zip(fences[0:-1:2], fences[1::2], strict=False):
        zones[opening:closing] = CODE
    return zones


def _periodic_findings(tokens: _Tokens, limits: LoopThresholds, at_length_limit: bool) -> list[_Finding]:
    """Exact periodicity: for each period, the longest stretch where every token equals the one a period
    back; once on the tokens, once with digits normalised (numbered copies: "1. 注意安全 2. 注意安全")."""
    n = len(tokens.exact)
    findings: list[_Finding] = []
    for ids, digit_normalised in ((tokens.exact, False), (tokens.digitless, True)):
        for period in range(1, min(limits.max_period_units, n // 2) + 1):
            run = _longest_true_run(ids[period:] == ids[:-period])
            if run is None or run[1] - run[0] < period:  # fewer than two copies
                continue
            first, last = run[0], run[1] + period - 1  # tokens covered
            zone = _zone_of_region(tokens, first, last)
            if digit_normalised and zone in (CODE, TABLE):
                continue  # numbered table rows and code are legitimately alike up to their numbers
            strength = _period_strength(tokens, limits, first, last, period, zone, at_length_limit)
            if digit_normalised:
                pattern = slice(first, first + period)
                if (tokens.content[pattern] & ~tokens.numeric[pattern]).sum() < 3:
                    continue  # rows of numbers alone ("| 1 | 2 |") are not a loop
            findings.append(
                _Finding(strength, first, last, "numbered-period" if digit_normalised else "period", period)
            )
    return findings


def _fuzzy_periodic_findings(
    tokens: _Tokens, limits: LoopThresholds, at_length_limit: bool
) -> list[_Finding]:
    """Near-periodicity in prose: `fuzzy_match` of the tokens equal the token one period back, over at
    least `fuzzy_min_count` copies (a loop where a word or a counter changes between copies)."""
    assert limits.fuzzy_match is not None
    n = len(tokens.digitless)
    ids = tokens.digitless
    findings: list[_Finding] = []
    shortest = limits.fuzzy_min_period
    for period in range(shortest, min(limits.max_period_units, int(n / limits.fuzzy_min_count)) + 1):
        window = int(round((limits.fuzzy_min_count - 1) * period))
        # Only words and Han characters count: a separator line is periodic but says nothing.
        same = (ids[period:] == ids[:-period]) & tokens.content[period:]
        if same.sum() < limits.fuzzy_match * window / 2:
            continue
        matched = np.concatenate(([0], np.cumsum(same)))
        content = np.concatenate(([0], np.cumsum(tokens.content[period:])))
        matched, content = matched[window:] - matched[:-window], content[window:] - content[:-window]
        rate = matched / np.maximum(content, 1)  # rate[i]: comparisons i..i+window-1
        run = _longest_true_run((rate >= limits.fuzzy_match) & (content >= window / 2))
        if run is None:
            continue
        first, last = run[0], run[1] - 1 + window - 1 + period
        if _zone_of_region(tokens, first, last) != PROSE:
            continue
        match = float(rate[run[0] : run[1]].mean()) / limits.fuzzy_match
        content_units = int(tokens.content[first : last + 1].sum())  # separator lines have none
        relief = limits.length_relief if at_length_limit and last == n - 1 else 1.0
        strength = min(match, content_units / (limits.min_loop_units * relief))
        distinct_content = {tokens.texts[i] for i in range(first, first + period) if tokens.content[i]}
        if len(distinct_content) >= 3:  # a short sentence said again and again, a little differently
            strength = max(strength, min(match, content_units / limits.short_sentence_content))
        findings.append(_Finding(strength, first, last, "near-period", period))
    return findings


def _zone_of_region(tokens: _Tokens, first: int, last: int) -> int:
    """The zone most of the region's words are in (all its tokens if it has no words)."""
    zones = tokens.zone[first : last + 1]
    content = tokens.content[first : last + 1]
    return int(np.bincount(zones[content] if content.any() else zones).argmax())


def _period_strength(
    tokens: _Tokens,
    limits: LoopThresholds,
    first: int,
    last: int,
    period: int,
    zone: int,
    at_length_limit: bool,
) -> float:
    """How far an exact periodic stretch goes past the thresholds that apply to it (>= 1: a loop)."""
    covered = last - first + 1
    count = covered / period
    count_needed, units_needed = limits.min_count, float(limits.min_loop_units)
    if zone in (CODE, TABLE):
        count_needed, units_needed = limits.code_min_count, float(limits.code_min_loop_units)
    pattern = slice(first, first + period)
    content = tokens.content[pattern]
    if not content.any() and all(token in _SEPARATOR_CHARS for token in tokens.texts[pattern]):
        units_needed = max(units_needed, limits.min_symbol_units)
    if at_length_limit and last == len(tokens.exact) - 1:
        count_needed *= limits.length_relief
        units_needed *= limits.length_relief
    strength = min(count / count_needed, covered / units_needed)
    distinct_content = len({tokens.texts[i] for i in range(first, first + period) if tokens.content[i]})
    if zone not in (CODE, TABLE) and distinct_content >= 3:  # a short sentence said again and again
        content_units = int(tokens.content[first : last + 1].sum())
        sentence_strength = min(
            count / limits.short_sentence_count, content_units / limits.short_sentence_content
        )
        strength = max(strength, sentence_strength)
    return strength


def _longest_true_run(mask: np.ndarray) -> tuple[int, int] | None:
    if not mask.any():
        return None
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.view(np.int8), [0]))))
    run_starts, run_ends = edges[0::2], edges[1::2]
    longest = int(np.argmax(run_ends - run_starts))
    return int(run_starts[longest]), int(run_ends[longest])


def _ngram_findings(tokens: _Tokens, limits: LoopThresholds) -> list[_Finding]:
    """Signal 2 (third-or-later n-gram copies), confirmed by signal 3 (compression of the region)."""
    assert limits.ngram_density is not None
    ngram, density_threshold, window = limits.ngram, limits.ngram_density, limits.min_loop_units
    min_compression_gain = limits.min_compression_gain
    n = len(tokens.digitless)
    if n < window + ngram:
        return []
    ids = tokens.digitless.tolist()
    eligible = (tokens.zone == PROSE) & tokens.content  # code, tables and lists have templates
    seen: dict[tuple[int, ...], list[int]] = defaultdict(list)
    repeated = np.zeros(n, dtype=np.float64)
    origin = np.arange(n)  # for a repeated n-gram: where its earliest nearby copy starts
    max_distance = 4 * window * ngram
    for position in range(n - ngram + 1):
        gram = tuple(ids[position : position + ngram])
        earlier = seen[gram]
        recent = [start for start in earlier if position - start <= max_distance]
        if len(recent) >= limits.ngram_min_earlier and eligible[position : position + ngram].any():
            repeated[position] = 1.0
            origin[position] = recent[0]
        recent.append(position)
        seen[gram] = recent[-4:]
    density = np.convolve(repeated, np.ones(window) / window, mode="valid")  # density[i]: tokens i..i+w-1
    dense = density >= density_threshold
    run = _longest_true_run(dense)
    if run is None:
        return []
    first, last = run[0], min(n - 1, run[1] - 1 + window - 1)
    covered = last - first + 1
    strength = min(float(density[run[0] : run[1]].mean()) / density_threshold, covered / window)
    # The looping region starts with the first copy of what repeats in it.
    first = int(origin[first : last + 1].min())
    if min_compression_gain is not None:
        strength = min(strength, _compression_gain(tokens.exact[first : last + 1]) / min_compression_gain)
    return [_Finding(strength, first, last, "repeated-ngrams")]


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


class LoopEvaluator(Evaluator):
    """Per-text loop detector: `{"score", "flag", "span", "reason", "period_units"}` for each text."""

    name: ClassVar[str] = "loop"
    version: ClassVar[str] = "1.0"
    higher_is_better: ClassVar[bool] = False
    primary_metric: ClassVar[str] = "flag"
    pairwise: ClassVar[bool] = False
    outputs: ClassVar[tuple[Output, ...]] = (
        Output(
            "flag",
            "loop rate",
            kind="flag",
            event="loops",
            # Effect: candidate loop rate - primary loop rate (absolute).
            check=GateCheck("loop_rate", critical=True, tolerance=0.01, min_pairs=100),
            severity=(0.02, 0.05),
            badness=0.5,
        ),
        Output("score", "loop score"),
        Output("span", "looping span", kind="span", worse=None),
    )

    def __init__(self, **thresholds: Any) -> None:
        """Keyword arguments override `LoopThresholds` fields (see their documented defaults)."""
        self.thresholds = LoopThresholds(**thresholds)

    def score_texts(
        self, texts: Sequence[str], finish_reasons: Sequence[str | None], context: ScoringContext
    ) -> list[dict[str, Any]]:
        return [
            loop_score(text, finish_reason, self.thresholds).as_dict()
            for text, finish_reason in zip(texts, finish_reasons, strict=True)
        ]
