"""What the shared encoder does around its model: length-packed batches, the embedding cache, its counters.

Pure functions and plain containers (numpy only), used by `evaluators.encoder.SentenceEncoder`:

- `plan_batches`: texts sorted by token length and cut into batches by a token budget, so that padding every
  text to its batch's longest stays under a set share of the tokens the model computes on;
- `EmbeddingCache`: a bounded LRU of embeddings keyed by a hash of the text, so that a text embedded once in
  a run (by the semantic evaluator, then by coherence; by a secondary, then by a replay) is not embedded
  again;
- `EncoderStats`: texts, cache hits, real and padded tokens, batches; `padding_share` is what a benchmark
  reports.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

DEFAULT_MAX_PADDING = 0.1
"""Padding may take at most this share of the tokens of a batch (real + padded)."""
DEFAULT_CACHE_SIZE = 100_000
"""Embeddings kept for texts already seen; 512 float32 each: 205 MB when full."""


def plan_batches(
    lengths: Sequence[int],
    *,
    batch_size: int,
    max_padding: float | None = DEFAULT_MAX_PADDING,
    token_budget: int | None = None,
) -> list[np.ndarray]:
    """Indices into `lengths`, in batches: shortest first, each batch within a token budget.

    The budget is `token_budget`, by default `batch_size` texts of the median length (padded tokens
    included). A batch is also cut where the next, longer text would make padding (every text padded to the
    longest) more than `max_padding` of the batch's tokens; None turns that check off. A text longer than
    the budget is a batch of its own. Every index appears exactly once.

    >>> [batch.tolist() for batch in plan_batches([20, 10, 21, 12], batch_size=64)]
    [[1, 3], [0, 2]]
    >>> [batch.tolist() for batch in plan_batches([20, 10, 21, 12], batch_size=64, max_padding=None)]
    [[1, 3, 0, 2]]
    >>> [batch.tolist() for batch in plan_batches([10, 10, 10, 300], batch_size=2)]  # budget: 2 x 10 tokens
    [[0, 1], [2], [3]]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}.")
    if not lengths:
        return []
    sizes = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(sizes, kind="stable")
    budget = token_budget or batch_size * max(int(np.median(sizes)), 1)
    batches: list[np.ndarray] = []
    start, real = 0, 0
    for position, index in enumerate(order):
        length = int(sizes[index])
        count = position - start + 1
        encoded = count * length  # sorted ascending: the text joining is the batch's longest
        too_big = encoded > budget
        too_padded = max_padding is not None and encoded - (real + length) > max_padding * encoded
        if position > start and (too_big or too_padded):
            batches.append(order[start:position])
            start, real = position, 0
        real += length
    batches.append(order[start:])
    return batches


def unsorted_batches(texts: Sequence[str], *, batch_size: int) -> list[np.ndarray]:
    """`batch_size` texts a batch, longest (in characters) first: what sentence-transformers' `encode` does.
    Kept to measure what length packing saves (`SentenceEncoder.pack_batches = False`).

    >>> [batch.tolist() for batch in unsorted_batches(["a", "ccc", "bb"], batch_size=2)]
    [[1, 2], [0]]
    """
    order = np.argsort([-len(text) for text in texts], kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def text_key(text: str) -> bytes:
    """The cache key of a text: 16 bytes of BLAKE2b over its UTF-8 (lone surrogates kept, never an error).

    >>> len(text_key("猫坐在垫子上。")), text_key("a") == text_key("a"), text_key("a") == text_key("a ")
    (16, True, False)
    """
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class EmbeddingCache:
    """At most `max_entries` embeddings of `dim` float32, least recently used dropped first.

    Vectors live in one array that grows by doubling up to `max_entries` rows (100,000 x 512 float32 is
    205 MB), so memory is bounded and nothing keeps a whole batch's output alive. `max_entries=0` caches
    nothing.

    >>> cache = EmbeddingCache(max_entries=2, dim=2)
    >>> cache.put(b"a", np.array([1.0, 0.0])); cache.put(b"b", np.array([0.0, 1.0]))
    >>> cache.get(b"a") is not None   # "a" is now the most recently used
    True
    >>> cache.put(b"c", np.array([0.6, 0.8]))   # full: "b" goes
    >>> cache.get(b"b") is None, len(cache)
    (True, 2)
    """

    def __init__(self, max_entries: int, dim: int) -> None:
        if max_entries < 0:
            raise ValueError(f"The embedding cache size must be 0 or more, not {max_entries}.")
        self.max_entries = max_entries
        self._slots: OrderedDict[bytes, int] = OrderedDict()
        self._vectors = np.empty((min(max_entries, 1024), dim), dtype=np.float32)

    def __len__(self) -> int:
        return len(self._slots)

    def get(self, key: bytes) -> np.ndarray | None:
        slot = self._slots.get(key)
        if slot is None:
            return None
        self._slots.move_to_end(key)
        return self._vectors[slot]

    def put(self, key: bytes, vector: np.ndarray) -> None:
        if not self.max_entries:
            return
        slot = self._slots.get(key)
        if slot is not None:
            self._slots.move_to_end(key)
        elif len(self._slots) >= self.max_entries:
            _, slot = self._slots.popitem(last=False)
            self._slots[key] = slot
        else:
            slot = len(self._slots)
            if slot >= len(self._vectors):
                grown = np.empty(
                    (min(2 * len(self._vectors), self.max_entries), self._vectors.shape[1]), np.float32
                )
                grown[: len(self._vectors)] = self._vectors
                self._vectors = grown
            self._slots[key] = slot
        self._vectors[slot] = vector

    def clear(self) -> None:
        self._slots.clear()


@dataclass
class EncoderStats:
    """Counters of one encoder since it was built (or `reset`).

    - `texts`: texts passed to `encode`, repeats included; `duplicates`: repeats within one call;
      `cache_hits`: distinct texts of a call found in the cache; `encoded_texts`: texts the model ran on.
    - `real_tokens`: sentencepiece pieces of the encoded texts (<s> and </s> included); `padded_tokens`:
      rows the model computed on that hold no token (see the backend: the padding of each batch to its
      longest text, or the zero rows between texts where a backend packs them into one sequence).
    - `batches`: model calls.
    """

    texts: int = 0
    duplicates: int = 0
    cache_hits: int = 0
    encoded_texts: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0
    batches: int = 0

    @property
    def padding_share(self) -> float | None:
        """Padded tokens over all the tokens computed on (None before any).

        >>> EncoderStats(real_tokens=90, padded_tokens=10).padding_share
        0.1
        """
        total = self.real_tokens + self.padded_tokens
        return round(self.padded_tokens / total, 6) if total else None

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self) | {"padding_share": self.padding_share}

    def reset(self) -> None:
        for name in asdict(self):
            setattr(self, name, 0)


class PieceModel(Protocol):
    """A model of USE's sentencepiece pieces: the torch port (`TorchPieces`) or its ONNX graph
    (`evaluators.encoder_onnx.OnnxPieces`). `SentenceEncoder` tokenises first, so that it can batch by
    token length, then embeds batch by batch."""

    dim: int
    max_seq_length: int | None
    pads_batches: bool
    """Whether the model computes on each batch padded to its longest text (then `SentenceEncoder` cuts
    batches where padding would pass `max_padding`); a model that packs its batches gets batches by the
    token budget alone, as few as it allows."""

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]: ...

    def embed(self, pieces: Sequence[Sequence[int]]) -> tuple[np.ndarray, int]:
        """L2-normalised float32 rows, and the rows computed on that held no token (padding)."""
        ...


class SentenceEncoder:
    """The shared encoder behind the `TextEncoder` protocol of evaluators/base.py.

    `model` is the SentenceTransformer (None for the ONNX backends); `pieces` runs the default encoder
    (None for any other model, which then batches as sentence-transformers does). `similarity_baseline` is
    the cosine that unrelated texts typically reach with this model (0.0 where unknown); metrics may rescale
    against it. `stats` counts what `encode` did (`EncoderStats`); `pack_batches = False` batches by count
    in character-length order instead of by token budget, to measure what packing saves.
    """

    def __init__(
        self,
        model: Any,
        *,
        name: str,
        device: str,
        similarity_baseline: float = 0.0,
        pieces: PieceModel | None = None,
        backend: str = "torch",
        cache_size: int = DEFAULT_CACHE_SIZE,
        max_padding: float | None = DEFAULT_MAX_PADDING,
    ):
        if model is None and pieces is None:
            raise ValueError("A SentenceEncoder needs a model or a piece model.")
        self.model = model
        self.pieces = pieces
        self.name = name
        self.device = device
        self.backend = backend
        self.similarity_baseline = similarity_baseline
        self.dim = pieces.dim if pieces is not None else int(model.get_embedding_dimension())
        self.cache = EmbeddingCache(cache_size, self.dim)
        self.max_padding = max_padding
        self.pack_batches = True
        self.stats = EncoderStats()
        if pieces is None and hasattr(model, "register_forward_pre_hook"):
            model.register_forward_pre_hook(self._count_model_batch)

    @property
    def max_seq_length(self) -> int | None:
        return self.pieces.max_seq_length if self.pieces is not None else self.model.max_seq_length

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """L2-normalised float32 rows in input order. Identical texts are encoded once, and texts that an
        earlier call encoded come from the cache."""
        row_of: dict[bytes, int] = {}
        inverse = np.empty(len(texts), dtype=np.int64)
        unique: list[str] = []
        for position, text in enumerate(texts):
            row = row_of.setdefault(text_key(text), len(unique))
            if row == len(unique):
                unique.append(text)
            inverse[position] = row
        self.stats.texts += len(texts)
        self.stats.duplicates += len(texts) - len(unique)

        vectors = np.empty((len(unique), self.dim), dtype=np.float32)
        missing: list[int] = []
        keys = list(row_of)
        for row, key in enumerate(keys):
            cached = self.cache.get(key)
            if cached is None:
                missing.append(row)
            else:
                vectors[row] = cached
        self.stats.cache_hits += len(unique) - len(missing)
        if missing:
            fresh = self._encode_uncached([unique[row] for row in missing], batch_size)
            vectors[missing] = fresh
            for row, vector in zip(missing, fresh, strict=True):
                self.cache.put(keys[row], vector)
        return vectors[inverse]

    def _encode_uncached(self, texts: list[str], batch_size: int) -> np.ndarray:
        self.stats.encoded_texts += len(texts)
        if self.pieces is None:
            vectors = self.model.encode(
                texts,
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            return np.asarray(vectors, dtype=np.float32)
        pieces = self.pieces.tokenize(texts)
        lengths = [len(ids) for ids in pieces]
        if self.pack_batches:
            if self.pieces.pads_batches:
                batches = plan_batches(lengths, batch_size=batch_size, max_padding=self.max_padding)
            else:
                # Where padding costs nothing, fewer batches do: each batch is rounds of parallel kernels,
                # and on a CPU shared with other work every round waits for its slowest thread. A budget of
                # `batch_size` texts of the mean length keeps the count of fixed-size batches.
                budget = batch_size * max(-(-sum(lengths) // len(lengths)), 1)
                batches = plan_batches(lengths, batch_size=batch_size, max_padding=None, token_budget=budget)
        else:
            batches = unsorted_batches(texts, batch_size=batch_size)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for batch in batches:
            out[batch], padded = self.pieces.embed([pieces[index] for index in batch])
            self.stats.real_tokens += sum(lengths[index] for index in batch)
            self.stats.padded_tokens += padded
            self.stats.batches += 1
        return out

    def _count_model_batch(self, module: Any, args: tuple[Any, ...]) -> None:
        # Other models attend over their padding: every position of the batch's rectangle is computed.
        features = args[0] if args else None
        if isinstance(features, dict) and "attention_mask" in features:
            mask = features["attention_mask"]
            real = int(mask.sum())
            self.stats.real_tokens += real
            self.stats.padded_tokens += int(mask.numel()) - real
            self.stats.batches += 1
