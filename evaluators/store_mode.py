"""Score the pairs in the store that the current evaluator versions have not scored yet, and read scored pairs
back in the shape of a scores file.

One row in `scores` per (pair, evaluator, version) holds that evaluator's *result object* as defined in
`evaluators.runner`:

- pairwise evaluators (semantic, length): ``{"candidate": r}`` plus ``"noise": r`` when the pair has a
  secondary, where ``r`` is the metric dict or null when a side had no usable text;
- per-text evaluators (loop, coherence): ``{"baseline": r, "candidate": r}`` plus ``"secondary": r``, exactly
  the object a scores file carries under the evaluator's name. A result with a ``"baseline"`` key is per-text.

A failed candidate still gets its row (with nulls), so it is not picked up again on the next pass. Bumping an
evaluator's version makes every pair "unscored" for it again; the old rows stay for comparison.

Several scorers (processes, `--follow` daemons, a Ray run) can work on one store at once: each claims a chunk
before scoring it, for each (pair, evaluator, version) it still needs, and skips what others hold, so every
score is computed once. A claim lapses when its scorer stops renewing it, and then the next scorer takes it
(`shadow.store.claims`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError

from evaluators.runner import DEFAULT_CHUNK_SIZE, ScoreRunner, apply_named_result
from evaluators.store_queries import (
    ID_BATCH,
    claim_pending,
    current_versions,
    page,
    pending_filter,
    scored_names,
)
from shadow.core.pairs import Pair
from shadow.store.claims import ClaimLease, retry_deadlocks
from shadow.store.database import describe_error, insert_ignoring_duplicates
from shadow.store.models import pairs_table, row_to_pair, scores_table

logger = logging.getLogger(__name__)


def count_unscored(engine: Engine, versions: Mapping[str, str], *, experiment: str | None = None) -> int:
    """Pairs that at least one of the evaluator versions in `versions` has not scored."""
    if not versions:
        return 0
    query = select(func.count()).select_from(pairs_table).where(pending_filter(versions, experiment))
    with engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def iter_unscored(
    engine: Engine,
    versions: Mapping[str, str],
    *,
    experiment: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Iterator[list[tuple[Pair, set[str]]]]:
    """Chunks of (pair, names of the evaluators it still needs), in id order (ids are ULIDs: time order), or
    in (created_at, id) order within an experiment.

    Keyset paging keeps every query bounded and guarantees progress even while rows are added. A look only:
    it claims nothing, so another scorer may be scoring what it yields; `score_pending` claims its chunks.
    """
    if not versions:
        return
    cursor: tuple[Any, str] | None = None
    while True:
        query = select(pairs_table).where(pending_filter(versions, None))
        query = page(query, experiment, cursor).limit(chunk_size)
        with engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
            if not rows:
                return
            done = scored_names(connection, [row["id"] for row in rows], versions)
        yield [(row_to_pair(row), set(versions) - done.get(row["id"], set())) for row in rows]
        cursor = (rows[-1]["created_at"], rows[-1]["id"])


def score_pending(
    engine: Engine,
    runner: ScoreRunner,
    *,
    experiment: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    stop: threading.Event | None = None,
    on_chunk: Callable[[int], None] | None = None,
    lease: ClaimLease | None = None,
) -> int:
    """One pass: claim, score and store every pair not yet scored by the runner's evaluator versions.

    Each chunk is claimed under `lease` (a lease of its own, with the default time to live, when None), then
    scored, then stored with its claims released in one transaction, so an interrupted pass keeps what it
    finished and the next pass resumes. Pairs another scorer holds are left to it (`shadow.store.claims`).
    Returns the number of pairs this scorer scored. `stop` is checked between chunks.
    """
    if lease is None:
        with ClaimLease(engine) as own:
            return score_pending(
                engine,
                runner,
                experiment=experiment,
                chunk_size=chunk_size,
                stop=stop,
                on_chunk=on_chunk,
                lease=own,
            )
    if not runner.versions:
        return 0
    scored = 0
    cursor: tuple[Any, str] | None = None
    while True:
        chunk = claim_pending(
            engine,
            runner.versions,
            claimant=lease.claimant,
            ttl_s=lease.ttl_s,
            experiment=experiment,
            cursor=cursor,
            limit=chunk_size,
        )
        if chunk.cursor is None:
            return scored
        lease.used = True
        cursor = chunk.cursor
        for holder, count in chunk.taken_over.items():
            logger.info("took over %d lapsed claims of %s (a scorer that stopped renewing)", count, holder)
        if chunk.pairs:
            rows = _score_chunk(runner, chunk.pairs)
            _store_scores(engine, rows, lease, [pair.id for pair, _needed in chunk.pairs])
            scored += len(chunk.pairs)
            if on_chunk is not None:
                on_chunk(len(chunk.pairs))
        if stop is not None and stop.is_set():
            return scored


def follow(
    engine: Engine,
    runner: ScoreRunner,
    *,
    stop: threading.Event,
    interval_s: float = 10.0,
    experiment: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_chunk: Callable[[int], None] | None = None,
    lease: ClaimLease | None = None,
) -> int:
    """Score pending pairs, then poll every `interval_s` for new ones until `stop` is set.

    Each poll rescans from the first id rather than from the last one seen: pairs replayed from the spool
    arrive late with older ids, and claims of a scorer that died lapse behind the last id seen. The
    anti-join probes the unique index once per pair and evaluator, so a poll with nothing to do costs one
    index walk. Once a pass has succeeded, a database error (a restart) is logged and retried at the next
    poll. One `lease` (a scorer id) serves every pass.
    """
    if lease is None:
        with ClaimLease(engine) as own:
            return follow(
                engine,
                runner,
                stop=stop,
                interval_s=interval_s,
                experiment=experiment,
                chunk_size=chunk_size,
                on_chunk=on_chunk,
                lease=own,
            )
    total = 0
    passes = 0
    while not stop.is_set():
        try:
            total += score_pending(
                engine,
                runner,
                experiment=experiment,
                chunk_size=chunk_size,
                stop=stop,
                on_chunk=on_chunk,
                lease=lease,
            )
        except OperationalError as exc:
            if passes == 0:
                raise  # a store that never worked (wrong URL, not migrated) is an error, not a wait
            logger.warning("the pair store failed (%s); retrying in %.1f s", describe_error(exc), interval_s)
        passes += 1
        stop.wait(interval_s)
    return total


def _score_chunk(runner: ScoreRunner, chunk: Sequence[tuple[Pair, set[str]]]) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for evaluator in runner.evaluators:
        pairs = [pair for pair, needed in chunk if evaluator.name in needed]
        if not pairs:
            continue
        results = runner.score_evaluator(evaluator, pairs)
        rows.extend(
            {
                "pair_id": pair.id,
                "evaluator": evaluator.name,
                "version": str(evaluator.version),
                "result": result,
                "scored_at": now,
            }
            for pair, result in zip(pairs, results, strict=True)
        )
    return rows


def _store_scores(
    engine: Engine, rows: list[dict[str, Any]], lease: ClaimLease, pair_ids: Sequence[str]
) -> None:
    """One transaction per chunk: the scores, and the release of their claims. A row another scorer stored
    meanwhile (it took over a claim of ours that lapsed) is skipped by the unique key."""

    def store() -> None:
        with engine.begin() as connection:
            if rows:
                insert_ignoring_duplicates(
                    connection, scores_table, rows, ["pair_id", "evaluator", "version"]
                )
            lease.release(connection, pair_ids)

    retry_deadlocks(store)


def load_scored_pairs(
    engine: Engine,
    experiment: str | None = None,
    *,
    versions: Mapping[str, str] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Iterator[dict[str, Any]]:
    """Every pair of the experiment (None: all) as the dict a scores file carries for it, in time order.

    `versions` picks one version per evaluator (others are ignored); without it the newest score of each
    evaluator wins. Pairs without scores come back without score fields, so the gate still counts their
    errors. A generator: pairs are read `chunk_size` at a time.
    """
    cursor: tuple[Any, str] | None = None
    while True:
        query = page(select(pairs_table), experiment, cursor).limit(chunk_size)
        with engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
            if not rows:
                return
            scores = _scores_of(connection, [row["id"] for row in rows], versions)
        for row in rows:
            pair_json = row_to_pair(row).to_json()
            for name, version, result in scores.get(row["id"], []):
                pairwise = not (isinstance(result, dict) and "baseline" in result)
                apply_named_result(pair_json, name, version, pairwise, result or {})
            yield pair_json
        cursor = (rows[-1]["created_at"], rows[-1]["id"])


def _scores_of(
    connection: Any, pair_ids: Sequence[str], versions: Mapping[str, str] | None
) -> dict[str, list[tuple[str, str, Any]]]:
    found: dict[str, list[tuple[str, str, Any]]] = {}
    columns = (
        scores_table.c.pair_id,
        scores_table.c.evaluator,
        scores_table.c.version,
        scores_table.c.result,
    )
    for start in range(0, len(pair_ids), ID_BATCH):
        query = select(*columns).where(scores_table.c.pair_id.in_(pair_ids[start : start + ID_BATCH]))
        if versions is not None:
            if not versions:
                return found
            query = query.where(current_versions(versions))
        # Oldest first, so that the newest version of each evaluator is applied last and wins.
        query = query.order_by(scores_table.c.scored_at, scores_table.c.id)
        for pair_id, name, version, result in connection.execute(query):
            found.setdefault(pair_id, []).append((name, version, result))
    return found


__all__ = [
    "count_unscored",
    "follow",
    "iter_unscored",
    "load_scored_pairs",
    "score_pending",
]
