"""`shadow score --engine ray`: the same scoring as the local engine, spread over a Ray cluster with Ray Data.

The pipeline streams bounded batches of pairs (``chunk_size`` pairs each) through three stages:

    read      JSONL / Parquet shards (`ray.data.read_text` / `read_parquet`), or the pair store in id-ordered
              pages, one read task per page
    encode    a pool of actors that each load the encoder once and run the encoder evaluators (semantic,
              coherence); one GPU per actor where the cluster has GPUs, else one CPU
    finish    plain tasks that run the CPU-only evaluators (length, loop, tools, refusal, json) and then
              either assemble each pair's output line (file mode) or insert its score rows (store mode)

This module is the driver: the session, the pipeline and its entry points. What the stages run on each
batch, in the workers, is in `evaluators.ray_batches`, apart from the store mode's claiming read and
releasing write (`claim_page`, `write_and_release`), which are here.

Scoring itself is not re-implemented: every stage calls `ScoreRunner.score_evaluator` on `Pair` objects (so
what each evaluator sees of a pair, its texts, tool calls, refusals and request, is built by the same
`evaluators.runner.pair_input` / `side_input` as locally), and the output line is built with
`apply_named_result` in registry order, so a line is byte for byte what the local engine writes (encoder
metrics agree to float precision: batches are cut differently). Store rows go through the same
`insert_ignoring_duplicates`, so a re-run stores nothing twice, and a store-mode run claims its pairs like
the local engine (`shadow.store.claims`), so it and other scorers never compute the same score.

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
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.data

from evaluators.ray_batches import (
    ScoreStage,
    Spec,
    assemble_lines,
    column,
    cpu_stage,
    parquet_rows_to_lines,
    parse_lines,
    specs_of,
    store_engine,
    write_scores,
)
from evaluators.runner import DEFAULT_CHUNK_SIZE


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


def versions_of(names: Sequence[str]) -> dict[str, str]:
    """``{evaluator name: version}`` of a run, read from the classes (no encoder is loaded)."""
    return {spec.name: spec.version for spec in specs_of(names)}


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


# --- reading ---------------------------------------------------------------------------------------------


def _is_parquet(path: str) -> bool:
    p = Path(path)
    if p.is_dir():
        return any(p.glob("*.parquet"))
    return p.suffix == ".parquet"


def read_pairs(paths: Sequence[str]) -> ray.data.Dataset:
    """JSONL or Parquet shards (files or directories of them) as a dataset of pair lines."""
    if all(_is_parquet(p) for p in paths):
        rows = ray.data.read_parquet(list(paths), num_cpus=0)
        lines = rows.map_batches(parquet_rows_to_lines, batch_format="pyarrow")
    else:
        # Reading takes no core of its own: on a small machine the scoring actors hold them all.
        lines = ray.data.read_text(list(paths), include_paths=True, num_cpus=0)
    return lines.map_batches(parse_lines, batch_format="numpy")


def _store_pages(url: str, versions: dict[str, str], experiment: str | None, page: int) -> list[dict]:
    """Id ranges of at most `page` pending pairs each, from one indexed scan of the pending ids."""
    from sqlalchemy import func, select

    from evaluators.store_queries import pending_filter
    from shadow.store.models import pairs_table

    pending = pending_filter(versions, experiment)
    numbered = (
        select(pairs_table.c.id, func.row_number().over(order_by=pairs_table.c.id).label("n"))
        .where(pending)
        .subquery()
    )
    with store_engine(url).connect() as connection:
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


# --- the pipeline ----------------------------------------------------------------------------------------


def _score(
    dataset: ray.data.Dataset,
    options: RayOptions,
    specs: Sequence[Spec],
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
            ScoreStage,
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
            cpu_stage,
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
    specs = specs_of(options.names)
    _data_context(preserve_order=True)
    dataset = _score(read_pairs(paths), options, specs, functools.partial(assemble_lines, specs=specs))
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        stats._absorb(batch)
        stats.pairs += len(batch["line"])
        yield from batch["line"]


def score_store(
    url: str,
    options: RayOptions,
    *,
    experiment: str | None = None,
    stats: RayRunStats | None = None,
    claim_ttl_s: float | None = None,
) -> int:
    """Score every pair of the store (of `experiment`) that the evaluator versions have not scored; the
    workers store the rows. Returns the number of pairs that got at least one new score.

    The run claims its pairs like any other scorer (`shadow.store.claims`), under one scorer id, this
    driver's: each read task claims its page before reading it, the driver renews the run's claims while it
    lasts, and each batch's claims are released once its scores are stored. Pairs another scorer holds are
    left to it."""
    from shadow.store.claims import DEFAULT_CLAIM_TTL_S, ClaimLease

    stats = stats if stats is not None else RayRunStats()
    specs = specs_of(options.names)
    versions = {spec.name: spec.version for spec in specs}
    pages = _store_pages(url, versions, experiment, options.chunk_size)
    if not pages:
        return 0
    _data_context(preserve_order=False)
    ttl_s = DEFAULT_CLAIM_TTL_S if claim_ttl_s is None else claim_ttl_s
    with ClaimLease(store_engine(url), ttl_s=ttl_s) as lease:
        lease.used = True  # the read tasks claim under its id
        dataset = ray.data.from_items(pages, override_num_blocks=len(pages)).map_batches(
            claim_page,
            fn_kwargs={
                "url": url,
                "versions": versions,
                "experiment": experiment,
                "claimant": lease.claimant,
                "ttl_s": ttl_s,
            },
            batch_size=1,
            batch_format="numpy",
        )
        finish = functools.partial(write_and_release, url=url, specs=specs, claimant=lease.claimant)
        dataset = _score(dataset, options, specs, finish)
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            stats._absorb(batch)
            stats.pairs += int(np.sum(batch["pairs"]))
    return stats.pairs


# --- claiming, in the workers ------------------------------------------------------------------------------


def claim_page(
    batch: dict[str, Any],
    url: str,
    versions: dict[str, str],
    experiment: str | None,
    claimant: str,
    ttl_s: float,
) -> dict[str, Any]:
    """A read task: claim the pending pairs of each id range in the batch that no other scorer holds, and
    read them, with the evaluators each still needs: columns `pair_id`, `pair`, `needed`, `results`."""
    from sqlalchemy import and_

    from evaluators.store_queries import claim_pending
    from shadow.store.models import pairs_table

    ids, pairs, needed = [], [], []
    for start, before, last in zip(batch["start"], batch["before"], batch["last"], strict=True):
        end = pairs_table.c.id < before if before is not None else pairs_table.c.id <= last
        chunk = claim_pending(
            store_engine(url),
            versions,
            claimant=claimant,
            ttl_s=ttl_s,
            within=and_(pairs_table.c.id >= start, end),
            experiment=experiment,
        )
        for pair, names in chunk.pairs:
            ids.append(pair.id)
            pairs.append(json.dumps(pair.to_json(), ensure_ascii=False))
            needed.append(json.dumps(sorted(names)))
    return {
        "pair_id": column(ids),
        "pair": column(pairs),
        "needed": column(needed),
        "results": column(["{}"] * len(ids)),
    }


def write_and_release(
    batch: dict[str, Any], url: str, specs: Sequence[Spec], claimant: str
) -> dict[str, Any]:
    """Store mode's last step: store the batch's scores, then release their claims (the scores already mark
    the pairs done; the release only spares the driver's renewals)."""
    from shadow.store.claims import release, retry_deadlocks

    out = write_scores(batch, url, specs)
    pair_ids = [str(pair_id) for pair_id in batch["pair_id"]]

    def release_batch() -> None:
        with store_engine(url).begin() as connection:
            release(connection, claimant, pair_ids)

    if pair_ids:
        retry_deadlocks(release_batch)
    return out


__all__ = [
    "RayOptions",
    "RayRunStats",
    "ray_session",
    "read_pairs",
    "claim_page",
    "score_files",
    "score_store",
    "versions_of",
    "write_and_release",
]
