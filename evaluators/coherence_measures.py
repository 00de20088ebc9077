"""Every measure the coherence model reads for one text, by name: the embedding, text and head measures
put together in the dictionary that the logits in `evaluators.coherence_weights` are fitted on.

`evaluators.coherence` turns these into a score; `scripts/fit_coherence` computes them to fit the weights.
Both must see exactly the same measures, so they are assembled here, once. The measures themselves are in
`evaluators.coherence_topic`, `evaluators.coherence_order`, `evaluators.coherence_cues` (the text's
discourse cues) and `evaluators.coherence_heads` (the learned heads).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from evaluators.coherence_cues import TextUnits, first_sentence_anaphora, order_cues
from evaluators.coherence_heads import CoherenceHeads, default_heads, position_features
from evaluators.coherence_order import (
    locality_gradient,
    order_gain,
    order_gain_z,
    permutation_z_stack,
    side_order_gain,
)
from evaluators.coherence_topic import best_contrast, best_split, split_contrast, split_z_profile

# The discourse cues `order_cues` reads; 0 when the sentences are not given.
_CUE_NAMES = ("opens_with_connective", "opens_with_anaphor", "ordinals_out_of_order", "unbalanced_quotes",
              "ends_open", "orphan_ordinals", "years_out_of_order", "period_in_clause_run", "opens_with_clause")  # fmt: skip
# Measures that need the sentences' text, the embedding heads fitted for this encoder, or both; without
# what they need they take their median over the fitting originals (`CoherenceModel.neutral`).
LEXICAL_FEATURES = ("bigram_split", "bigram_order_gain", "bigram_side_order_gain", "first_sentence_length",
                    "tfidf1_order_gain", "tfidf2_order_gain", "tfidf3_order_gain", "bigram_contrast",
                    "tfidf2_contrast", "bigram_best_contrast", "first_sentence_anaphora", "bigram_order_z",
                    "tfidf1_order_z", "tfidf2_order_z", "bigram_split_z", "tfidf1_split_z", "bigram_side_order_z",
                    "tfidf1_side_order_z", "tfidf2_side_order_z", "position_rho",
                    "position_rho_z", "position_slope",
                    "first_position_rank", "last_position_rank")  # fmt: skip
HEAD_FEATURES = ("adjacency_mean", "adjacency_min", "adjacency_order_z", "adjacency_side_order_z",
                 "adjacency_at_split")  # fmt: skip
BOTH_FEATURES = ("joint_position_rho", "joint_position_rho_z", "joint_position_slope",
                 "joint_first_position_rank", "joint_last_position_rank")  # fmt: skip


def coherence_features(
    sentence_embeddings: np.ndarray,
    sentences: Sequence[str] | None = None,
    *,
    baseline: float = 0.0,
    encoder_name: str | None = None,
    heads: CoherenceHeads | None = None,
    neutral: Mapping[str, float] | None = None,
) -> tuple[dict[str, float], int]:
    """Every measure the coherence logits read, and the first sentence after the most likely splice point
    (0: no split, below four sentences).

    - `sentences`: without them the measures read on text (`LEXICAL_FEATURES`) take their value in
      `neutral` (the language model's medians over fitting originals; 0 where not given) and the discourse
      cues read 0;
    - `heads`: the learned heads (default: the shipped `coherence_heads.npz`); their embedding measures
      (`HEAD_FEATURES`) only count when `encoder_name` is the encoder they were fitted with.
    """
    embeddings = np.asarray(sentence_embeddings, dtype=np.float64)
    if sentences is not None and len(sentences) != len(embeddings):
        raise ValueError(f"{len(sentences)} sentences for {len(embeddings)} embeddings: pass one of each.")
    # Every similarity matrix the measures read, by name; the ones read against reorderings are stacked
    # so that one set of reorderings serves them all.
    matrices = {"embedding": embeddings @ embeddings.T - baseline}
    units = TextUnits(sentences) if sentences is not None else None
    if units is not None:
        matrices["bigram"] = units.bigram_similarity()
        matrices["tfidf1"] = units.tfidf_similarity(1)
    similarity = matrices["embedding"]
    split_cosine, _ = best_split(embeddings, baseline)
    # The split that the embeddings and, with the sentences, the shared words agree on most, each measured
    # against reorderings of the same sentences (`split_z_profile`): where a splice would be.
    profiles = dict(zip(matrices, split_z_profile(np.stack(list(matrices.values()))), strict=True))
    combined = sum(profiles.values()) / len(profiles)
    gap = int(combined.argmax()) + 2 if combined.size else (2 if len(embeddings) == 4 else 0)
    features = {
        "split_cosine": split_cosine,
        "combined_split_z": float(combined.max()) if combined.size else 0.0,
        **_embedding_measures(similarity, gap),
        **dict.fromkeys(_CUE_NAMES, 0.0),
        **{name: (neutral or {}).get(name, 0.0) for name in LEXICAL_FEATURES + HEAD_FEATURES + BOTH_FEATURES},
        # After the neutral values: the split z of words is measured whenever the sentences are given.
        **{
            f"{name}_split_z": float(profile.max()) if combined.size else 0.0
            for name, profile in profiles.items()
        },
    }
    heads = heads or default_heads()
    embedding_heads = heads.fits(encoder_name)
    if embedding_heads:
        matrices["adjacency"] = heads.adjacency_logits(embeddings)
        features.update(_adjacency_measures(matrices["adjacency"], gap))
    if sentences is not None and units is not None:
        matrices["tfidf2"] = units.tfidf_similarity(2)
        features.update(_text_measures(sentences, gap, matrices, units.tfidf_similarity(3)))
        lexical_positions = heads.lexical_positions(sentences)
        features.update(position_features(lexical_positions))
        if embedding_heads:
            joint = lexical_positions + heads.embedding_positions(embeddings)
            features.update(position_features(joint, prefix="joint_"))
    stack = np.stack(list(matrices.values()))
    for suffix, z_values in (
        ("order_z", permutation_z_stack(stack)),
        ("side_order_z", permutation_z_stack(stack, gap=gap)),
    ):
        features.update(
            {f"{name}_{suffix}": float(value) for name, value in zip(matrices, z_values, strict=True)}
        )
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
    }


def _adjacency_measures(adjacency: np.ndarray, gap: int) -> dict[str, float]:
    adjacent = np.diagonal(adjacency, offset=1)
    return {
        "adjacency_mean": float(adjacent.mean()) if adjacent.size else 0.0,
        "adjacency_min": float(adjacent.min()) if adjacent.size else 0.0,
        "adjacency_at_split": float(adjacency[gap - 1, gap]) if gap else 0.0,
    }


def _text_measures(
    sentences: Sequence[str], gap: int, matrices: Mapping[str, np.ndarray], tfidf3: np.ndarray
) -> dict[str, float]:
    """Shared words across and along the text (bigrams, tf-idf n-grams) and the discourse cues, from the
    bigram and tf-idf similarities the caller computed once."""
    lexical = matrices["bigram"]
    measures = {
        "bigram_split": float(lexical[:gap, gap:].mean()) if gap else 1.0,
        "bigram_order_gain": order_gain(lexical),
        "bigram_side_order_gain": side_order_gain(lexical, gap),
        "bigram_contrast": split_contrast(lexical, gap),
        "bigram_best_contrast": best_contrast(lexical),
        "first_sentence_length": len(sentences[0])
        / max(1.0, float(np.mean([len(sentence) for sentence in sentences]))),
        "first_sentence_anaphora": first_sentence_anaphora(sentences),
        "tfidf1_order_gain": order_gain(matrices["tfidf1"]),
        "tfidf2_order_gain": order_gain(matrices["tfidf2"]),
        "tfidf3_order_gain": order_gain(tfidf3),
        "tfidf2_contrast": split_contrast(matrices["tfidf2"], gap),
    }
    measures.update(order_cues(sentences))
    return measures


__all__ = ["BOTH_FEATURES", "HEAD_FEATURES", "LEXICAL_FEATURES", "coherence_features"]
