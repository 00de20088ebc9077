"""Retention: delete pairs (and, by cascade, their scores) older than a cutoff, in bounded batches so a
large prune never holds one huge transaction or lock."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, delete, func, select

from shadow.store.models import pairs_table, scores_table

PRUNE_BATCH = 5_000


def prune_pairs(
    engine: Engine, older_than: datetime, *, experiment: str | None = None, batch_size: int = PRUNE_BATCH
) -> int:
    """Delete pairs created before `older_than`; returns how many. Scores go with their pairs."""
    condition = pairs_table.c.created_at < older_than
    if experiment is not None:
        condition = condition & (pairs_table.c.experiment == experiment)
    deleted = 0
    while True:
        with engine.begin() as connection:
            ids = (
                connection.execute(select(pairs_table.c.id).where(condition).limit(batch_size))
                .scalars()
                .all()
            )
            if not ids:
                return deleted
            # Explicit, so that SQLite connections without foreign-key enforcement stay consistent too.
            connection.execute(delete(scores_table).where(scores_table.c.pair_id.in_(ids)))
            connection.execute(delete(pairs_table).where(pairs_table.c.id.in_(ids)))
            deleted += len(ids)


def count_older(engine: Engine, older_than: datetime, *, experiment: str | None = None) -> int:
    condition = pairs_table.c.created_at < older_than
    if experiment is not None:
        condition = condition & (pairs_table.c.experiment == experiment)
    with engine.connect() as connection:
        return int(
            connection.execute(select(func.count()).select_from(pairs_table).where(condition)).scalar_one()
        )
