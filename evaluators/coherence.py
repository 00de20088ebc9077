"""Long-text coherence from sentence embeddings: does the text stay on its topic, in an order that flows?

A text is split into sentences (`evaluators.text.split_sentences`), every sentence is embedded, and the
similarities are read against the text's own baseline and the encoder's "unrelated" cosine:

- **global** (topic): the best two-segment split of the text, where the centroids of the two segments are
  least alike. A text that stays on topic has no split with unrelated halves; a text glued from two sources
  has one. Binary segmentation on the same measure gives `breaks`: the first sentence after each jump.
  The split is also read on character bigrams (`bigram_similarity`): two sources share few words.
- **local** (order): `order_gain`, the mean similarity of adjacent sentences minus that of sentences two or
  more apart, on embeddings and on character bigrams. In a text that flows neighbours are more alike than
  distant sentences; a shuffle loses it. Embeddings ignore order cues that a shuffle breaks, so the
  discourse cues of `order_cues` count too: a connective or an anaphor opening the text, ordinals out of
  order (二是 before 一是), quotes closed before they open, a last sentence ending in "；".

Each part is a fixed logistic combination of its measures (`GLOBAL_WEIGHTS`, `LOCAL_WEIGHTS`, fitted on
validation seeds 10-12 of scripts/validate_evaluators, never on the seeds reported), and
`score = sigmoid(min(global logit, local logit))`, in [0, 1], higher is more coherent: a text is as
coherent as its weaker side. The naive minimum adjacent cosine is kept as `naive_min_adjacent` for
comparison.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from evaluators.base import Evaluator, ScoringContext
from evaluators.text import han_count, language_of, split_sentences

# Logistic weights, fitted on validation seeds 10-12 (originals against splices for the global part, against
# shuffles for the local part; scripts/validate_evaluators), then rounded.
GLOBAL_WEIGHTS = {"split_cosine": 12.3, "bigram_split": 94.6, "adjacent_at_split": 2.3}
GLOBAL_BIAS = -5.0  # -4.5 fitted, minus 0.5: a splice is missed more often than a shuffle otherwise
LOCAL_WEIGHTS = {"order_gain": 13.7, "bigram_order_gain": 19.3, "opens_with_connective": -0.6,
                 "opens_with_anaphor": -1.15, "ordinals_out_of_order": -4.7, "unbalanced_quotes": -2.0,
                 "ends_open": -5.5}  # fmt: skip
LOCAL_BIAS = -0.06
# Without the sentences' text, the lexical measures take their median on original news paragraphs.
NEUTRAL_LEXICAL = {"bigram_split": 0.037, "bigram_order_gain": 0.013}

# Words that tie a sentence to the one before: they cannot open a paragraph that makes sense on its own.
CONNECTIVES = ("因此", "所以", "但是", "但", "然而", "可是", "不过", "同时", "此外", "另外", "而且", "并且",
               "其次", "最后", "总之", "因而", "于是", "从而", "否则", "那么", "可见", "由此", "相反", "反之",
               "而", "却", "也", "还", "就", "再", "并", "例如", "比如", "尤其", "特别是", "换句话说",
               "也就是说", "这样", "这就", "为此", "对此", "其中", "另一方面")  # fmt: skip
ANAPHORS = ("这", "那", "该", "其", "此", "他", "她", "它", "上述", "以上", "前者", "后者")
ORDINAL_SERIES = (
    ("首先", "其次", "再次", "最后"),
    ("一是", "二是", "三是", "四是", "五是", "六是"),
    ("第一", "第二", "第三", "第四", "第五", "第六"),
    ("其一", "其二", "其三", "其四"),
)
_OPENING_PUNCTUATION = "“「『（(—-　 \"'"
_OPEN_QUOTES, _CLOSE_QUOTES = "“「『", "”」』"
_OPEN_ENDINGS = ("；", ";", "：", ":", "，", ",")
_CLOSERS = "”’」』）)》\"'"
_LETTER_RE = re.compile(r"[^\W\d_]")  # digits left out: dates and figures recur across unrelated news


@dataclass(frozen=True, slots=True)
class CoherenceResult:
    """`score` = sigmoid(min(global logit, local logit)); `breaks` are first sentences after a topic jump.

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


def bigram_similarity(sentences: Sequence[str]) -> np.ndarray:
    """Cosine of the character-bigram counts of every pair of sentences (letters and Han only).

    >>> bigram_similarity(["北京天气晴朗。", "北京天气转阴。", "足球比赛。"]).round(2)[0].tolist()
    [1.0, 0.6, 0.0]
    """
    vocabulary: dict[str, int] = {}
    bags = []
    for sentence in sentences:
        chars = "".join(_LETTER_RE.findall(sentence.lower()))
        bag = Counter(chars[i : i + 2] for i in range(len(chars) - 1))
        bags.append(bag)
        for bigram in bag:
            vocabulary.setdefault(bigram, len(vocabulary))
    counts = np.zeros((len(sentences), max(1, len(vocabulary))))
    for row, bag in enumerate(bags):
        for bigram, count in bag.items():
            counts[row, vocabulary[bigram]] = count
    norms = np.maximum(np.linalg.norm(counts, axis=1, keepdims=True), 1e-12)
    unit = counts / norms
    return unit @ unit.T


def _opening(sentence: str) -> str:
    return sentence.lstrip(_OPENING_PUNCTUATION)


def ordinals_out_of_order(sentences: Sequence[str]) -> int:
    """Adjacent pairs of sentence-opening ordinals of one series in the wrong order (二是 before 一是).

    >>> ordinals_out_of_order(["一是加强管理。", "二是完善制度。", "最后，总结经验。"])
    0
    >>> ordinals_out_of_order(["其次，完善制度。", "首先，加强管理。", "最后，总结经验。"])
    1
    """
    violations = 0
    for series in ORDINAL_SERIES:
        ranks = [
            rank
            for sentence in sentences
            for rank, word in enumerate(series)
            if _opening(sentence).startswith(word)
        ]
        violations += sum(earlier > later for earlier, later in zip(ranks, ranks[1:], strict=False))
    return violations


def unbalanced_quotes(sentences: Sequence[str]) -> int:
    """Chinese quotes closed before they were opened, plus one if a quote is left open at the end.

    >>> unbalanced_quotes(["他说：“走吧。", "我们走。”", "天黑了。"]), unbalanced_quotes(["我们走。”", "他说：“走吧。"])
    (0, 2)
    """
    depth = unmatched = 0
    for char in "".join(sentences):
        if char in _OPEN_QUOTES:
            depth += 1
        elif char in _CLOSE_QUOTES:
            if depth == 0:
                unmatched += 1
            depth = max(0, depth - 1)
    return unmatched + (depth > 0)


def order_cues(sentences: Sequence[str]) -> dict[str, float]:
    """Discourse cues a shuffle breaks and an embedding ignores; each is 0 in a well-formed text.

    >>> order_cues(["因此，我们要加强管理。", "二是完善制度。", "一是提高认识；"])["opens_with_connective"]
    1.0
    """
    first = _opening(sentences[0]) if sentences else ""
    last = sentences[-1].rstrip(_CLOSERS) if sentences else ""
    return {
        "opens_with_connective": float(first.startswith(CONNECTIVES)),
        "opens_with_anaphor": float(first.startswith(ANAPHORS)),
        "ordinals_out_of_order": float(ordinals_out_of_order(sentences)),
        "unbalanced_quotes": float(unbalanced_quotes(sentences)),
        "ends_open": float(last.endswith(_OPEN_ENDINGS)),
    }


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

    `score = sigmoid(min(global logit, local logit))`; see scripts/validate_evaluators for what it reaches.
    """
    embeddings = np.asarray(sentence_embeddings, dtype=np.float64)
    similarity = embeddings @ embeddings.T
    split_cosine, gap = best_split(embeddings, baseline)
    features = {
        "split_cosine": split_cosine,
        "adjacent_at_split": float(similarity[gap - 1, gap] - baseline) if gap else 1.0,
        "order_gain": order_gain(similarity - baseline),
        **dict.fromkeys(
            (
                "opens_with_connective",
                "opens_with_anaphor",
                "ordinals_out_of_order",
                "unbalanced_quotes",
                "ends_open",
            ),
            0.0,
        ),  # fmt: skip
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
        features.update(order_cues(sentences))
    global_logit = GLOBAL_BIAS + global_shift + sum(w * features[k] for k, w in GLOBAL_WEIGHTS.items())
    local_logit = LOCAL_BIAS + sum(w * features[k] for k, w in LOCAL_WEIGHTS.items())
    breaks = find_breaks(embeddings, break_cosine=break_cosine, baseline=baseline)
    return CoherenceResult(
        score=_sigmoid(min(global_logit, local_logit)),
        breaks=breaks,
        order_gain=features["order_gain"],
        local_score=_sigmoid(local_logit),
        global_score=_sigmoid(global_logit),
        split_cosine=split_cosine,
        features=features,
    )


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
    version: ClassVar[str] = "2.0"
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
