"""Long-text coherence from sentence embeddings: does the text stay on its topic, in an order that flows?

A text is split into sentences (`shadow.core.text.split_sentences`), every sentence is embedded, and the
similarities are read against the text's own baseline and the encoder's "unrelated" cosine:

- **topic** measures: the best two-segment split of the text, where the centroids of the two segments are
  least alike (`split_cosine`), and how much more alike sentences are within the sides of a split than
  across it (`split_contrast`, at the best split and at its maximum), on embeddings, character bigrams and
  tf-idf bigrams. A text that stays on topic has no split with unrelated halves; a text glued from two
  sources has one. Binary segmentation on the same measure gives `breaks`: the first sentence after each
  jump.
- **order** measures: `order_gain` (adjacent sentences against those two or more apart), its variants, and
  `permutation_z`: how far the text's own order beats random orders of its own sentences, on embeddings,
  bigrams, tf-idf and the adjacency head. Reading a text against its own shuffles takes out how alike its
  sentences are overall, which varies more between texts than order does.
- **learned heads** (`evaluators.coherence_heads`): where each sentence belongs (a lead introduces, the end
  concludes), read from its characters and from its embedding, and which sentence may directly follow
  which; a shuffle breaks both.
- **discourse cues** (`evaluators.coherence_cues.order_cues`): a connective or an anaphor opening the text,
  ordinals out of order or continued with no first one, years running backwards, quotes closed before they
  open, a text ending on "；", references back in the first sentence.

Version 4.0 reads the measures with a three-class logistic model (original / splice / shuffle) written by
`scripts/fit_coherence` into `evaluators/coherence_weights.py`: `GLOBAL_WEIGHTS` is the logit of "original
rather than spliced", `LOCAL_WEIGHTS` that of "original rather than shuffled", and
`score = 1 / (1 + exp(-global) + exp(-local))`, the probability that the text is an original: each part
flags its own failure. Everything is fitted on People's Daily paragraphs that `scripts/validate_evaluators`
never draws (`tests.corpora.coherence_paragraph_pools`). The naive minimum adjacent cosine is kept as
`naive_min_adjacent` for comparison.
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
    first_sentence_anaphora,
    order_cues,
    ordinals_out_of_order,
    tfidf_similarity,
    unbalanced_quotes,
)
from evaluators.coherence_heads import CoherenceHeads, default_heads, position_features
from evaluators.coherence_weights import GLOBAL_BIAS, GLOBAL_WEIGHTS, LOCAL_BIAS, LOCAL_WEIGHTS, NEUTRAL
from shadow.core.text import han_count, language_of, split_sentences

_CUE_NAMES = ("opens_with_connective", "opens_with_anaphor", "ordinals_out_of_order", "unbalanced_quotes",
              "ends_open", "orphan_ordinals", "years_out_of_order", "period_in_clause_run", "opens_with_clause")  # fmt: skip
# Measures that need the sentences' text, the embedding heads fitted for this encoder, or both; without
# what they need they take their median over the fitting originals (`NEUTRAL`).
LEXICAL_FEATURES = ("bigram_split", "bigram_order_gain", "bigram_side_order_gain", "first_sentence_length",
                    "tfidf1_order_gain", "tfidf2_order_gain", "tfidf3_order_gain", "bigram_contrast",
                    "tfidf2_contrast", "bigram_best_contrast", "first_sentence_anaphora", "bigram_order_z",
                    "tfidf1_order_z", "tfidf2_order_z", "position_rho", "position_rho_z", "position_slope",
                    "first_position_rank", "last_position_rank")  # fmt: skip
HEAD_FEATURES = ("adjacency_mean", "adjacency_min", "adjacency_order_z", "adjacency_at_split")
BOTH_FEATURES = ("joint_position_rho", "joint_position_rho_z", "joint_position_slope",
                 "joint_first_position_rank", "joint_last_position_rank")  # fmt: skip


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


def permutation_z(scores: np.ndarray, draws: int = 200) -> float:
    """How far the text's own order beats random orders of its sentences, in standard deviations: the sum
    of `scores[i, i + 1]` (how well sentence i + 1 follows sentence i) against that sum over `draws` random
    permutations. Reading each text against its own shuffles takes out how alike its sentences are overall,
    which varies far more between texts than order does. The permutations are seeded by the sentence count:
    the same text always gets the same value.

    >>> chain = 1.0 - 0.2 * np.abs(np.subtract.outer(np.arange(6), np.arange(6)))
    >>> permutation_z(chain) > 2.0, abs(permutation_z(np.ones((6, 6)))) < 1e-6
    (True, True)
    """
    n = len(scores)
    if n < 3:
        return 0.0
    rng = np.random.default_rng(n)
    orders = np.argsort(rng.random((draws, n)), axis=1)
    shuffled = scores[orders[:, :-1], orders[:, 1:]].sum(axis=1)
    own = float(np.trace(scores, offset=1))
    return float((own - shuffled.mean()) / (shuffled.std() + 1e-9))


def coherence_features(
    sentence_embeddings: np.ndarray,
    sentences: Sequence[str] | None = None,
    *,
    baseline: float = 0.0,
    encoder_name: str | None = None,
    heads: CoherenceHeads | None = None,
) -> tuple[dict[str, float], int]:
    """Every measure the coherence logits read, and the best split's first sentence (0: no split).

    - `sentences`: without them the measures read on text (`LEXICAL_FEATURES`) take their neutral value
      (`NEUTRAL`) and the discourse cues read 0;
    - `heads`: the learned heads (default: the shipped `coherence_heads.npz`); their embedding measures
      (`HEAD_FEATURES`) only count when `encoder_name` is the encoder they were fitted with.
    """
    embeddings = np.asarray(sentence_embeddings, dtype=np.float64)
    if sentences is not None and len(sentences) != len(embeddings):
        raise ValueError(f"{len(sentences)} sentences for {len(embeddings)} embeddings: pass one of each.")
    split_cosine, gap = best_split(embeddings, baseline)
    features = {
        "split_cosine": split_cosine,
        **_embedding_measures(embeddings @ embeddings.T - baseline, gap),
        **dict.fromkeys(_CUE_NAMES, 0.0),
        **{name: NEUTRAL.get(name, 0.0) for name in LEXICAL_FEATURES + HEAD_FEATURES + BOTH_FEATURES},
    }
    heads = heads or default_heads()
    embedding_heads = heads.fits(encoder_name)
    if embedding_heads:
        features.update(_adjacency_measures(heads.adjacency_logits(embeddings), gap))
    if sentences is not None:
        features.update(_text_measures(sentences, gap))
        lexical_positions = heads.lexical_positions(sentences)
        features.update(position_features(lexical_positions))
        if embedding_heads:
            joint = lexical_positions + heads.embedding_positions(embeddings)
            features.update(position_features(joint, prefix="joint_"))
    return features, gap


def _embedding_measures(similarity: np.ndarray, gap: int) -> dict[str, float]:
    return {
        "adjacent_at_split": float(similarity[gap - 1, gap]) if gap else 1.0,
        "order_gain": order_gain(similarity),
        "locality_gradient": locality_gradient(similarity),
        "order_gain_z": order_gain_z(similarity),
        "side_order_gain": side_order_gain(similarity, gap),
        "embedding_contrast": split_contrast(similarity, gap),
        "embedding_best_contrast": best_contrast(similarity),
        "embedding_order_z": permutation_z(similarity),
    }


def _adjacency_measures(adjacency: np.ndarray, gap: int) -> dict[str, float]:
    adjacent = np.diagonal(adjacency, offset=1)
    return {
        "adjacency_mean": float(adjacent.mean()) if adjacent.size else 0.0,
        "adjacency_min": float(adjacent.min()) if adjacent.size else 0.0,
        "adjacency_order_z": permutation_z(adjacency),
        "adjacency_at_split": float(adjacency[gap - 1, gap]) if gap else 0.0,
    }


def _text_measures(sentences: Sequence[str], gap: int) -> dict[str, float]:
    """Shared words across and along the text (bigrams, tf-idf n-grams) and the discourse cues."""
    lexical = bigram_similarity(sentences)
    measures = {
        "bigram_split": float(lexical[:gap, gap:].mean()) if gap else 1.0,
        "bigram_order_gain": order_gain(lexical),
        "bigram_side_order_gain": side_order_gain(lexical, gap),
        "bigram_contrast": split_contrast(lexical, gap),
        "bigram_best_contrast": best_contrast(lexical),
        "bigram_order_z": permutation_z(lexical),
        "first_sentence_length": len(sentences[0])
        / max(1.0, float(np.mean([len(sentence) for sentence in sentences]))),
        "first_sentence_anaphora": first_sentence_anaphora(sentences),
    }
    for size in (1, 2, 3):
        weighted = tfidf_similarity(sentences, size)
        measures[f"tfidf{size}_order_gain"] = order_gain(weighted)
        if size in (1, 2):
            measures[f"tfidf{size}_order_z"] = permutation_z(weighted)
        if size == 2:
            measures["tfidf2_contrast"] = split_contrast(weighted, gap)
    measures.update(order_cues(sentences))
    return measures


def coherence_of(
    sentence_embeddings: np.ndarray,
    sentences: Sequence[str] | None = None,
    *,
    baseline: float = 0.0,
    break_cosine: float = 0.3,
    global_shift: float = 0.0,
    encoder_name: str | None = None,
    heads: CoherenceHeads | None = None,
) -> CoherenceResult:
    """Coherence of one text from its L2-normalised sentence embeddings (n, dim) and, if given, the sentences.

    - `sentences`: the text of each embedded sentence, for the measures read on text (`coherence_features`).
    - `baseline`: cosine unrelated sentences reach with this encoder (the encoder's `similarity_baseline`).
    - `encoder_name`, `heads`: see `coherence_features`.
    - `break_cosine`: a split whose segment centroids are less alike than this (rescaled) is a break.
    - `global_shift`: added to the global logit; above 0 favours shuffles (order) over splices (topic).

    `score = 1 / (1 + exp(-global logit) + exp(-local logit))`; see scripts/validate_evaluators for what it
    reaches.
    """
    features, gap = coherence_features(
        sentence_embeddings, sentences, baseline=baseline, encoder_name=encoder_name, heads=heads
    )
    global_logit = GLOBAL_BIAS + global_shift + sum(w * features[k] for k, w in GLOBAL_WEIGHTS.items())
    local_logit = LOCAL_BIAS + sum(w * features[k] for k, w in LOCAL_WEIGHTS.items())
    embeddings = np.asarray(sentence_embeddings, dtype=np.float64)
    breaks = find_breaks(embeddings, break_cosine=break_cosine, baseline=baseline)
    if not breaks and global_logit < 0:
        # The model finds a splice more likely than an original although no split clears `break_cosine`
        # (two sources on neighbouring topics): the best split is where it is.
        breaks = [gap] if gap else []
    return CoherenceResult(
        score=_original_probability(global_logit, local_logit),
        breaks=breaks,
        order_gain=features["order_gain"],
        local_score=_sigmoid(local_logit),
        global_score=_sigmoid(global_logit),
        split_cosine=features["split_cosine"],
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
    version: ClassVar[str] = "4.0"
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
                encoder_name=getattr(context.encoder, "name", None),
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
