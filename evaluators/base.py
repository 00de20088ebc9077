"""The one interface every evaluator implements, and the declaration of what it outputs.

An evaluator scores a batch of texts or text pairs (with the tool calls, refusals and request around them)
and returns one JSON-ready dict per item. Metadata
(name, version, direction) are attributes, not code paths, so the runner, the store and the gate can treat
all evaluators alike. Each evaluator declares its outputs once (`Output`): where a number sits in its
result, which way is worse, whether the primary's own reruns give it a noise floor, and how the gate judges
it by default. The gate's checks, the export's columns and the report's panels and colours are built from
those declarations (`evaluators.metrics`). Adding an evaluator is one new module plus one line in
`evaluators/registry.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import numpy as np


class TextEncoder(Protocol):
    """Turns texts into L2-normalised float32 embeddings, shape (len(texts), dim)."""

    name: str

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class TextPair:
    """One comparison a pairwise evaluator sees. `reference` is the primary's answer (the baseline);
    `candidate` the candidate's (or, for the noise floor, the secondary's).

    Evaluators that need text (`Evaluator.needs_text`, the default) always get two strings, never two empty
    ones. Evaluators with `needs_text = False` see every comparison of two answered sides, so a text may be
    None (a tool-only or refusal turn that carried no text at all).

    Tool calls are tuples of ``{"id", "type", "name", "arguments"}`` dicts (arguments exactly as sent), None
    when the side made none. `request` is the request as sent (its `tools`, `response_format`, ...).
    """

    reference: str | None
    candidate: str | None
    candidate_finish_reason: str | None = None
    reference_finish_reason: str | None = None
    prompt: str = ""
    reference_tool_calls: tuple[dict[str, Any], ...] | None = None
    candidate_tool_calls: tuple[dict[str, Any], ...] | None = None
    reference_refusal: str | None = None
    candidate_refusal: str | None = None
    request: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class SideText:
    """One side's answer as a per-text evaluator sees it (`Evaluator.score_sides`).

    `text` is None only for evaluators with `needs_text = False` (a side that answered without any text);
    `tool_calls` and `request` as in `TextPair`.
    """

    text: str | None
    finish_reason: str | None = None
    tool_calls: tuple[dict[str, Any], ...] | None = None
    refusal: str | None = None
    request: Mapping[str, Any] | None = None


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
    too few secondaries for a floor. `skip_unscored`: where no pair of the window has a value for it (its
    evaluator did not run — a scores file written before it existed — or no pair is one it judges: no tool
    calls, no JSON mode), the gate leaves the check out instead of reporting it without data, so such
    windows are judged as before.
    """

    name: str
    critical: bool = False
    required: bool = True
    weight: float = 1.0
    tolerance: float = 0.0
    absolute_threshold: float | None = None
    min_pairs: int | None = None
    skip_unscored: bool = False


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
    - `detail`: flags only: the key of a short string in the same result object that names what happened
      (without the values that differ from pair to pair, so that pairs can be counted by it); a failing
      rate check appends the most common one among the flagged pairs to its reason.
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
    detail: str | None = None


class Evaluator:
    """Base class. Subclasses set the class attributes and implement `score_pairs` (pairwise) or
    `score_texts` / `score_sides` (per text).

    - `pairwise`: the score compares two texts (semantic, length). Otherwise the evaluator scores one text
      at a time (loop, coherence) and the runner applies it to each side.
    - `needs_encoder`: the runner builds the shared encoder only when a selected evaluator needs it.
    - `needs_text`: the evaluator judges text (the default). The runner gives it only sides that have text:
      a side has none when its text is None, or is empty or whitespace while the side made tool calls or
      refused. A pairwise text evaluator abstains (its result is None) when either side has no text, and
      when both texts are empty: two empty texts are not a perfect match, and a tool-only pair never counts
      as agreement. Evaluators with `needs_text = False` (tool calls, refusals, JSON answers) see every
      side that answered.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    higher_is_better: ClassVar[bool]
    primary_metric: ClassVar[str]
    pairwise: ClassVar[bool] = True
    needs_encoder: ClassVar[bool] = False
    needs_text: ClassVar[bool] = True
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

    def score_sides(self, items: Sequence[SideText], context: ScoringContext) -> list[dict[str, Any]]:
        """Per-text evaluators: one result dict per side. The default scores the texts with `score_texts`;
        an evaluator that reads tool calls, refusals or the request overrides this instead."""
        return self.score_texts(
            [item.text if item.text is not None else "" for item in items],
            [item.finish_reason for item in items],
            context,
        )

    @classmethod
    def metadata(cls) -> dict[str, Any]:
        return {
            "name": cls.name,
            "version": cls.version,
            "higher_is_better": cls.higher_is_better,
            "primary_metric": cls.primary_metric,
            "pairwise": cls.pairwise,
        }
