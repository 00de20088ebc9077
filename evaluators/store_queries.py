"""The queries over the pair store that both scoring engines share: which pairs still need a score, in what
order to page through them, and which evaluators already scored a set of pairs.

`evaluators.store_mode` (the local engine) and `evaluators.ray_engine` (Ray) select the same pending pairs
with the same SQL; it lives here so that neither engine reaches into the other's private helpers and the
two cannot drift apart. Plain SQLAlchemy Core expressions; nothing here runs a query on its own except
`scored_names`, which is given a connection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Select, and_, exists, or_, select, tuple_
from sqlalchemy.sql.elements import ColumnElement

from shadow.store.models import pairs_table, scores_table

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


__all__ = ["ID_BATCH", "current_versions", "page", "pending_filter", "scored_names", "unscored_by"]
