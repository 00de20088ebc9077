"""Run evaluators over pairs, a bounded batch at a time. File mode, store mode and the DataFrame API all
come through here, so a pair gets the same scores whichever way it is scored.

The *result* of one evaluator for one pair is the unit the store keeps (one row per pair, evaluator and
version) and the file mode spreads over the pair:

- a pairwise evaluator (semantic, length) gives ``{"candidate": r}``, plus ``"noise": r`` when the pair has
  a secondary; ``r`` compares the candidate (or the secondary) with the baseline;
- a per-text evaluator (loop, coherence) gives ``{"baseline": r, "candidate": r}``, plus ``"secondary": r``
  when the pair has one.

``r`` is the evaluator's metric dict, or ``None`` when a side has no usable text (the upstream failed:
an error, a non-2xx status, or no text at all), so a failed candidate never crashes a run and the
operational fields stay for the gate to count. An empty answer from a healthy upstream is still scored.

In a scores file (`apply_result`) the pair gets ``pair[name] = r_candidate`` for pairwise evaluators with
``pair["noise"][name] = r_noise``, ``pair[name] = result`` for per-text ones, and
``pair["scored_by"][name] = version``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any

from evaluators.base import Evaluator, ScoringContext, TextPair
from evaluators.registry import load_evaluators
from shadow.core.pairs import Pair, PairFormatError
from shadow.core.records import iter_json_objects
from shadow.core.view import answered

DEFAULT_CHUNK_SIZE = 1024
"""Pairs read, scored and written at once: large enough for full encoder batches after length sorting,
small enough that memory does not grow with the input."""


class EvaluatorFailedError(RuntimeError):
    """An evaluator raised or returned the wrong number of results; names the evaluator and the batch."""


class EncoderLoadError(RuntimeError):
    """The encoder could not be built or loaded."""


class DeviceError(RuntimeError):
    """The requested device cannot be used (e.g. CUDA asked for but absent)."""


# --- texts of a pair ------------------------------------------------------------------------------------


def usable_text(pair: Pair, side: str) -> str | None:
    """The side's answer if the upstream delivered one: its text, when `view.answered` says it answered."""
    output = pair.side(side)
    if output is None or output.text is None or not answered(output.status, output.error):
        return None
    return output.text


def _finish_reason(pair: Pair, side: str) -> str | None:
    output = pair.side(side)
    return output.finish_reason if output is not None else None


def text_sides(pair: Pair) -> tuple[str, ...]:
    """Sides a per-text evaluator reports on: baseline and candidate always, secondary when present."""
    return ("baseline", "candidate", "secondary") if pair.secondary is not None else ("baseline", "candidate")


def _text_pair(pair: Pair, other: str) -> TextPair | None:
    reference, compared = usable_text(pair, "baseline"), usable_text(pair, other)
    if reference is None or compared is None:
        return None
    return TextPair(
        reference=reference,
        candidate=compared,
        candidate_finish_reason=_finish_reason(pair, other),
        reference_finish_reason=_finish_reason(pair, "baseline"),
        prompt=pair.prompt,
    )


# --- the runner -----------------------------------------------------------------------------------------


class ScoreRunner:
    """Evaluators plus the context they share (encoder, device, batch size) for one run."""

    def __init__(self, evaluators: Sequence[Evaluator], context: ScoringContext | None = None) -> None:
        self.evaluators = list(evaluators)
        self.context = context or ScoringContext()

    @classmethod
    def build(
        cls,
        spec: str | Sequence[str | Evaluator] | None = None,
        *,
        device: str = "auto",
        batch_size: int = 64,
        encoder: Any = None,
        encoder_name: str | None = None,
    ) -> ScoreRunner:
        """Load the evaluators in `spec` (None: all) and, only if one needs it, the device and the encoder
        (`encoder` if given, else `load_encoder(encoder_name)`; None is the default USE model).

        Without an encoder-based evaluator neither torch nor the encoder is imported, and `device` is not
        checked: nothing would run on it.
        """
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        evaluators = load_evaluators(spec)
        resolved = "cpu"
        if any(e.needs_encoder for e in evaluators):
            from evaluators.encoder import load_encoder, resolve_device

            try:
                resolved = str(resolve_device(device))
            except (ValueError, RuntimeError) as exc:
                raise DeviceError(f"cannot use device {device!r}: {exc}") from exc
            if encoder is None:
                try:
                    encoder = load_encoder(encoder_name, device=resolved)
                except Exception as exc:  # any loader failure becomes one sentence for the CLI
                    label = encoder_name or "the default encoder"
                    raise EncoderLoadError(f"cannot load {label} on {resolved}: {exc}") from exc
        context = ScoringContext(encoder=encoder, device=resolved, batch_size=batch_size)
        return cls(evaluators, context)

    @property
    def versions(self) -> dict[str, str]:
        return {e.name: str(e.version) for e in self.evaluators}

    def score_evaluator(self, evaluator: Evaluator, pairs: Sequence[Pair]) -> list[dict[str, Any]]:
        """One result object per pair (see the module docstring), in the order of `pairs`."""
        if evaluator.pairwise:
            return self._score_pairwise(evaluator, pairs)
        return self._score_per_text(evaluator, pairs)

    def score_batch(self, pairs: Sequence[Pair]) -> list[dict[str, dict[str, Any]]]:
        """For each pair, ``{evaluator name: result object}`` for every evaluator of the run."""
        out: list[dict[str, dict[str, Any]]] = [{} for _ in pairs]
        for evaluator in self.evaluators:
            for slot, result in zip(out, self.score_evaluator(evaluator, pairs), strict=True):
                slot[evaluator.name] = result
        return out

    def _score_pairwise(self, evaluator: Evaluator, pairs: Sequence[Pair]) -> list[dict[str, Any]]:
        # Candidate and noise comparisons go to the evaluator in one call, so encoder batches stay full.
        jobs: list[TextPair | None] = []
        for pair in pairs:
            jobs.append(_text_pair(pair, "candidate"))
            jobs.append(_text_pair(pair, "secondary") if pair.secondary is not None else None)
        scores = _score_unique(
            jobs, lambda items: evaluator.score_pairs(items, self.context), evaluator, pairs
        )
        results: list[dict[str, Any]] = []
        for index, pair in enumerate(pairs):
            result: dict[str, Any] = {"candidate": scores[2 * index]}
            if pair.secondary is not None:
                result["noise"] = scores[2 * index + 1]
            results.append(result)
        return results

    def _score_per_text(self, evaluator: Evaluator, pairs: Sequence[Pair]) -> list[dict[str, Any]]:
        jobs: list[tuple[str, str | None] | None] = []
        for pair in pairs:
            for side in text_sides(pair):
                text = usable_text(pair, side)
                jobs.append(None if text is None else (text, _finish_reason(pair, side)))

        def run(items: Sequence[tuple[str, str | None]]) -> list[dict[str, Any]]:
            return evaluator.score_texts([t for t, _ in items], [f for _, f in items], self.context)

        scores = iter(_score_unique(jobs, run, evaluator, pairs))
        return [{side: next(scores) for side in text_sides(pair)} for pair in pairs]


def _score_unique(
    jobs: Sequence[Any],
    run: Callable[[Sequence[Any]], list[dict[str, Any]]],
    evaluator: Evaluator,
    pairs: Sequence[Pair],
) -> list[dict[str, Any] | None]:
    """Score each distinct non-None job once (identical answers are common) and spread the results back."""
    position: dict[Hashable, int] = {}
    unique: list[Any] = []
    for job in jobs:
        if job is not None and job not in position:
            position[job] = len(unique)
            unique.append(job)
    if not unique:
        return [None] * len(jobs)
    where = f"evaluator {evaluator.name!r} (version {evaluator.version})"
    first = pairs[0].id if pairs else "?"
    try:
        scored = run(unique)
    except Exception as exc:
        raise EvaluatorFailedError(f"{where} failed on the batch starting at pair {first}: {exc}") from exc
    if len(scored) != len(unique):
        raise EvaluatorFailedError(f"{where} returned {len(scored)} results for {len(unique)} inputs")
    return [None if job is None else scored[position[job]] for job in jobs]


# --- spreading results over a pair's JSON ---------------------------------------------------------------


def apply_result(pair_json: dict[str, Any], evaluator: Evaluator | type[Evaluator], result: Any) -> None:
    """Write one evaluator's result object into a pair's JSON the way a scores file carries it."""
    apply_named_result(pair_json, evaluator.name, str(evaluator.version), bool(evaluator.pairwise), result)


def apply_named_result(
    pair_json: dict[str, Any], name: str, version: str, pairwise: bool, result: dict[str, Any]
) -> None:
    if pairwise:
        pair_json[name] = result.get("candidate")
        if "noise" in result:
            noise = pair_json.get("noise")
            if not isinstance(noise, dict):
                noise = pair_json["noise"] = {}
            noise[name] = result["noise"]
    else:
        pair_json[name] = result
    scored_by = pair_json.get("scored_by")
    if not isinstance(scored_by, dict):
        scored_by = pair_json["scored_by"] = {}
    scored_by[name] = version


# --- streaming ------------------------------------------------------------------------------------------


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def parse_jsonl(
    lines: Iterable[str | bytes], *, first_line: int = 1
) -> Iterator[tuple[dict[str, Any], Pair]]:
    """Each non-blank line as (its JSON object, the Pair read from it); errors name the line number."""
    for number, obj in iter_json_objects(lines, first_line=first_line):
        try:
            pair = Pair.from_json(obj)
        except PairFormatError as exc:
            raise PairFormatError(f"line {number}: {exc}") from exc
        yield obj, pair


def score_records(
    records: Iterable[tuple[dict[str, Any], Pair]],
    runner: ScoreRunner,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Iterator[dict[str, Any]]:
    """Score (pair JSON, Pair) records `chunk_size` at a time and yield each pair JSON with its scores.

    Only one chunk is held at a time: the next is read after the consumer has taken the previous one.
    """
    for chunk in batched(records, chunk_size):
        results = runner.score_batch([pair for _, pair in chunk])
        for (obj, _), by_name in zip(chunk, results, strict=True):
            for evaluator in runner.evaluators:
                apply_result(obj, evaluator, by_name[evaluator.name])
            yield obj


def score_lines(
    lines: Iterable[str | bytes], runner: ScoreRunner, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Iterator[str]:
    """JSONL in, JSONL out (lines without newlines), streamed chunk by chunk."""
    for obj in score_records(parse_jsonl(lines), runner, chunk_size=chunk_size):
        yield json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DeviceError",
    "EncoderLoadError",
    "EvaluatorFailedError",
    "ScoreRunner",
    "apply_result",
    "apply_named_result",
    "batched",
    "parse_jsonl",
    "score_lines",
    "score_records",
    "text_sides",
    "usable_text",
]
