"""The one interface every evaluator implements, and the registry that lists them.

An evaluator scores a batch of texts or text pairs and returns one JSON-ready dict per item. Metadata
(name, version, direction) are attributes, not code paths, so the runner, the store and the gate can treat
all evaluators alike. Adding an evaluator means one new module plus one line in `evaluators/registry.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np


class TextEncoder(Protocol):
    """Turns texts into L2-normalised float32 embeddings, shape (len(texts), dim)."""

    name: str

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class TextPair:
    """The texts of one pair an evaluator sees. `reference` is the primary's answer (the baseline)."""

    reference: str
    candidate: str
    candidate_finish_reason: str | None = None
    reference_finish_reason: str | None = None
    prompt: str = ""


@dataclass(frozen=True, slots=True)
class ScoringContext:
    """What evaluators may share during one run: the encoder (built once) and the torch device."""

    encoder: TextEncoder | None = None
    device: str = "cpu"
    batch_size: int = 64


class Evaluator:
    """Base class. Subclasses set the class attributes and implement `score_pairs`.

    - `pairwise`: the score compares two texts (semantic, length). Otherwise the evaluator scores one text
      at a time (loop, coherence) and the runner applies it to each side.
    - `needs_encoder`: the runner builds the shared encoder only when a selected evaluator needs it.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    higher_is_better: ClassVar[bool]
    primary_metric: ClassVar[str]
    pairwise: ClassVar[bool] = True
    needs_encoder: ClassVar[bool] = False

    def score_pairs(self, pairs: Sequence[TextPair], context: ScoringContext) -> list[dict[str, Any]]:
        """Pairwise evaluators: one result dict per pair."""
        raise NotImplementedError

    def score_texts(
        self, texts: Sequence[str], finish_reasons: Sequence[str | None], context: ScoringContext
    ) -> list[dict[str, Any]]:
        """Per-text evaluators: one result dict per text."""
        raise NotImplementedError

    @classmethod
    def metadata(cls) -> dict[str, Any]:
        return {
            "name": cls.name,
            "version": cls.version,
            "higher_is_better": cls.higher_is_better,
            "primary_metric": cls.primary_metric,
            "pairwise": cls.pairwise,
        }
