"""The queries over the pair store that both scoring engines share: which pairs still need a score, in what
order to page through them, which evaluators already scored a set of pairs, and how a scorer claims its
next pairs so that several scorers never compute the same score.

`evaluators.store_mode` (the local engine) and `evaluators.ray_engine` (Ray) select the same pending pairs
with the same SQL; it lives here so that neither engine reaches into the other's private helpers and the
two cannot drift apart. Plain SQLAlchemy Core expressions; nothing here runs a query on its own except
`scored_names`, which is given a connection, and `claim_pending`, which claims through
`shadow.store.claims` and reads the claimed pairs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Select, and_, exists, or_, select, tuple_
from sqlalchemy.sql.elements import ColumnElement

from shadow.core.pairs import Pair
from shadow.store import claims
from shadow.store.models import pairs_table, row_to_pair, score_claims_table, scores_table

ID_BATCH = 500
"""Ids per `IN (...)` list: well under SQLite's bound-parameter limit, cheap for PostgreSQL."""


def unscored_by(name: str, version: str) -> ColumnElement[bool]:
    """True for a pair without a score row from this evaluator version (an anti-join on the unique index)."""
    return ~exists().where(
        scores_table.c.pair_id == pairs_table.c.id,
        scores_table.c.evaluator == name,
        scores_table.c.version == version,
    )


def pending_filter(versions: Mapping[str, str], experiment: str | None) -> ColumnElement[bool]:
    """Pairs (of the experiment, unless None) missing a score from at least one of the versions."""
    missing = or_(*(unscored_by(name, version) for name, version in versions.items()))
    if experiment is None:
        return missing
    return and_(pairs_table.c.experiment == experiment, missing)


def claimed_by_another(name: str, version: str, now: datetime, claimant: str) -> ColumnElement[bool]:
    """True for a pair whose score by this evaluator version another scorer has claimed, with a claim still
    live at `now` (a probe of the claims' primary key)."""
    claim = score_claims_table.c
    return exists().where(
        claim.pair_id == pairs_table.c.id,
        claim.evaluator == name,
        claim.version == version,
        claim.expires_at > now,
        claim.claimed_by != claimant,
    )


def claimable_filter(
    versions: Mapping[str, str], experiment: str | None, now: datetime, claimant: str
) -> ColumnElement[bool]:
    """Pairs (of the experiment, unless None) with at least one of the versions neither scored nor claimed by
    another scorer whose claim is live at `now`: what `claimant` may claim."""
    open_ = or_(
        *(
            and_(unscored_by(name, version), ~claimed_by_another(name, version, now, claimant))
            for name, version in versions.items()
        )
    )
    if experiment is None:
        return open_
    return and_(pairs_table.c.experiment == experiment, open_)


def page(query: Select[Any], experiment: str | None, cursor: tuple[Any, str] | None) -> Select[Any]:
    """Keyset paging that an index serves: by id (the primary key) over all pairs; within an experiment by
    (created_at, id), which the (experiment, created_at) index returns in order, so no query sorts the whole
    experiment."""
    if experiment is None:
        if cursor is not None:
            query = query.where(pairs_table.c.id > cursor[1])
        return query.order_by(pairs_table.c.id)
    query = query.where(pairs_table.c.experiment == experiment)
    if cursor is not None:
        query = query.where(tuple_(pairs_table.c.created_at, pairs_table.c.id) > tuple_(*cursor))
    return query.order_by(pairs_table.c.created_at, pairs_table.c.id)


def current_versions(versions: Mapping[str, str]) -> ColumnElement[bool]:
    """Score rows written by exactly these evaluator versions (`versions` must not be empty)."""
    return or_(
        *(and_(scores_table.c.evaluator == n, scores_table.c.version == v) for n, v in versions.items())
    )


def scored_names(
    connection: Any, pair_ids: Sequence[str], versions: Mapping[str, str]
) -> dict[str, set[str]]:
    """Pair id -> the evaluators in `versions` that already stored a score for it, at that version."""
    current = current_versions(versions)
    done: dict[str, set[str]] = {}
    for start in range(0, len(pair_ids), ID_BATCH):
        ids = pair_ids[start : start + ID_BATCH]
        query = select(scores_table.c.pair_id, scores_table.c.evaluator).where(
            scores_table.c.pair_id.in_(ids), current
        )
        for pair_id, name in connection.execute(query):
            done.setdefault(pair_id, set()).add(name)
    return done


@dataclass(frozen=True)
class ClaimedChunk:
    """What one `claim_pending` got: the pairs now this scorer's, each with the evaluators it holds for it."""

    pairs: list[tuple[Pair, set[str]]]
    cursor: tuple[Any, str] | None
    """The last candidate looked at, for `page`; None when there was none: the pass is over."""
    taken_over: dict[str, int] = field(default_factory=dict)
    """Scorer id -> lapsed claims of it taken over (a scorer that died or stopped renewing)."""


def claim_pending(
    engine: Engine,
    versions: Mapping[str, str],
    *,
    claimant: str,
    ttl_s: float,
    experiment: str | None = None,
    cursor: tuple[Any, str] | None = None,
    limit: int | None = None,
    within: ColumnElement[bool] | None = None,
) -> ClaimedChunk:
    """Claim the next pending pairs after `cursor` (at most `limit` candidates, `within` an extra condition
    such as an id range) and read them. Candidates another scorer claimed meanwhile are skipped, not
    waited for, so a chunk may hold fewer pairs than it looked at, or none while the pass goes on."""

    def candidates(now: datetime) -> Select[Any]:
        query = select(pairs_table.c.id, pairs_table.c.created_at).where(
            claimable_filter(versions, None, now, claimant)
        )
        if within is not None:
            query = query.where(within)
        query = page(query, experiment, cursor)
        return query if limit is None else query.limit(limit)

    claimed = claims.claim(engine, candidates, versions, claimant=claimant, ttl_s=ttl_s)
    ids = list(claimed.needed)
    rows: dict[str, Pair] = {}
    with engine.connect() as connection:
        for start in range(0, len(ids), ID_BATCH):
            query = select(pairs_table).where(pairs_table.c.id.in_(ids[start : start + ID_BATCH]))
            for row in connection.execute(query).mappings():
                rows[row["id"]] = row_to_pair(row)
    # A pair deleted (pruned) since it was claimed is simply gone; its claim went with it.
    pairs = [(rows[pair_id], claimed.needed[pair_id]) for pair_id in ids if pair_id in rows]
    return ClaimedChunk(pairs, claimed.last, claimed.taken_over)


__all__ = [
    "ID_BATCH",
    "ClaimedChunk",
    "claim_pending",
    "claimable_filter",
    "claimed_by_another",
    "current_versions",
    "page",
    "pending_filter",
    "scored_names",
    "unscored_by",
]
