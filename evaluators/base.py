"""The one interface every evaluator implements, and the declaration of what it outputs.

An evaluator scores a batch of texts or text pairs and returns one JSON-ready dict per item. Metadata
(name, version, direction) are attributes, not code paths, so the runner, the store and the gate can treat
all evaluators alike. Each evaluator declares its outputs once (`Output`): where a number sits in its
result, which way is worse, whether the primary's own reruns give it a noise floor, and how the gate judges
it by default. The gate's checks, the export's columns and the report's panels and colours are built from
those declarations (`evaluators.metrics`). Adding an evaluator is one new module plus one line in
`evaluators/registry.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

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


@dataclass(frozen=True, slots=True)
class GateCheck:
    """How the gate judges an output unless the policy file says otherwise (`shadow.gate.policy`).

    `tolerance` is in the units of the check's effect size: for a rate, the candidate's rate minus the
    reference's; for a number, the Vargha-Delaney A - 1/2 (the probability that the candidate is worse,
    minus a half). `absolute_threshold` (a median, or a rate) judges a noise-floor output when there are
    too few secondaries for a floor.
    """

    name: str
    critical: bool = False
    required: bool = True
    weight: float = 1.0
    tolerance: float = 0.0
    absolute_threshold: float | None = None
    min_pairs: int | None = None


OutputKind = Literal["value", "flag", "count", "span"]


@dataclass(frozen=True, slots=True)
class Output:
    """One output of an evaluator, declared once.

    - `key`: where it sits in the result object (for per-text evaluators, in each side's object).
    - `kind`: "value" (a number), "flag" (a bool), "count" (a list: its length; "has one" as a flag),
      "span" (a [start, end] pair of character offsets).
    - `worse`: "higher" or "lower" is worse, or None when neither direction is (the units of a text).
    - `magnitude`: compare |value| (a length ratio is a change whichever way it goes).
    - `noise_floor`: pairwise outputs only: the evaluator also scores the primary against its own rerun
      (the secondary), so the candidate is judged against the primary's own noise.
    - `applicable`: per-text outputs only: a flag key that must be true on every compared side.
    - `event` / `population`: words for reasons ("loops" in "answers").
    - `check`: the gate's default check, or None for an output that is only exported.
    - `severity`: the report's (warn, bad) gap against the reference; `badness`: its weight in the order
      of the worst-pairs table.
    """

    key: str
    label: str
    kind: OutputKind = "value"
    worse: Literal["higher", "lower"] | None = "higher"
    magnitude: bool = False
    noise_floor: bool = False
    applicable: str | None = None
    event: str = ""
    population: str = "answers"
    check: GateCheck | None = None
    severity: tuple[float, float] | None = None
    badness: float = 0.0


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
    outputs: ClassVar[tuple[Output, ...]] = ()
    """What the result objects carry that readers use; see `Output`."""

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
