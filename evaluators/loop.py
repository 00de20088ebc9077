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

`loop_scores` scores a batch (the evaluator's path) with the same results: array operations cost much per
call and little per element, so the tokens (`evaluators.loop_tokens`), what the signals share
(`evaluators.loop_batch`, `evaluators.loop_lags`) and the signals themselves (`evaluators.loop_periods`,
`evaluators.loop_near`, `evaluators.loop_ngrams`) are computed for all the texts of a batch at once.

>>> loop_score("今天天气很好。" * 2).flag
False
>>> result = loop_score("答案如下。" + "我们需要继续努力学习。" * 12, finish_reason="length")
>>> result.flag, result.span
(True, (5, 137))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from evaluators.base import Evaluator, GateCheck, Output, ScoringContext
from evaluators.loop_batch import Batch, Finding
from evaluators.loop_near import fuzzy_periodic_findings
from evaluators.loop_ngrams import ngram_findings
from evaluators.loop_periods import periodic_findings
from evaluators.loop_tokens import tokenize

# Characters scored at once: the batch's arrays stay within tens of MiB.
_BATCH_CHARACTERS = 1 << 20


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
    return loop_scores([text], [finish_reason], thresholds)[0]


def loop_scores(
    texts: Sequence[str], finish_reasons: Sequence[str | None], thresholds: LoopThresholds | None = None
) -> list[LoopResult]:
    """`loop_score` of each text, computed for the batch at once.

    >>> [result.flag for result in loop_scores(["今天天气很好。", "好" * 40], [None, "length"])]
    [False, True]
    """
    limits = thresholds or LoopThresholds()
    if len(texts) != len(finish_reasons):
        raise ValueError(f"{len(texts)} texts but {len(finish_reasons)} finish reasons")
    results: list[LoopResult] = []
    start = 0
    while start < len(texts):
        stop, size = start + 1, len(texts[start])
        while stop < len(texts) and size + len(texts[stop]) <= _BATCH_CHARACTERS:
            size += len(texts[stop])
            stop += 1
        results.extend(_score_batch(texts[start:stop], finish_reasons[start:stop], limits))
        start = stop
    return results


def _score_batch(
    texts: Sequence[str], finish_reasons: Sequence[str | None], limits: LoopThresholds
) -> list[LoopResult]:
    at_length_limit = np.array([reason == "length" for reason in finish_reasons], dtype=bool)
    batch = Batch.of(tokenize(texts), at_length_limit, limits.ngram)
    findings = periodic_findings(batch, limits)
    if limits.fuzzy_match is not None:
        for text_findings, near in zip(findings, fuzzy_periodic_findings(batch, limits), strict=True):
            text_findings.extend(near)
    if limits.ngram_density is not None:
        for text_findings, repeated in zip(findings, ngram_findings(batch, limits), strict=True):
            if repeated is not None:
                text_findings.append(repeated)
    return [_result(batch, text_findings) for text_findings in findings]


def _result(batch: Batch, findings: list[Finding]) -> LoopResult:
    """The strongest finding (the first of equals) decides."""
    if not findings:
        return LoopResult(0.0, False, None)
    best = max(findings, key=lambda finding: finding.strength)
    score = best.strength / (1.0 + best.strength)  # 0.5 exactly at the threshold
    if best.strength < 1.0:
        return LoopResult(score, False, None)
    first, tokens = best.first, batch.tokens
    words = tokens.content[first : best.last + 1]
    if words.any():
        first += int(words.argmax())  # start the span at a word, not at the comma before it
    span = (int(tokens.starts[first]), int(tokens.ends[best.last]))
    return LoopResult(score, True, span, best.reason, best.period)


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
        return [result.as_dict() for result in loop_scores(texts, finish_reasons, self.thresholds)]
