"""Run evaluators over pairs, a bounded batch at a time. File mode, store mode and the DataFrame API all
come through here, so a pair gets the same scores whichever way it is scored.

The *result* of one evaluator for one pair is the unit the store keeps (one row per pair, evaluator and
version) and the file mode spreads over the pair:

- a pairwise evaluator (semantic, length) gives ``{"candidate": r}``, plus ``"noise": r`` when the pair has
  a secondary; ``r`` compares the candidate (or the secondary) with the baseline;
- a per-text evaluator (loop, coherence) gives ``{"baseline": r, "candidate": r}``, plus ``"secondary": r``
  when the pair has one.

``r`` is the evaluator's metric dict, or ``None`` when the evaluator has nothing to judge, so a failed
candidate never crashes a run and the operational fields stay for the gate to count:

- a side that did not answer (an error, a non-2xx status: `shadow.core.view.answered`) is judged by no
  evaluator;
- an evaluator that needs text (`Evaluator.needs_text`: semantic, length, loop, coherence) also skips a side
  without text: its text is None, or it is empty or whitespace while the side made tool calls or refused.
  A pairwise one abstains when either side has no text, and when both texts are empty (two empty answers
  are not a perfect match, and a tool-only pair never counts as agreement). An empty answer from a healthy
  upstream against a non-empty one is still scored;
- an evaluator with ``needs_text = False`` (tools, refusal, json) sees every answered side, with its tool
  calls, refusal and the request (`TextPair`, `SideText`), and may itself return None (not applicable).

In a scores file (`apply_result`) the pair gets ``pair[name] = r_candidate`` for pairwise evaluators with
``pair["noise"][name] = r_noise``, ``pair[name] = result`` for per-text ones, and
``pair["scored_by"][name] = version``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from evaluators.base import Evaluator, ScoringContext, SideText, TextPair
from evaluators.registry import load_evaluators
from shadow.core.pairs import Pair, PairFormatError, SideOutput
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


# --- what an evaluator sees of a pair ------------------------------------------------------------------


def answered_side(pair: Pair, side: str) -> SideOutput | None:
    """The side's output when it exists and its upstream answered (`view.answered`), else None."""
    output = pair.side(side)
    if output is None or not answered(output.status, output.error):
        return None
    return output


def side_tool_calls(output: SideOutput) -> tuple[dict[str, Any], ...] | None:
    """The side's tool calls as a tuple (None when it made none)."""
    calls = getattr(output, "tool_calls", None)  # SideOutput.tool_calls: files and stores may predate it
    if not calls:
        return None
    return tuple(call for call in calls if isinstance(call, Mapping))  # type: ignore[misc]


def side_refusal(output: SideOutput) -> str | None:
    refusal = getattr(output, "refusal", None)
    return refusal if isinstance(refusal, str) and refusal else None


def has_text(output: SideOutput) -> bool:
    """Whether the side answered in text: its text is not None, and not empty or whitespace beside a tool
    call or a refusal (an agent turn that only calls a tool carries an empty content)."""
    text = output.text
    if text is None:
        return False
    if text.strip():
        return True
    return side_tool_calls(output) is None and side_refusal(output) is None


def usable_text(pair: Pair, side: str) -> str | None:
    """The side's answer as text evaluators see it: its text, when the side answered and has text."""
    output = answered_side(pair, side)
    if output is None or not has_text(output):
        return None
    return output.text


def text_sides(pair: Pair) -> tuple[str, ...]:
    """Sides a per-text evaluator reports on: baseline and candidate always, secondary when present."""
    return ("baseline", "candidate", "secondary") if pair.secondary is not None else ("baseline", "candidate")


def side_input(pair: Pair, side: str, *, needs_text: bool = True) -> SideText | None:
    """What a per-text evaluator sees of one side, or None when it has nothing to judge there."""
    output = answered_side(pair, side)
    if output is None or (needs_text and not has_text(output)):
        return None
    return SideText(
        text=output.text,
        finish_reason=output.finish_reason,
        tool_calls=side_tool_calls(output),
        refusal=side_refusal(output),
        request=pair.request,
    )


def pair_input(pair: Pair, other: str, *, needs_text: bool = True) -> TextPair | None:
    """What a pairwise evaluator sees of the baseline against `other` (the candidate, or the secondary for
    the noise floor), or None when it abstains (see the module docstring)."""
    reference, compared = answered_side(pair, "baseline"), answered_side(pair, other)
    if reference is None or compared is None:
        return None
    if needs_text:
        if not (has_text(reference) and has_text(compared)):
            return None
        if not (reference.text or "").strip() and not (compared.text or "").strip():
            return None  # two empty answers are not a perfect match
    return TextPair(
        reference=reference.text,
        candidate=compared.text,
        candidate_finish_reason=compared.finish_reason,
        reference_finish_reason=reference.finish_reason,
        prompt=pair.prompt,
        reference_tool_calls=side_tool_calls(reference),
        candidate_tool_calls=side_tool_calls(compared),
        reference_refusal=side_refusal(reference),
        candidate_refusal=side_refusal(compared),
        request=pair.request,
    )


def _calls_key(calls: tuple[dict[str, Any], ...] | None) -> Hashable:
    if calls is None:
        return None
    return tuple((c.get("name"), c.get("arguments"), c.get("id"), c.get("type")) for c in calls)


def _pair_key(job: TextPair) -> tuple[Hashable, Any]:
    base = (
        job.reference,
        job.candidate,
        job.candidate_finish_reason,
        job.reference_finish_reason,
        job.prompt,
        _calls_key(job.reference_tool_calls),
        _calls_key(job.candidate_tool_calls),
        job.reference_refusal,
        job.candidate_refusal,
    )
    return base, (job.request, job.reference_tool_calls, job.candidate_tool_calls)


def _side_key(job: SideText) -> tuple[Hashable, Any]:
    return (job.text, job.finish_reason, _calls_key(job.tool_calls), job.refusal), (
        job.request,
        job.tool_calls,
    )


def _text_key(job: SideText) -> tuple[Hashable, Any]:
    """For evaluators that score only texts (the default `score_sides`): the text and finish reason."""
    return (job.text, job.finish_reason), None


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
        encoder_backend: str = "auto",
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
                    encoder = load_encoder(encoder_name, device=resolved, backend=encoder_backend)
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
        needs_text = bool(evaluator.needs_text)
        jobs: list[TextPair | None] = []
        for pair in pairs:
            jobs.append(pair_input(pair, "candidate", needs_text=needs_text))
            jobs.append(
                pair_input(pair, "secondary", needs_text=needs_text) if pair.secondary is not None else None
            )
        scores = _score_unique(
            jobs, lambda items: evaluator.score_pairs(items, self.context), evaluator, pairs, _pair_key
        )
        results: list[dict[str, Any]] = []
        for index, pair in enumerate(pairs):
            result: dict[str, Any] = {"candidate": scores[2 * index]}
            if pair.secondary is not None:
                result["noise"] = scores[2 * index + 1]
            results.append(result)
        return results

    def _score_per_text(self, evaluator: Evaluator, pairs: Sequence[Pair]) -> list[dict[str, Any]]:
        needs_text = bool(evaluator.needs_text)
        jobs = [side_input(pair, side, needs_text=needs_text) for pair in pairs for side in text_sides(pair)]
        # An evaluator that keeps the default `score_sides` sees only texts and finish reasons: identical
        # answers to different requests are scored once.
        texts_only = type(evaluator).score_sides is Evaluator.score_sides
        scores = iter(
            _score_unique(
                jobs,
                lambda items: evaluator.score_sides(items, self.context),
                evaluator,
                pairs,
                _text_key if texts_only else _side_key,
            )
        )
        return [{side: next(scores) for side in text_sides(pair)} for pair in pairs]


def _score_unique(
    jobs: Sequence[Any],
    run: Callable[[Sequence[Any]], list[dict[str, Any]]],
    evaluator: Evaluator,
    pairs: Sequence[Pair],
    key: Callable[[Any], tuple[Hashable, Any]],
) -> list[dict[str, Any] | None]:
    """Score each distinct non-None job once (identical answers are common) and spread the results back.

    `key` gives a job's hashable part and the rest (the request, tool-call dicts), which is compared with
    ``==`` only between jobs whose hashable parts agree, so long requests are never serialised."""
    position: dict[Hashable, list[tuple[Any, int]]] = {}
    where_of: list[int | None] = []
    unique: list[Any] = []
    for job in jobs:
        if job is None:
            where_of.append(None)
            continue
        base, rest = key(job)
        seen = position.setdefault(base, [])
        for other, at in seen:
            if other == rest:
                where_of.append(at)
                break
        else:
            seen.append((rest, len(unique)))
            where_of.append(len(unique))
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
    return [None if at is None else scored[at] for at in where_of]


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
    "answered_side",
    "apply_result",
    "apply_named_result",
    "batched",
    "has_text",
    "pair_input",
    "parse_jsonl",
    "score_lines",
    "score_records",
    "side_input",
    "side_refusal",
    "side_tool_calls",
    "text_sides",
    "usable_text",
]
