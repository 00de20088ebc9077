"""Long-text coherence from sentence embeddings: does the text stay on its topic, in an order that flows?

A text is split into sentences (`shadow.core.text.split_sentences`), every sentence is embedded, and the
similarities are read against the text's own baseline and the encoder's "unrelated" cosine:

- **topic** measures: the best two-segment split of the text, where the centroids of the two segments are
  least alike (`split_cosine`), and how much more alike sentences are within the sides of a split than
  across it (`split_contrast`, at the best split and at its maximum), on embeddings, bigrams and tf-idf,
  and how far the best contiguous split beats that split in the text's own reorderings (`split_z_profile`),
  which takes out how alike a domain's sentences are overall. A text that stays on topic has no split with
  unrelated halves; a text glued from two sources has one.
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

Version 5.0 reads the measures with one three-class logistic model (original / splice / shuffle) per
language, written by `scripts/fit_coherence` into `evaluators/coherence_weights.py`
(`evaluators.coherence_model.CoherenceModel`): the global logit is that of "original rather than spliced",
the local one "original rather than shuffled", and `score = 1 / (1 + exp(-global) + exp(-local))`, the
probability that the text is an original: each part flags its own failure. A text has a logic break when
its global logit falls below the model's `break_logit`, set so that at most 5 % of any fitted domain's
untouched passages get one; the break is the best split. The models are fitted on several kinds of text
(news, technical explanation, dialogue and Q&A, narrative; Chinese and English: `tests.coherence_domains`),
never on a document `scripts/validate_evaluators` reports, and never on the held-out domain. Measures on
words read Han characters and whole words of other scripts (`coherence_cues.lexical_units`), so that an
English sentence is not alike another for sharing "th" and "in". The naive minimum adjacent cosine is kept
as `naive_min_adjacent` for comparison.

This module reads the measures with that model and holds the evaluator. The measures themselves are in
`evaluators.coherence_topic` (splits and breaks), `evaluators.coherence_order` (order), and
`evaluators.coherence_measures`, which puts all of them together for one text (`coherence_features`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from evaluators.base import Evaluator, GateCheck, Output, ScoringContext
from evaluators.coherence_heads import CoherenceHeads
from evaluators.coherence_measures import coherence_features
from evaluators.coherence_model import CoherenceModel
from evaluators.coherence_topic import find_breaks
from evaluators.coherence_weights import MODELS
from shadow.core.text import han_count, language_of, split_sentences


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


def coherence_of(
    sentence_embeddings: np.ndarray,
    sentences: Sequence[str] | None = None,
    *,
    baseline: float = 0.0,
    break_cosine: float = 0.3,
    global_shift: float = 0.0,
    encoder_name: str | None = None,
    heads: CoherenceHeads | None = None,
    language: str | None = None,
) -> CoherenceResult:
    """Coherence of one text from its L2-normalised sentence embeddings (n, dim) and, if given, the sentences.

    - `sentences`: the text of each embedded sentence, for the measures read on text (`coherence_features`).
    - `baseline`: cosine unrelated sentences reach with this encoder (the encoder's `similarity_baseline`).
    - `encoder_name`, `heads`: see `coherence_features`.
    - `language`: "zh" or "en", whose model reads the measures (None: from the sentences; Chinese
      without them).
    - `break_cosine`: in a text the model finds spliced, a further split of either side whose segment
      centroids are less alike than this (rescaled) is a further break.
    - `global_shift`: added to the global logit; above 0 favours shuffles (order) over splices (topic).

    `score = 1 / (1 + exp(-global logit) + exp(-local logit))`; see scripts/validate_evaluators for what it
    reaches.
    """
    model = model_for(language if language is not None else _language(sentences))
    features, gap = coherence_features(
        sentence_embeddings,
        sentences,
        baseline=baseline,
        encoder_name=encoder_name,
        heads=heads,
        neutral=model.neutral,
    )
    global_logit = model.global_logit(features, global_shift)
    local_logit = model.local_logit(features)
    embeddings = np.asarray(sentence_embeddings, dtype=np.float64)
    breaks: list[int] = []
    if gap and global_logit < model.break_logit:
        # The model finds the text spliced at its best split; each side may hold a further, sharper jump.
        breaks = sorted(
            find_breaks(embeddings[:gap], break_cosine=break_cosine, baseline=baseline)
            + [gap]
            + find_breaks(embeddings[gap:], break_cosine=break_cosine, baseline=baseline, offset=gap)
        )
    return CoherenceResult(
        score=_original_probability(global_logit, local_logit),
        breaks=breaks,
        order_gain=features["order_gain"],
        local_score=_sigmoid(local_logit),
        global_score=_sigmoid(global_logit),
        split_cosine=features["split_cosine"],
        features=features,
    )


def model_for(language: str) -> CoherenceModel:
    """The fitted model of `language`; Chinese's for a language without one of its own."""
    return MODELS.get(language, MODELS["zh"])


def _language(sentences: Sequence[str] | None) -> str:
    return language_of("".join(sentences)) if sentences else "zh"


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
    own. A text is read up to its first `max_sentences` sentences (256, some 10,000 characters; a
    captured answer can hold megabytes). Other keyword arguments go to `coherence_of`.
    """

    name: ClassVar[str] = "coherence"
    version: ClassVar[str] = "5.0"
    higher_is_better: ClassVar[bool] = True
    primary_metric: ClassVar[str] = "score"
    pairwise: ClassVar[bool] = False
    needs_encoder: ClassVar[bool] = True
    outputs: ClassVar[tuple[Output, ...]] = (
        Output("applicable", "coherence applies", kind="flag", worse=None),
        Output(
            "score",
            "coherence",
            worse="lower",
            applicable="applicable",
            population="long answers",
            # Effect: A - 0.5 that the primary's coherence beats the candidate's on the same prompts.
            check=GateCheck("coherence_score", required=False, tolerance=0.08),
            severity=(0.05, 0.10),
            badness=1.0,
        ),
        Output(
            "breaks",
            "logic-break rate",
            kind="count",
            applicable="applicable",
            event="has a logic break",
            population="long answers",
            # Effect: candidate break rate - primary break rate.
            check=GateCheck("coherence_break_rate", critical=True, required=False, tolerance=0.02),
        ),
    )

    def __init__(
        self,
        *,
        min_chars: int = 200,
        min_sentences: int = 4,
        max_sentences: int = 256,
        languages: Sequence[str] = ("zh", "en"),
        **coherence_options: Any,
    ) -> None:
        if max_sentences < min_sentences:
            raise ValueError(f"max_sentences ({max_sentences}) is below min_sentences ({min_sentences}).")
        self.min_chars = min_chars
        self.min_sentences = min_sentences
        self.max_sentences = max_sentences
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
        # The measures are quadratic in the sentences (and the reorderings multiply that): a huge answer is
        # read up to `max_sentences`, which bounds the time and memory one text takes.
        return sentences[: self.max_sentences]
