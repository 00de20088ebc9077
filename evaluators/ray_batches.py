"""What the Ray engine runs on each batch, inside Ray's worker processes: parse input lines, score, then
assemble output lines (file mode) or write score rows (store mode); and read one page of the pair store.

`evaluators.ray_engine` is the driver (the session, the pipeline, the entry points); these are the pieces
its stages call. They are plain functions over batches (dicts of numpy object columns) and do not import
ray, so the worker-side logic reads, and can be tried, on its own. A batch carries each pair as its JSON
line (``pair``), the results so far (``results``, JSON) and the peak memory of the workers that handled it
(``worker_rss``, JSON).
"""

from __future__ import annotations

import functools
import json
import os
import resource
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from evaluators.registry import load_evaluator_class
from evaluators.runner import ScoreRunner, apply_named_result
from shadow.core.pairs import Pair, PairFormatError


@dataclass(frozen=True)
class Spec:
    """An evaluator as the driver knows it, without instantiating it."""

    name: str
    version: str
    pairwise: bool
    needs_encoder: bool


def specs_of(names: Sequence[str]) -> list[Spec]:
    """The specs of the evaluators named (registry names or ``module:Class`` paths), from their classes."""
    specs = []
    for name in names:
        cls = load_evaluator_class(name)
        specs.append(Spec(cls.name, str(cls.version), bool(cls.pairwise), bool(cls.needs_encoder)))
    return specs


# --- scoring --------------------------------------------------------------------------------------------


@functools.cache
def worker_runner(
    names: tuple[str, ...], device: str, batch_size: int, encoder_name: str | None
) -> ScoreRunner:
    """One runner per worker process and evaluator set: Ray reuses worker processes between tasks."""
    return ScoreRunner.build(list(names), device=device, batch_size=batch_size, encoder_name=encoder_name)


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def column(values: Sequence[Any]) -> np.ndarray:
    """A batch column of Python objects (strings stay strings; numpy would make them fixed-width)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def score_batch(batch: dict[str, Any], runner: ScoreRunner, stage: str) -> dict[str, Any]:
    """Run `runner`'s evaluators over a batch; results accumulate in its ``results`` column (JSON)."""
    pairs = [Pair.from_json(json.loads(line)) for line in batch["pair"]]
    needed = [set(json.loads(n)) for n in batch["needed"]] if "needed" in batch else None
    results = [json.loads(r) for r in batch["results"]]
    for evaluator in runner.evaluators:
        rows = [i for i in range(len(pairs)) if needed is None or evaluator.name in needed[i]]
        if not rows:
            continue
        scored = runner.score_evaluator(evaluator, [pairs[i] for i in rows])
        for i, result in zip(rows, scored, strict=True):
            results[i][evaluator.name] = result
    out = dict(batch)
    out["results"] = column([json.dumps(r, ensure_ascii=False) for r in results])
    worker = [[stage, os.getpid(), round(peak_rss_mib(), 1)]]
    previous = [json.loads(w) for w in batch["worker_rss"]] if "worker_rss" in batch else [[]] * len(pairs)
    out["worker_rss"] = column([json.dumps(p + worker) for p in previous])
    return out


class ScoreStage:
    """A Ray actor: builds its runner (the encoder, when an evaluator needs it) once, then scores each batch
    it is given and, as the last stage, hands it to `finish` (assemble lines, or store rows)."""

    def __init__(
        self,
        names: tuple[str, ...],
        device: str,
        batch_size: int,
        encoder_name: str | None,
        finish: Callable[[dict[str, Any]], dict[str, Any]] | None,
    ):
        self.runner = worker_runner(names, device, batch_size, encoder_name)
        self.finish = finish

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        scored = score_batch(batch, self.runner, "actor")
        return self.finish(scored) if self.finish is not None else scored


def cpu_stage(
    batch: dict[str, Any], names: tuple[str, ...], finish: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    """A Ray task: score a batch with the CPU-only evaluators `names`, then hand it to `finish`."""
    return finish(score_batch(batch, worker_runner(names, "cpu", 64, None), "task"))


def assemble_lines(batch: dict[str, Any], specs: Sequence[Spec]) -> dict[str, Any]:
    """File mode: each pair's input object with the evaluators' results spread in, as one JSONL line."""
    lines = []
    for line, results in zip(batch["pair"], batch["results"], strict=True):
        obj = json.loads(line)
        by_name = json.loads(results)
        for spec in specs:
            apply_named_result(obj, spec.name, spec.version, spec.pairwise, by_name[spec.name])
        lines.append(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
    return {"line": column(lines), "worker_rss": batch["worker_rss"]}


@functools.cache
def store_engine(url: str) -> Any:
    """One engine (connection pool) per worker process and store."""
    from shadow.store.database import make_engine

    return make_engine(url)


def write_scores(batch: dict[str, Any], url: str, specs: Sequence[Spec]) -> dict[str, Any]:
    """Store mode: insert the batch's score rows in one transaction, skipping rows already stored."""
    from shadow.store.database import insert_ignoring_duplicates
    from shadow.store.models import scores_table

    now = datetime.now(UTC)
    rows = []
    for pair_id, results in zip(batch["pair_id"], batch["results"], strict=True):
        by_name = json.loads(results)
        rows.extend(
            {
                "pair_id": pair_id,
                "evaluator": spec.name,
                "version": spec.version,
                "result": by_name[spec.name],
                "scored_at": now,
            }
            for spec in specs
            if spec.name in by_name
        )
    if rows:
        with store_engine(url).begin() as connection:
            insert_ignoring_duplicates(connection, scores_table, rows, ["pair_id", "evaluator", "version"])
    workers = batch["worker_rss"][:1] if len(batch["pair_id"]) else []
    return {"pairs": column([len(batch["pair_id"])] * len(workers)), "worker_rss": column(list(workers))}


# --- reading ---------------------------------------------------------------------------------------------


def parse_lines(batch: dict[str, Any]) -> dict[str, Any]:
    """JSONL lines -> the pair (checked) and the line itself; blank lines are skipped as locally."""
    kept = []
    for line, path in zip(batch["text"], batch["path"], strict=True):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PairFormatError(f"a line of {path} is not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise PairFormatError(f"a line of {path} is not a JSON object")
        try:
            Pair.from_json(obj)
        except PairFormatError as exc:
            raise PairFormatError(f"pair {obj.get('id', '?')} in {path}: {exc}") from exc
        kept.append(line)
    # The line itself travels on: each stage reads its Pair from it, exactly as the local engine does.
    return {"pair": column(kept), "results": column(["{}"] * len(kept))}


def jsonable(value: Any) -> Any:
    """A Parquet value as the pair's JSON has it: datetimes in ISO 8601 (UTC as ``Z``), nested values too."""
    if isinstance(value, datetime):
        text = value.isoformat()
        return text.replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def parquet_rows_to_lines(table: Any) -> dict[str, Any]:
    """Parquet rows (one column per pair field) -> JSON lines; null fields are left out."""
    lines = [
        json.dumps({k: jsonable(v) for k, v in row.items() if v is not None}, ensure_ascii=False)
        for row in table.to_pylist()
    ]
    return {"text": column(lines), "path": column(["parquet shard"] * len(lines))}


__all__ = [
    "Spec",
    "ScoreStage",
    "assemble_lines",
    "column",
    "cpu_stage",
    "jsonable",
    "parquet_rows_to_lines",
    "parse_lines",
    "peak_rss_mib",
    "score_batch",
    "specs_of",
    "store_engine",
    "worker_runner",
    "write_scores",
]
