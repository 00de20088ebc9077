"""`shadow score --engine ray`: the same scoring as the local engine, spread over a Ray cluster with Ray Data.

The pipeline streams bounded batches of pairs (``chunk_size`` pairs each) through three stages:

    read      JSONL / Parquet shards (`ray.data.read_text` / `read_parquet`), or the pair store in id-ordered
              pages, one read task per page
    encode    a pool of actors that each load the encoder once and run the encoder evaluators (semantic,
              coherence); one GPU per actor where the cluster has GPUs, else one CPU
    finish    plain tasks that run the CPU-only evaluators (length, loop) and then either assemble each
              pair's output line (file mode) or insert its score rows (store mode)

Scoring itself is not re-implemented: every stage calls `ScoreRunner.score_evaluator` on `Pair` objects, and
the output line is built with `apply_named_result` in registry order, so a line is byte for byte what the
local engine writes (encoder metrics agree to float precision: batches are cut differently). Store rows go
through the same `insert_ignoring_duplicates`, so a re-run, or two scorers at once, store nothing twice.

Pairs travel between stages as JSON strings, not as Arrow structs: Arrow would unify the schema across
shards (adding null fields, widening ints to floats, reordering keys) and the output would no longer equal
the input plus scores. That is also why JSONL is read with `read_text` rather than `read_json`.

Ray is an optional extra (``pip install 'shadow-eval[ray]'``); this module is the only one that imports it,
and `shadow score` imports this module only for ``--engine ray``. On a cluster (``--address auto`` or
``ray://head:10001``) every node needs shadow-eval installed, and a SQLite store must be on a path that
every node sees; use PostgreSQL there.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import resource
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.data

from evaluators.registry import load_evaluator_class
from evaluators.runner import DEFAULT_CHUNK_SIZE, ScoreRunner, apply_named_result
from shadow.core.pairs import Pair, PairFormatError


@dataclass(frozen=True)
class RayOptions:
    """How to run: which evaluators (registry names or ``module:Class`` paths), on what, how wide."""

    names: tuple[str, ...]
    device: str = "auto"
    batch_size: int = 64
    """Texts per encoder batch, as for the local engine."""
    chunk_size: int = DEFAULT_CHUNK_SIZE
    """Pairs per Ray batch: what one worker holds at a time, which bounds its memory."""
    encoder_name: str | None = None
    workers: int = 1
    """Encoder actors (and concurrent CPU tasks) to run."""


@dataclass
class RayRunStats:
    """What a run did: pairs scored and the peak resident memory of each worker process, in MiB."""

    pairs: int = 0
    peak_rss_mib: dict[str, float] = field(default_factory=dict)

    def _absorb(self, batch: dict[str, Any]) -> None:
        for tag in set(batch.get("worker_rss", ())):
            for item in json.loads(tag):
                key = f"{item[0]}:{item[1]}"
                self.peak_rss_mib[key] = max(self.peak_rss_mib.get(key, 0.0), float(item[2]))


@dataclass(frozen=True)
class _Spec:
    """An evaluator as the driver knows it, without instantiating it."""

    name: str
    version: str
    pairwise: bool
    needs_encoder: bool


def _specs(names: Sequence[str]) -> list[_Spec]:
    specs = []
    for name in names:
        cls = load_evaluator_class(name)
        specs.append(_Spec(cls.name, str(cls.version), bool(cls.pairwise), bool(cls.needs_encoder)))
    return specs


def versions_of(names: Sequence[str]) -> dict[str, str]:
    """``{evaluator name: version}`` of a run, read from the classes (no encoder is loaded)."""
    return {spec.name: spec.version for spec in _specs(names)}


# --- Ray itself ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def ray_session(address: str | None = None, **init_kwargs: Any) -> Iterator[None]:
    """Connect to the cluster at `address` (``auto``, ``ray://host:port``) or start a local Ray (None), and
    shut it down afterwards. A Ray the caller already started is used as it is and left running."""
    if ray.is_initialized():
        yield
        return
    init_kwargs.setdefault("include_dashboard", False)
    init_kwargs.setdefault("logging_level", "WARNING")
    ray.init(address=address, **init_kwargs)
    try:
        yield
    finally:
        ray.shutdown()


def _data_context(preserve_order: bool) -> None:
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = preserve_order
    context.enable_progress_bars = sys.stderr.isatty()


def _use_gpus(device: str) -> bool:
    """Encoder actors take one GPU each when the cluster has GPUs and `device` allows it."""
    gpus = float(ray.cluster_resources().get("GPU", 0))
    wanted = device.strip().lower()
    if wanted.startswith("cuda") and gpus < 1:
        raise ValueError(f"--device {device} was requested but the Ray cluster has no GPU")
    return gpus >= 1 and wanted != "cpu"


# --- the stages (they run in Ray workers) ----------------------------------------------------------------


@functools.cache
def _runner(names: tuple[str, ...], device: str, batch_size: int, encoder_name: str | None) -> ScoreRunner:
    """One runner per worker process and evaluator set: Ray reuses worker processes between tasks."""
    return ScoreRunner.build(list(names), device=device, batch_size=batch_size, encoder_name=encoder_name)


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _column(values: Sequence[Any]) -> np.ndarray:
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


def _score_batch(batch: dict[str, Any], runner: ScoreRunner, stage: str) -> dict[str, Any]:
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
    out["results"] = _column([json.dumps(r, ensure_ascii=False) for r in results])
    worker = [[stage, os.getpid(), round(_peak_rss_mib(), 1)]]
    previous = [json.loads(w) for w in batch["worker_rss"]] if "worker_rss" in batch else [[]] * len(pairs)
    out["worker_rss"] = _column([json.dumps(p + worker) for p in previous])
    return out


class _ScoreStage:
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
        self.runner = _runner(names, device, batch_size, encoder_name)
        self.finish = finish

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        scored = _score_batch(batch, self.runner, "actor")
        return self.finish(scored) if self.finish is not None else scored


def _cpu_stage(
    batch: dict[str, Any], names: tuple[str, ...], finish: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    return finish(_score_batch(batch, _runner(names, "cpu", 64, None), "task"))


def _assemble_lines(batch: dict[str, Any], specs: Sequence[_Spec]) -> dict[str, Any]:
    """File mode: each pair's input object with the evaluators' results spread in, as one JSONL line."""
    lines = []
    for line, results in zip(batch["pair"], batch["results"], strict=True):
        obj = json.loads(line)
        by_name = json.loads(results)
        for spec in specs:
            apply_named_result(obj, spec.name, spec.version, spec.pairwise, by_name[spec.name])
        lines.append(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
    return {"line": _column(lines), "worker_rss": batch["worker_rss"]}


@functools.cache
def _store_engine(url: str) -> Any:
    from shadow.store.database import make_engine

    return make_engine(url)


def _write_scores(batch: dict[str, Any], url: str, specs: Sequence[_Spec]) -> dict[str, Any]:
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
        with _store_engine(url).begin() as connection:
            insert_ignoring_duplicates(connection, scores_table, rows, ["pair_id", "evaluator", "version"])
    workers = batch["worker_rss"][:1] if len(batch["pair_id"]) else []
    return {"pairs": _column([len(batch["pair_id"])] * len(workers)), "worker_rss": _column(list(workers))}


# --- reading ---------------------------------------------------------------------------------------------


def _parse_lines(batch: dict[str, Any]) -> dict[str, Any]:
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
    return {"pair": _column(kept), "results": _column(["{}"] * len(kept))}


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        text = value.isoformat()
        return text.replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _parquet_rows_to_lines(table: Any) -> dict[str, Any]:
    """Parquet rows (one column per pair field) -> JSON lines; null fields are left out."""
    lines = [
        json.dumps({k: _jsonable(v) for k, v in row.items() if v is not None}, ensure_ascii=False)
        for row in table.to_pylist()
    ]
    return {"text": _column(lines), "path": _column(["parquet shard"] * len(lines))}


def _is_parquet(path: str) -> bool:
    p = Path(path)
    if p.is_dir():
        return any(p.glob("*.parquet"))
    return p.suffix == ".parquet"


def read_pairs(paths: Sequence[str]) -> ray.data.Dataset:
    """JSONL or Parquet shards (files or directories of them) as a dataset of pair lines."""
    if all(_is_parquet(p) for p in paths):
        rows = ray.data.read_parquet(list(paths), num_cpus=0)
        lines = rows.map_batches(_parquet_rows_to_lines, batch_format="pyarrow")
    else:
        # Reading takes no core of its own: on a small machine the scoring actors hold them all.
        lines = ray.data.read_text(list(paths), include_paths=True, num_cpus=0)
    return lines.map_batches(_parse_lines, batch_format="numpy")


def _store_pages(url: str, versions: dict[str, str], experiment: str | None, page: int) -> list[dict]:
    """Id ranges of at most `page` pending pairs each, from one indexed scan of the pending ids."""
    from sqlalchemy import func, select

    from evaluators.store_mode import _pending_filter
    from shadow.store.models import pairs_table

    pending = _pending_filter(versions, experiment)
    numbered = (
        select(pairs_table.c.id, func.row_number().over(order_by=pairs_table.c.id).label("n"))
        .where(pending)
        .subquery()
    )
    with _store_engine(url).connect() as connection:
        starts = [
            row[0]
            for row in connection.execute(
                select(numbered.c.id).where((numbered.c.n - 1) % page == 0).order_by(numbered.c.id)
            )
        ]
        last = connection.execute(select(func.max(pairs_table.c.id)).where(pending)).scalar()
    if not starts:
        return []
    ends = [*starts[1:], None]
    # The last range ends at the newest pending id now: pairs arriving during the run wait for the next one.
    return [{"start": s, "before": e, "last": last} for s, e in zip(starts, ends, strict=True)]


def _read_page(
    batch: dict[str, Any], url: str, versions: dict[str, str], experiment: str | None
) -> dict[str, Any]:
    from sqlalchemy import select

    from evaluators.store_mode import _pending_filter, _scored_names
    from shadow.store.models import pairs_table, row_to_pair

    ids, pairs, needed = [], [], []
    for start, before, last in zip(batch["start"], batch["before"], batch["last"], strict=True):
        query = select(pairs_table).where(_pending_filter(versions, experiment), pairs_table.c.id >= start)
        if before is not None:
            query = query.where(pairs_table.c.id < before)
        else:
            query = query.where(pairs_table.c.id <= last)
        with _store_engine(url).connect() as connection:
            rows = connection.execute(query.order_by(pairs_table.c.id)).mappings().all()
            done = _scored_names(connection, [row["id"] for row in rows], versions)
        for row in rows:
            ids.append(row["id"])
            pairs.append(json.dumps(row_to_pair(row).to_json(), ensure_ascii=False))
            needed.append(json.dumps(sorted(set(versions) - done.get(row["id"], set()))))
    return {
        "pair_id": _column(ids),
        "pair": _column(pairs),
        "needed": _column(needed),
        "results": _column(["{}"] * len(ids)),
    }


# --- the pipeline ----------------------------------------------------------------------------------------


def _score(
    dataset: ray.data.Dataset,
    options: RayOptions,
    specs: Sequence[_Spec],
    finish: Callable[[dict[str, Any]], dict[str, Any]],
) -> ray.data.Dataset:
    """With GPUs: encoder actors (one GPU each), then CPU tasks for the other evaluators and `finish`.
    Without: one pool of CPU actors runs every evaluator and `finish`; a separate CPU stage would wait for
    cores the actors hold for the whole run. Either way `finish` runs in the last scoring stage."""
    on_gpus = any(spec.needs_encoder for spec in specs) and _use_gpus(options.device)
    encoder_names = tuple(
        n for n, s in zip(options.names, specs, strict=True) if s.needs_encoder or not on_gpus
    )
    cpu_names = tuple(n for n in options.names if n not in encoder_names)
    needs_actors = any(spec.needs_encoder for spec in specs)
    if needs_actors:
        dataset = dataset.map_batches(
            _ScoreStage,
            fn_constructor_args=(
                encoder_names,
                "cuda" if on_gpus else "cpu",
                options.batch_size,
                options.encoder_name,
                None if cpu_names else finish,
            ),
            batch_size=options.chunk_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=options.workers),
            num_gpus=1 if on_gpus else 0,
            num_cpus=1,
        )
    if cpu_names or not needs_actors:
        dataset = dataset.map_batches(
            _cpu_stage,
            fn_kwargs={"names": cpu_names or encoder_names, "finish": finish},
            batch_size=options.chunk_size,
            batch_format="numpy",
            compute=ray.data.TaskPoolStrategy(size=options.workers),
            num_cpus=1,
        )
    return dataset


def score_files(paths: Sequence[str], options: RayOptions, stats: RayRunStats | None = None) -> Iterator[str]:
    """Score JSONL / Parquet shards; yield the output lines (no newline) in input order, streamed."""
    stats = stats if stats is not None else RayRunStats()
    specs = _specs(options.names)
    _data_context(preserve_order=True)
    dataset = _score(read_pairs(paths), options, specs, functools.partial(_assemble_lines, specs=specs))
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        stats._absorb(batch)
        stats.pairs += len(batch["line"])
        yield from batch["line"]


def score_store(
    url: str, options: RayOptions, *, experiment: str | None = None, stats: RayRunStats | None = None
) -> int:
    """Score every pair of the store (of `experiment`) that the evaluator versions have not scored; the
    workers store the rows. Returns the number of pairs that got at least one new score."""
    stats = stats if stats is not None else RayRunStats()
    specs = _specs(options.names)
    versions = {spec.name: spec.version for spec in specs}
    pages = _store_pages(url, versions, experiment, options.chunk_size)
    if not pages:
        return 0
    _data_context(preserve_order=False)
    dataset = ray.data.from_items(pages, override_num_blocks=len(pages)).map_batches(
        _read_page,
        fn_kwargs={"url": url, "versions": versions, "experiment": experiment},
        batch_size=1,
        batch_format="numpy",
    )
    dataset = _score(dataset, options, specs, functools.partial(_write_scores, url=url, specs=specs))
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        stats._absorb(batch)
        stats.pairs += int(np.sum(batch["pairs"]))
    return stats.pairs


__all__ = [
    "RayOptions",
    "RayRunStats",
    "ray_session",
    "read_pairs",
    "score_files",
    "score_store",
    "versions_of",
]
