"""Claims: several scorers share one store and each score is computed once.

A claim (a `score_claims` row) is a lease on a score row not written yet: scorer `claimed_by` is computing
(pair, evaluator, version) until `expires_at`. The score row marks the work done, and the claim is deleted
in the transaction that stores it. A scorer renews its claims while it works (`ClaimLease`); one that dies
stops renewing, its claims lapse after their time to live, and the next scorer to look takes them over.

`claim` takes one batch atomically:

- SQLite: inside ``BEGIN IMMEDIATE``, which holds the write lock from the first statement, so the
  candidates read, the claims written and the claims read back are one state no other process changes in
  between. The transaction is index probes and one insert; pair texts are read after it commits.
- PostgreSQL: the candidate pairs are read ``FOR NO KEY UPDATE SKIP LOCKED``, so concurrent claimers take
  disjoint pages instead of queueing on each other (NO KEY: it does not conflict with the key-share locks
  that inserting scores takes on their pairs). Claims are written with ``INSERT ... ON CONFLICT DO
  UPDATE ... WHERE`` the existing claim has lapsed, which lets exactly one transaction win each key. A last
  look at the scores after the insert drops what another scorer stored meanwhile: under READ COMMITTED
  each statement sees what committed before it started.

Times come from the database's clock on PostgreSQL (scorers on several hosts need not agree on the time)
and from this host's on SQLite, whose file only processes of one host share.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Select, delete, func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from shadow.store.database import describe_error
from shadow.store.models import pairs_table, score_claims_table, scores_table

logger = logging.getLogger(__name__)

DEFAULT_CLAIM_TTL_S = 600.0
"""How long a claim lasts without renewal (the `score_claim_ttl_s` setting's default)."""

ID_BATCH = 500
"""Ids per `IN (...)` list: well under SQLite's bound-parameter limit."""

_RETRIES = 3
"""Attempts at a transaction that PostgreSQL aborted as a deadlock (`retry_deadlocks`)."""

T = TypeVar("T")

Key = tuple[str, str]
"""(pair id, evaluator name): the version is the scorer's own, given with `versions`."""


def scorer_id() -> str:
    """``hostname:pid:random``: which process holds a claim, for whoever finds one stuck; the random part
    tells two runs with the same pid apart (a restarted container)."""
    host = (socket.gethostname() or "localhost")[:150]
    return f"{host}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Claimed:
    """What one `claim` got."""

    needed: dict[str, set[str]]
    """Pair id -> the evaluators this scorer now holds for it, in the candidates' order."""
    last: tuple[Any, str] | None
    """(created_at, id) of the last candidate looked at, where the next page starts; None: no candidates."""
    taken_over: dict[str, int] = field(default_factory=dict)
    """Scorer id -> how many of its lapsed claims this claim took over."""


def database_now(connection: Connection) -> datetime:
    """The time claims are dated and compared by: the server's clock on PostgreSQL (the transaction's
    start), this host's on SQLite."""
    if connection.dialect.name == "postgresql":
        return _utc(connection.scalar(select(func.now())))
    return datetime.now(UTC)


def claim(
    engine: Engine,
    candidates: Callable[[datetime], Select[Any]],
    versions: Mapping[str, str],
    *,
    claimant: str,
    ttl_s: float,
) -> Claimed:
    """Claim, for `claimant`, what the pairs that ``candidates(now)`` selects still need of `versions`: every
    (pair, evaluator) without a score and without another scorer's live claim.

    `candidates` selects ``pairs.id, pairs.created_at``, filtered, ordered and limited by the caller (it
    gets the claim's `now` to tell live claims from lapsed ones)."""
    return retry_deadlocks(lambda: _claim_once(engine, candidates, versions, claimant=claimant, ttl_s=ttl_s))


def retry_deadlocks(transaction: Callable[[], T]) -> T:
    """Run `transaction` (a whole transaction), again when PostgreSQL aborted it as a deadlock or a
    serialization failure: a scorer whose claims lapsed while it worked can meet the one taking them over,
    each locking the same claims in another order. Other errors, and the last attempt's, propagate."""
    attempt = 1
    while True:
        try:
            return transaction()
        except OperationalError as exc:
            if attempt >= _RETRIES or getattr(exc.orig, "sqlstate", None) not in {"40P01", "40001"}:
                raise
            logger.info("a claims transaction was aborted (%s); trying again", describe_error(exc))
            attempt += 1


def _claim_once(
    engine: Engine,
    candidates: Callable[[datetime], Select[Any]],
    versions: Mapping[str, str],
    *,
    claimant: str,
    ttl_s: float,
) -> Claimed:
    with write_transaction(engine) as connection:
        now = database_now(connection)
        query = candidates(now)
        if connection.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, key_share=True, of=pairs_table)
        rows = connection.execute(query).all()
        if not rows:
            return Claimed({}, None)
        ids = [row[0] for row in rows]
        holders = _holders(connection, ids, versions)
        done = _scored(connection, ids, versions)
        expires_at = now + timedelta(seconds=ttl_s)
        wanted = []
        for pair_id in ids:
            for name, version in versions.items():
                holder = holders.get((pair_id, name))
                if (pair_id, name) in done or (holder and holder[0] != claimant and holder[1] > now):
                    continue
                wanted.append(
                    {
                        "pair_id": pair_id,
                        "evaluator": name,
                        "version": version,
                        "claimed_by": claimant,
                        "claimed_at": now,
                        "expires_at": expires_at,
                    }
                )
        _upsert(connection, wanted)
        mine = _held_by(connection, ids, versions, claimant)
        # Stored by another scorer since the first look (PostgreSQL; on SQLite nothing changed meanwhile).
        finished = mine & _scored(connection, sorted({pair_id for pair_id, _ in mine}), versions)
        if finished:
            _delete(connection, finished, versions)
            mine -= finished
    taken_over = Counter(holders[key][0] for key in mine if key in holders and holders[key][0] != claimant)
    needed: dict[str, set[str]] = {}
    for pair_id in ids:
        names = {name for name in versions if (pair_id, name) in mine}
        if names:
            needed[pair_id] = names
    return Claimed(needed, (rows[-1][1], rows[-1][0]), dict(taken_over))


def release(connection: Connection, claimant: str, pair_ids: Sequence[str]) -> None:
    """Delete `claimant`'s claims on these pairs, in the caller's transaction (the one storing their scores);
    claims another scorer took over are left to it."""
    table = score_claims_table
    for start in range(0, len(pair_ids), ID_BATCH):
        batch = pair_ids[start : start + ID_BATCH]
        connection.execute(delete(table).where(table.c.claimed_by == claimant, table.c.pair_id.in_(batch)))


def release_all(engine: Engine, claimant: str) -> int:
    """Delete every claim `claimant` still holds; returns how many there were."""
    with engine.begin() as connection:
        result = connection.execute(
            delete(score_claims_table).where(score_claims_table.c.claimed_by == claimant)
        )
    return int(result.rowcount or 0)


def renew(engine: Engine, claimant: str, ttl_s: float) -> int:
    """Push the expiry of `claimant`'s claims to `ttl_s` from now; returns how many it renewed. Claims another
    scorer took over in the meantime are no longer `claimant`'s and stay as they are."""
    table = score_claims_table
    mine = table.c.claimed_by == claimant
    with engine.begin() as connection:
        now = database_now(connection)
        if connection.dialect.name == "postgresql":
            # Rows locked right now are being stored (deleted) or claimed again: skip them rather than wait
            # for them, which could deadlock with the scorer's own transaction locking them in another order.
            key = tuple_(table.c.pair_id, table.c.evaluator, table.c.version)
            locked = select(table.c.pair_id, table.c.evaluator, table.c.version).where(mine)
            mine = key.in_(locked.with_for_update(skip_locked=True))
        result = connection.execute(
            update(table).where(mine).values(expires_at=now + timedelta(seconds=ttl_s))
        )
    return int(result.rowcount or 0)


class ClaimLease:
    """One scorer's identity (`claimant`) and time to live for its claims, with a thread that renews them
    every third of it while the scorer works.

    Use it as a context manager around a scoring run: leaving it stops the thread and releases what is still
    claimed (a chunk that failed), so a clean exit leaves nothing to lapse."""

    def __init__(self, engine: Engine, *, ttl_s: float = DEFAULT_CLAIM_TTL_S, claimant: str | None = None):
        if not ttl_s > 0:
            raise ValueError(f"a claim's time to live must be positive, got {ttl_s}")
        self.engine = engine
        self.ttl_s = ttl_s
        self.claimant = claimant or scorer_id()
        self.used = False
        """Set by the scorer once it has claimed: until then there is nothing to renew or release (and a
        store that cannot be reached is reported once, by the scorer, not again here)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def release(self, connection: Connection, pair_ids: Sequence[str]) -> None:
        release(connection, self.claimant, pair_ids)

    def __enter__(self) -> ClaimLease:
        self._thread = threading.Thread(target=self._keep_alive, name="score-claims-lease", daemon=True)
        self._thread.start()
        logger.debug("scoring as %s (claims live %.0f s without renewal)", self.claimant, self.ttl_s)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)  # a renewal in flight waits for SQLite's lock at most 10 s
        if not self.used:
            return
        try:
            release_all(self.engine, self.claimant)
        except SQLAlchemyError as exc:
            logger.warning(
                "could not release the claims of %s (%s); other scorers take them in %.0f s",
                self.claimant,
                describe_error(exc),
                self.ttl_s,
            )

    def _keep_alive(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            if not self.used:
                continue
            try:
                renew(self.engine, self.claimant, self.ttl_s)
            except SQLAlchemyError as exc:
                logger.warning("could not renew the claims of %s (%s)", self.claimant, describe_error(exc))


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that reads and then writes one consistent state: on SQLite it takes the write lock at
    its start (``BEGIN IMMEDIATE``; a deferred one would fail, not wait, when another process wrote between
    its read and its write). PostgreSQL's default transaction, with row locks, does the same job there."""
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield connection
        connection.commit()


# --- the statements ----------------------------------------------------------------------------------------


def _upsert(connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert claims; one that exists is taken only if it has lapsed (or is already `claimed_by`'s)."""
    if not rows:
        return
    table = score_claims_table
    insert = postgresql_insert if connection.dialect.name == "postgresql" else sqlite_insert
    statement = insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=["pair_id", "evaluator", "version"],
        set_={
            "claimed_by": statement.excluded.claimed_by,
            "claimed_at": statement.excluded.claimed_at,
            "expires_at": statement.excluded.expires_at,
        },
        where=or_(
            table.c.expires_at <= statement.excluded.claimed_at,
            table.c.claimed_by == statement.excluded.claimed_by,
        ),
    )
    connection.execute(statement, list(rows))


def _holders(
    connection: Connection, ids: Sequence[str], versions: Mapping[str, str]
) -> dict[Key, tuple[str, datetime]]:
    """(pair, evaluator) -> (claimed_by, expires_at) of the claims on these pairs, at `versions`."""
    table = score_claims_table
    found: dict[Key, tuple[str, datetime]] = {}
    columns = (table.c.pair_id, table.c.evaluator, table.c.version, table.c.claimed_by, table.c.expires_at)
    for batch in _batches(ids):
        for pair_id, name, version, holder, expires_at in connection.execute(
            select(*columns).where(table.c.pair_id.in_(batch))
        ):
            if versions.get(name) == version:
                found[(pair_id, name)] = (holder, _utc(expires_at))
    return found


def _held_by(
    connection: Connection, ids: Sequence[str], versions: Mapping[str, str], claimant: str
) -> set[Key]:
    table = score_claims_table
    held: set[Key] = set()
    for batch in _batches(ids):
        query = select(table.c.pair_id, table.c.evaluator, table.c.version).where(
            table.c.claimed_by == claimant, table.c.pair_id.in_(batch)
        )
        held.update((p, n) for p, n, v in connection.execute(query) if versions.get(n) == v)
    return held


def _scored(connection: Connection, ids: Sequence[str], versions: Mapping[str, str]) -> set[Key]:
    """(pair, evaluator) of these pairs that already have a score row at `versions`."""
    table = scores_table
    done: set[Key] = set()
    for batch in _batches(ids):
        query = select(table.c.pair_id, table.c.evaluator, table.c.version).where(
            table.c.pair_id.in_(batch), table.c.evaluator.in_(list(versions))
        )
        done.update((p, n) for p, n, v in connection.execute(query) if versions.get(n) == v)
    return done


def _delete(connection: Connection, keys: set[Key], versions: Mapping[str, str]) -> None:
    table = score_claims_table
    triples = sorted((pair_id, name, versions[name]) for pair_id, name in keys)
    for start in range(0, len(triples), ID_BATCH):
        batch = triples[start : start + ID_BATCH]
        connection.execute(
            delete(table).where(tuple_(table.c.pair_id, table.c.evaluator, table.c.version).in_(batch))
        )


def _batches(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), ID_BATCH):
        yield ids[start : start + ID_BATCH]


def _utc(value: datetime) -> datetime:
    # SQLite hands timestamps back without their offset; they were stored in UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


__all__ = [
    "DEFAULT_CLAIM_TTL_S",
    "ClaimLease",
    "Claimed",
    "claim",
    "database_now",
    "release",
    "release_all",
    "renew",
    "retry_deadlocks",
    "scorer_id",
    "write_transaction",
]
