"""The learned parts of coherence: where a sentence belongs, and which sentence may follow which.

Three small linear heads, fitted by `scripts/fit_coherence` on the heads' share of the fitting passages
of every coherence domain but the held-out one (`tests.coherence_domains`: up to 400 passages each, none
that `scripts/validate_evaluators` draws), stored in `coherence_heads.npz`:

- **lexical position**: a ridge regression from a sentence's hashed characters (its first one to four and
  last one to three characters, its characters and character bigrams, its length) to its relative position
  in the paragraph, 0 first and 1 last. A lead introduces (a full name, a date, "据了解"), the middle refers
  back ("该矿", "他"), the end concludes ("要", "将", "希望"). It reads characters, so it works with any
  encoder.
- **embedding position**: the same regression from the sentence's embedding.
- **adjacency** (a local coherence discriminator): a logistic model over `[a, b, a*b, |a-b|]` of two
  sentence embeddings, fitted to tell "b directly follows a" from the reverse and from two other sentences
  of the same paragraph. Its logit for every ordered pair is the `adjacency_logits` matrix.

The embedding heads only hold for the encoder they were fitted with (`encoder_name`); with another encoder
`coherence_features` gives their measures a neutral value.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from evaluators.coherence_cues import _OPENING_PUNCTUATION, sentence_cache

HASH_BUCKETS = 2**15
HEADS_PATH = Path(__file__).with_name("coherence_heads.npz")
# Digits fold to 0: "１９９７年" and "２００４年" are the same cue (a date), not two.
_DIGITS_TO_ZERO = str.maketrans("０１２３４５６７８９123456789", "0000000000000000000")
_LENGTH_SCALE = 50.0  # characters per unit of the length feature


def sentence_grams(sentence: str) -> list[str]:
    """The character features of one sentence, each marked by where it was read.

    >>> sentence_grams("据了解，")[:4]
    ['^据', '^据了', '^据了解', '^据了解，']
    """
    text = sentence.strip().lower().translate(_DIGITS_TO_ZERO)
    opening = text.lstrip(_OPENING_PUNCTUATION)
    grams = [f"^{opening[:size]}" for size in (1, 2, 3, 4)]
    grams += [f"{text[-size:]}$" for size in (1, 2, 3)]
    grams += [f"~{text[i : i + 2]}" for i in range(len(text) - 1)]
    grams += list(text)
    return grams


def sentence_buckets(sentence: str) -> list[int]:
    """The hashed feature columns of a sentence (CRC-32: stable across runs and machines), each once."""
    return sorted({zlib.crc32(gram.encode("utf-8")) % HASH_BUCKETS for gram in sentence_grams(sentence)})


@sentence_cache(16384)
def _bucket_array(sentence: str) -> np.ndarray:
    """`sentence_buckets` as a read-only index array, kept for recent sentences (`sentence_cache`)."""
    buckets = np.asarray(sentence_buckets(sentence), dtype=np.intp)
    buckets.flags.writeable = False
    return buckets


def lexical_design(sentences: Sequence[str]):  # -> scipy.sparse.csr_matrix; scipy imported when fitting
    """One row per sentence: a 1 in each of its hashed feature columns, then its length."""
    from scipy import sparse

    rows, columns = [], []
    for row, sentence in enumerate(sentences):
        buckets = sentence_buckets(sentence)
        rows += [row] * len(buckets)
        columns += buckets
    hashed = sparse.csr_matrix((np.ones(len(rows)), (rows, columns)), shape=(len(sentences), HASH_BUCKETS))
    lengths = sparse.csr_matrix(np.array([[len(s) / _LENGTH_SCALE] for s in sentences], dtype=float))
    return sparse.hstack([hashed, lengths]).tocsr()


def pair_design(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """`[a, b, a*b, |a-b|]` for rows of sentence embeddings: what the adjacency head reads."""
    return np.hstack([first, second, first * second, np.abs(first - second)])


@dataclass(frozen=True, slots=True)
class CoherenceHeads:
    lexical_weights: np.ndarray  # (HASH_BUCKETS + 1,): hashed features, then length
    lexical_bias: float
    encoder_name: str
    embedding_weights: np.ndarray  # (dim,)
    embedding_bias: float
    adjacency_weights: np.ndarray  # (4 * dim,)
    adjacency_bias: float

    def lexical_positions(self, sentences: Sequence[str]) -> np.ndarray:
        """Each sentence's relative position (about 0 first, 1 last) read from its characters."""
        hashed, length_weight = self.lexical_weights[:HASH_BUCKETS], self.lexical_weights[HASH_BUCKETS]
        return np.array(
            [
                self.lexical_bias
                + float(hashed[_bucket_array(sentence)].sum())
                + length_weight * len(sentence) / _LENGTH_SCALE
                for sentence in sentences
            ]
        )

    def embedding_positions(self, embeddings: np.ndarray) -> np.ndarray:
        return embeddings @ self.embedding_weights + self.embedding_bias

    def adjacency_logits(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, n): logit that sentence j directly follows sentence i, for every ordered pair.

        The head is linear in `[a, b, a*b, |a-b|]`, so the first three parts are matrix products and only
        the `|a-b|` part needs every pair.
        """
        dim = embeddings.shape[1]
        w_first, w_second, w_product, w_distance = (
            self.adjacency_weights[k * dim : (k + 1) * dim] for k in range(4)
        )
        logits = (embeddings @ w_first)[:, None] + (embeddings @ w_second)[None, :]
        logits = logits + (embeddings * w_product) @ embeddings.T
        rows = max(1, 2_000_000 // max(1, len(embeddings) * dim))  # bound the (rows, n, dim) block in memory
        for start in range(0, len(embeddings), rows):
            block = embeddings[start : start + rows]
            logits[start : start + rows] += np.abs(block[:, None, :] - embeddings[None, :, :]) @ w_distance
        return logits + self.adjacency_bias

    def fits(self, encoder_name: str | None) -> bool:
        """Whether the embedding heads hold for this encoder."""
        return encoder_name == self.encoder_name

    def save(self, path: Path = HEADS_PATH) -> None:
        # float16: the heads are small regressions; half precision moves a logit by < 1e-3 and halves the file.
        np.savez_compressed(
            path,
            lexical_weights=self.lexical_weights.astype(np.float16),
            lexical_bias=np.float64(self.lexical_bias),
            encoder_name=np.array(self.encoder_name),
            embedding_weights=self.embedding_weights.astype(np.float32),
            embedding_bias=np.float64(self.embedding_bias),
            adjacency_weights=self.adjacency_weights.astype(np.float32),
            adjacency_bias=np.float64(self.adjacency_bias),
        )

    @classmethod
    def load(cls, path: Path = HEADS_PATH) -> CoherenceHeads:
        with np.load(path) as stored:
            heads = cls(
                lexical_weights=stored["lexical_weights"].astype(np.float64),
                lexical_bias=float(stored["lexical_bias"]),
                encoder_name=str(stored["encoder_name"]),
                embedding_weights=stored["embedding_weights"].astype(np.float64),
                embedding_bias=float(stored["embedding_bias"]),
                adjacency_weights=stored["adjacency_weights"].astype(np.float64),
                adjacency_bias=float(stored["adjacency_bias"]),
            )
        if heads.lexical_weights.shape != (HASH_BUCKETS + 1,):
            raise ValueError(
                f"{path}: {heads.lexical_weights.shape[0]} lexical weights, not {HASH_BUCKETS + 1}."
            )
        if heads.adjacency_weights.shape != (4 * len(heads.embedding_weights),):
            raise ValueError(f"{path}: adjacency weights do not match the embedding size.")
        return heads


@cache
def default_heads() -> CoherenceHeads:
    """The shipped heads, read once on first use (not at import)."""
    return CoherenceHeads.load()


def position_features(predicted: Sequence[float], prefix: str = "") -> dict[str, float]:
    """How well predicted positions follow the sentences' real order (names start with `prefix`).

    - `position_rho`: Spearman correlation of predicted and real position; `position_rho_z` the same in
      units of its spread under a random order (rho * sqrt(n - 1));
    - `position_slope`: covariance of the two over the spread of the predictions;
    - `first_position_rank`, `last_position_rank`: where the first and the last sentence rank among the
      predictions (0 earliest, 1 latest): a lead ranks early, a conclusion late.

    >>> position_features([0.1, 0.2, 0.5, 0.9])["position_rho"]
    1.0
    """
    values = np.asarray(predicted, dtype=float)
    n = len(values)
    names = ("position_rho", "position_rho_z", "position_slope", "first_position_rank", "last_position_rank")
    if n < 3:
        return dict(zip((prefix + name for name in names), (0.0, 0.0, 0.0, 0.5, 0.5), strict=True))
    real = np.arange(n) / (n - 1)
    ranks = np.argsort(np.argsort(values)) / (n - 1)
    rho = round(float(np.corrcoef(ranks, real)[0, 1]), 12) if values.std() > 0 else 0.0
    slope = float(np.cov(values, real)[0, 1] / (values.std() + 1e-6))
    measures = (rho, rho * float(np.sqrt(n - 1)), slope, float(ranks[0]), float(ranks[-1]))
    return dict(zip((prefix + name for name in names), measures, strict=True))
