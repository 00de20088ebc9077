"""Long-text coherence from sentence embeddings: does the text stay on its topic, in an order that flows?

A text is split into sentences (`evaluators.text.split_sentences`), every sentence is embedded, and the
similarities are read against the text's own baseline and the encoder's "unrelated" cosine:

- **topic** measures: the best two-segment split of the text, where the centroids of the two segments are
  least alike. A text that stays on topic has no split with unrelated halves; a text glued from two sources
  has one. Binary segmentation on the same measure gives `breaks`: the first sentence after each jump.
  The split is also read on character bigrams (`bigram_similarity`): two sources share few words.
- **order** measures: `order_gain`, the mean similarity of adjacent sentences minus that of sentences two or
  more apart, on embeddings and on character bigrams; `locality_gradient` (adjacent against distance 2-3),
  `order_gain_z` (the gain in units of the text's own spread) and `side_order_gain` (the gain within each
  side of the best split, which a splice of two well-ordered halves does not raise), and `order_gain` on
  character n-grams weighted within the text (`tfidf_similarity`). A shuffle loses all of them.
  Embeddings ignore order cues that a shuffle breaks, so the discourse cues of `order_cues` count too: a
  connective or an anaphor opening the text, ordinals out of order (二是 before 一是), quotes closed before
  they open, a last sentence ending in "；", a short first sentence (a lead is long).

Version 3.0 reads the measures with a three-class logistic model (original / splice / shuffle, fitted on
validation seeds 10-12 of scripts/validate_evaluators, never on the seeds reported): `GLOBAL_WEIGHTS` is the
logit of "original rather than spliced", `LOCAL_WEIGHTS` that of "original rather than shuffled", and
`score = 1 / (1 + exp(-global) + exp(-local))`, the probability that the text is an original: each part
flags its own failure (a calibrated OR), where 2.0 took `min` of two separately fitted logits and each part
blurred the other. The naive minimum adjacent cosine is kept as `naive_min_adjacent` for comparison.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from evaluators.base import Evaluator, ScoringContext
from evaluators.coherence_cues import (  # noqa: F401 - re-exported: tests and callers import them from here
    ANAPHORS,
    CONNECTIVES,
    ORDINAL_SERIES,
    bigram_similarity,
    order_cues,
    ordinals_out_of_order,
    tfidf_similarity,
    unbalanced_quotes,
)
from evaluators.text import han_count, language_of, split_sentences

# Logits of a three-class logistic model (original / splice / shuffle) fitted on validation seeds 10-12
# (scripts/validate_evaluators), each read as "original rather than this damage", then rounded.
GLOBAL_WEIGHTS = {"split_cosine": 4.86, "bigram_split": 71.25, "adjacent_at_split": 7.25, "order_gain": -31.63,
                  "bigram_order_gain": -14.08, "opens_with_connective": 0.6, "opens_with_anaphor": 0.61,
                  "ordinals_out_of_order": -1.47, "unbalanced_quotes": -1.09, "ends_open": -3.04,
                  "locality_gradient": 6.99, "order_gain_z": -1.6, "side_order_gain": 18.61,
                  "bigram_side_order_gain": -10.92, "first_sentence_length": -0.03, "tfidf1_order_gain": 7.56,
                  "tfidf2_order_gain": -28.65, "tfidf3_order_gain": 75.44}  # fmt: skip
GLOBAL_BIAS = 0.07
LOCAL_WEIGHTS = {"split_cosine": 1.37, "bigram_split": 2.23, "adjacent_at_split": -1.4, "order_gain": -5.41,
                 "bigram_order_gain": 3.45, "opens_with_connective": -1.11, "opens_with_anaphor": -1.09,
                 "ordinals_out_of_order": -3.67, "unbalanced_quotes": -2.11, "ends_open": -6.75,
                 "locality_gradient": -7.02, "order_gain_z": 4.28, "side_order_gain": -1.32,
                 "bigram_side_order_gain": -5.0, "first_sentence_length": -0.3, "tfidf1_order_gain": 21.63,
                 "tfidf2_order_gain": 56.35, "tfidf3_order_gain": -56.87}  # fmt: skip
LOCAL_BIAS = -0.43
# Without the sentences' text, the text measures take their median on original news paragraphs (seeds 10-12).
NEUTRAL_LEXICAL = {"bigram_split": 0.042, "bigram_order_gain": 0.015, "bigram_side_order_gain": 0.009,
                   "first_sentence_length": 0.84, "tfidf1_order_gain": 0.019, "tfidf2_order_gain": 0.006,
                   "tfidf3_order_gain": 0.0018}  # fmt: skip
_CUE_NAMES = ("opens_with_connective", "opens_with_anaphor", "ordinals_out_of_order", "unbalanced_quotes",
              "ends_open")  # fmt: skip


@dataclass(frozen=True, slots=True)
class CoherenceResult:
    """`score` = 1 / (1 + exp(-global logit) + exp(-local logit)); `breaks` start a topic jump.

    `features` holds every measure the two logits are made of, so a user can see why a text scored low.
    """

    score: float
    breaks: list[int]
    order_gain: float
    local_score: float
    global_score: float
    split_cosine: float
    features: dict[str, float]


def order_gain(similarity: np.ndarray) -> float:
    """Mean similarity of adjacent sentences minus that of sentences two or more apart."""
    n = len(similarity)
    if n < 3:
        return 0.0
    distance = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    return float(similarity[distance == 1].mean() - similarity[distance >= 2].mean())


def locality_gradient(similarity: np.ndarray) -> float:
    """Mean similarity of adjacent sentences minus that of sentences two or three apart (0 below 4).

    >>> round(locality_gradient(np.array([[1, .8, .5, .2], [.8, 1, .8, .5], [.5, .8, 1, .8], [.2, .5, .8, 1]])), 2)
    0.4
    """
    n = len(similarity)
    if n < 4:
        return 0.0
    distance = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    near = (distance >= 2) & (distance <= 3)
    return float(similarity[distance == 1].mean() - similarity[near].mean())


def order_gain_z(similarity: np.ndarray) -> float:
    """`order_gain` against all pairs, in units of the spread of the text's own pair similarities."""
    n = len(similarity)
    if n < 3:
        return 0.0
    distance = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    pairs = similarity[distance >= 1]
    return float((similarity[distance == 1].mean() - pairs.mean()) / (pairs.std() + 1e-6))


def side_order_gain(similarity: np.ndarray, gap: int) -> float:
    """Mean `order_gain` within each side of a split (sides of three sentences or more; 0 if none)."""
    sides = [(0, gap), (gap, len(similarity))] if gap else [(0, len(similarity))]
    gains = [order_gain(similarity[a:b, a:b]) for a, b in sides if b - a >= 3]
    return float(np.mean(gains)) if gains else 0.0


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


def coherence_of(
    sentence_embeddings: np.ndarray,
    sentences: Sequence[str] | None = None,
    *,
    baseline: float = 0.0,
    break_cosine: float = 0.3,
    global_shift: float = 0.0,
) -> CoherenceResult:
    """Coherence of one text from its L2-normalised sentence embeddings (n, dim) and, if given, the sentences.

    - `sentences`: the text of each embedded sentence, for the bigram measures and `order_cues`; without
      them the bigram measures take a neutral value (`NEUTRAL_LEXICAL`) and the cues read 0.
    - `baseline`: cosine unrelated sentences reach with this encoder (the encoder's `similarity_baseline`).
    - `break_cosine`: a split whose segment centroids are less alike than this (rescaled) is a break.
    - `global_shift`: added to the global logit; above 0 favours shuffles (order) over splices (topic).

    `score = 1 / (1 + exp(-global logit) + exp(-local logit))`; see scripts/validate_evaluators for what it
    reaches.
    """
    embeddings = np.asarray(sentence_embeddings, dtype=np.float64)
    similarity = embeddings @ embeddings.T - baseline
    split_cosine, gap = best_split(embeddings, baseline)
    features = {
        "split_cosine": split_cosine,
        "adjacent_at_split": float(similarity[gap - 1, gap]) if gap else 1.0,
        "order_gain": order_gain(similarity),
        "locality_gradient": locality_gradient(similarity),
        "order_gain_z": order_gain_z(similarity),
        "side_order_gain": side_order_gain(similarity, gap),
        **dict.fromkeys(_CUE_NAMES, 0.0),
        **NEUTRAL_LEXICAL,
    }
    if sentences is not None:
        if len(sentences) != len(embeddings):
            raise ValueError(
                f"{len(sentences)} sentences for {len(embeddings)} embeddings: pass one of each."
            )
        lexical = bigram_similarity(sentences)
        features["bigram_split"] = float(lexical[:gap, gap:].mean()) if gap else 1.0
        features["bigram_order_gain"] = order_gain(lexical)
        features["bigram_side_order_gain"] = side_order_gain(lexical, gap)
        features["first_sentence_length"] = len(sentences[0]) / max(
            1.0, float(np.mean([len(sentence) for sentence in sentences]))
        )
        for size in (1, 2, 3):
            features[f"tfidf{size}_order_gain"] = order_gain(tfidf_similarity(sentences, size))
        features.update(order_cues(sentences))
    global_logit = GLOBAL_BIAS + global_shift + sum(w * features[k] for k, w in GLOBAL_WEIGHTS.items())
    local_logit = LOCAL_BIAS + sum(w * features[k] for k, w in LOCAL_WEIGHTS.items())
    breaks = find_breaks(embeddings, break_cosine=break_cosine, baseline=baseline)
    return CoherenceResult(
        score=_original_probability(global_logit, local_logit),
        breaks=breaks,
        order_gain=features["order_gain"],
        local_score=_sigmoid(local_logit),
        global_score=_sigmoid(global_logit),
        split_cosine=split_cosine,
        features=features,
    )


def _original_probability(global_logit: float, local_logit: float) -> float:
    """1 / (1 + exp(-global) + exp(-local)): low as soon as either part finds its own failure.

    >>> round(_original_probability(0.0, 60.0), 3), round(_original_probability(0.0, 0.0), 3)
    (0.5, 0.333)
    """
    clip = lambda value: max(-60.0, min(60.0, value))  # noqa: E731
    return 1.0 / (1.0 + math.exp(-clip(global_logit)) + math.exp(-clip(local_logit)))


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, value))))


def naive_min_adjacent(sentence_embeddings: np.ndarray) -> tuple[float, int]:
    """The baseline to beat: minimum cosine of adjacent sentences, and the sentence after that gap."""
    embeddings = np.asarray(sentence_embeddings, dtype=np.float64)
    if len(embeddings) < 2:
        return 1.0, 0
    adjacent = np.einsum("ij,ij->i", embeddings[:-1], embeddings[1:])
    return float(adjacent.min()), int(adjacent.argmin()) + 1


class CoherenceEvaluator(Evaluator):
    """Per-text coherence: `{"applicable", "score", "breaks", "local", "global", "sentences"}`.

    Applicable to texts in `languages` with at least `min_chars` characters (Han characters for Chinese)
    and at least `min_sentences` sentences; shorter texts have too few sentences for a baseline of their
    own. Other keyword arguments go to `coherence_of`.
    """

    name: ClassVar[str] = "coherence"
    version: ClassVar[str] = "3.0"
    higher_is_better: ClassVar[bool] = True
    primary_metric: ClassVar[str] = "score"
    pairwise: ClassVar[bool] = False
    needs_encoder: ClassVar[bool] = True

    def __init__(
        self,
        *,
        min_chars: int = 200,
        min_sentences: int = 4,
        languages: Sequence[str] = ("zh", "en"),
        **coherence_options: Any,
    ) -> None:
        self.min_chars = min_chars
        self.min_sentences = min_sentences
        self.languages = tuple(languages)
        self.coherence_options = coherence_options

    def score_texts(
        self, texts: Sequence[str], finish_reasons: Sequence[str | None], context: ScoringContext
    ) -> list[dict[str, Any]]:
        if context.encoder is None:
            raise ValueError("The coherence evaluator needs an encoder: pass ScoringContext(encoder=...).")
        sentences_per_text = [self._sentences_if_applicable(text) for text in texts]
        flat = [sentence for sentences in sentences_per_text if sentences for sentence in sentences]
        embeddings = context.encoder.encode(flat, batch_size=context.batch_size) if flat else None
        baseline = float(getattr(context.encoder, "similarity_baseline", 0.0))
        results, position = [], 0
        for sentences in sentences_per_text:
            if not sentences:
                results.append(
                    {
                        "applicable": False,
                        "score": None,
                        "breaks": [],
                        "local": None,
                        "global": None,
                        "sentences": 0,
                    }
                )
                continue
            assert embeddings is not None
            result = coherence_of(
                embeddings[position : position + len(sentences)],
                sentences,
                baseline=baseline,
                **self.coherence_options,
            )
            position += len(sentences)
            results.append(
                {
                    "applicable": True,
                    "score": round(result.score, 4),
                    "breaks": result.breaks,
                    "local": round(result.local_score, 4),
                    "global": round(result.global_score, 4),
                    "sentences": len(sentences),
                }
            )
        return results

    def _sentences_if_applicable(self, text: str) -> list[str] | None:
        language = language_of(text)
        if language not in self.languages:
            return None
        length = han_count(text) if language == "zh" else len(text)
        sentences = split_sentences(text)
        if length < self.min_chars or len(sentences) < self.min_sentences:
            return None
        return sentences
