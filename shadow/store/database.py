"""Engines, migrations and the few row writes shared by the writer, the JSONL import and scoring.

Nothing here runs at import time: engines are made by the caller (`make_engine`) and migrations are applied
only by `upgrade`. The Alembic configuration is built in code from the `migrations` package, so the
shipped wheel needs no alembic.ini and the URL comes from our settings alone.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, func, select, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    InternalError,
    NoSuchModuleError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from shadow.core.errors import UserError
from shadow.core.pairs import Pair, utc_now
from shadow.store.models import pair_to_row, pairs_table, scores_table

if TYPE_CHECKING:
    from alembic.config import Config

SQLITE_BUSY_TIMEOUT_MS = 10_000
"""How long a SQLite writer waits for another process's lock before giving up (`database is locked`)."""

POSTGRES_CONNECT_ARGS = {
    "connect_timeout": 10,
    # TCP keepalives notice a host that vanished mid-query (a partition, not a refusal) in about 30 s
    # rather than the kernel's default of many minutes, so a flush cannot hang on it for long.
    "keepalives": 1,
    "keepalives_idle": 15,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}
"""libpq options bounding how long a flush can hang on an unreachable (not refusing) PostgreSQL host."""

MIGRATION_LOCK_KEY = 0x5348_4144_4F57  # "SHADOW": any fixed key, the same in every process
"""pg_advisory_lock key that serialises concurrent `upgrade` calls from several starting processes."""

_URL_HELP = "expected sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"


class StoreError(UserError, RuntimeError):
    """The pair store cannot be used as configured; the message says what to fix."""


class SchemaDriftError(StoreError):
    """The database schema and the models disagree: a migration is missing or was edited."""


# --- engines -----------------------------------------------------------------------------------------------


def normalise_url(url: str) -> str:
    """A PostgreSQL URL without a driver means psycopg 3, the one we ship (SQLAlchemy would pick psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def redact_url(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    return re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", url)


def make_engine(url: str, *, create_parent: bool = True) -> Engine:
    """An engine for the pair store. SQLite gets WAL (readers never block the writer), a busy timeout and
    foreign keys; every backend gets pre-ping so a restarted PostgreSQL does not fail the first flush.

    `create_parent=False` does no I/O at all (the writer's start must not); call `create_sqlite_parent`
    before connecting then."""
    normalised = normalise_url(url)
    try:
        parsed = make_url(normalised)
    except ArgumentError as exc:
        raise StoreError(f"database URL {redact_url(url)!r} is not valid; {_URL_HELP}") from exc
    # hide_parameters: SQL parameters (pair text) stay out of error messages and logs.
    options: dict[str, Any] = {"pool_pre_ping": True, "hide_parameters": True}
    if parsed.get_backend_name() == "sqlite" and create_parent:
        create_sqlite_parent(parsed.database)
    elif parsed.get_backend_name() == "postgresql":
        options["connect_args"] = dict(POSTGRES_CONNECT_ARGS)
    try:
        engine = create_engine(parsed, **options)
    except NoSuchModuleError as exc:
        raise StoreError(f"database URL {redact_url(url)!r} names an unknown database; {_URL_HELP}") from exc
    except ImportError as exc:
        raise StoreError(
            f"the database driver for {redact_url(url)!r} is not installed ({exc.name or exc}); "
            "install it or use a postgresql:// URL (psycopg 3)"
        ) from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _configure_sqlite_connection)
    return engine


def sqlite_file(engine: Engine) -> Path | None:
    """The database file of a SQLite engine, absolute; None for other backends and in-memory databases."""
    database = engine.url.database
    if (
        engine.dialect.name != "sqlite"
        or not database
        or database == ":memory:"
        or database.startswith("file:")
    ):
        return None
    return Path(database).absolute()


def create_sqlite_parent(database: str | None) -> None:
    """Create the directory of a SQLite database file (SQLite creates the file, not its directory)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    parent = Path(database).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create {parent}, the SQLite database's directory: {exc.strerror}") from exc


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")  # off by default in SQLite; scores cascade with their pair
    finally:
        cursor.close()


def is_unavailable_error(exc: BaseException) -> bool:
    """Errors that say "the database cannot take writes now" rather than "this row is wrong".

    A missing table counts (ProgrammingError; OperationalError on SQLite): the pairs must wait until someone
    runs the migrations, not be thrown away as bad.
    """
    unavailable = (OperationalError, InterfaceError, InternalError, ProgrammingError, PoolTimeoutError)
    if isinstance(exc, unavailable):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def describe_error(exc: BaseException) -> str:
    """One line about a database error, without SQL parameters or detail lines that could hold pair text."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    if isinstance(cause, UnicodeError):
        # Its message quotes the offending characters: pair text, and maybe a lone surrogate no log can write.
        reason = getattr(cause, "reason", "")
        return f"{type(cause).__name__}: {reason}" if reason else type(cause).__name__
    first_line = (str(cause).strip().splitlines() or [""])[0][:200]
    # A driver message may echo a value; keep the line writable by any log handler.
    first_line = first_line.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\\0")
    return f"{type(cause).__name__}: {first_line}" if first_line else type(cause).__name__


# --- migrations --------------------------------------------------------------------------------------------


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema to `revision`. Safe when several processes start at once on PostgreSQL: they queue on
    an advisory lock, and the ones that follow find the schema already current."""
    from alembic import command

    with _migration_connection(url, "upgrading") as config:
        command.upgrade(config, revision)


def downgrade(url: str, revision: str) -> None:
    """Take the schema back to `revision` ("base" drops every table). Data in dropped tables is lost."""
    from alembic import command

    with _migration_connection(url, "downgrading") as config:
        command.downgrade(config, revision)


def check(url: str) -> None:
    """Raise `SchemaDriftError` when the models and the migrated database differ (a migration is missing)."""
    from alembic import command
    from alembic.util.exc import AutogenerateDiffsDetected

    with _migration_connection(url, "checking") as config:
        try:
            command.check(config)
        except AutogenerateDiffsDetected as exc:
            raise SchemaDriftError(
                f"the schema of {redact_url(url)!r} does not match the models; write a migration for: {exc}"
            ) from exc


def current_revision(url: str) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except DBAPIError as exc:
        raise StoreError(f"cannot reach the database {redact_url(url)!r}: {describe_error(exc)}") from exc
    finally:
        engine.dispose()


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, built in code; `migrations/env.py` uses the connection passed here."""
    from alembic.config import Config

    import migrations
    from shadow.store.models import Base

    # Alembic prints command results ("No new upgrade operations detected"); library code stays quiet.
    config = Config(stdout=io.StringIO())
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.set_main_option("path_separator", "os")
    config.attributes["target_metadata"] = Base.metadata  # for `check` (autogenerate compares against it)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextmanager
def _migration_connection(url: str, action: str) -> Iterator[Config]:
    from alembic.util.exc import CommandError

    engine = make_engine(url)
    try:
        with engine.connect() as connection, _migration_lock(connection):
            yield alembic_config(connection)
            connection.commit()
    except DBAPIError as exc:
        raise StoreError(f"{action} the schema of {redact_url(url)!r} failed: {describe_error(exc)}") from exc
    except CommandError as exc:
        raise StoreError(f"{action} the schema of {redact_url(url)!r} failed: {exc}") from exc
    finally:
        engine.dispose()


@contextmanager
def _migration_lock(connection: Connection) -> Iterator[None]:
    # The lock is taken on the very connection Alembic migrates through: a session-level advisory lock
    # is held by the connection, so a second connection would not serialise anything.
    if connection.dialect.name != "postgresql":
        yield
        return
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    connection.commit()
    try:
        yield
    finally:
        if connection.in_transaction():
            connection.rollback()
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()


# --- row writes shared by the writer, the import and scoring ------------------------------------------------


def insert_ignoring_duplicates(
    connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]], key: Sequence[str]
) -> None:
    """Insert rows, skipping any whose `key` already exists, so a replay after an ambiguous failure (did
    the commit land?) never duplicates."""
    if not rows:
        return
    dialect = connection.dialect.name
    if dialect == "postgresql":
        statement = postgresql_insert(table).on_conflict_do_nothing(index_elements=list(key))
    elif dialect == "sqlite":
        statement = sqlite_insert(table).on_conflict_do_nothing(index_elements=list(key))
    else:
        raise StoreError(f"the pair store supports SQLite and PostgreSQL, not {dialect}")
    connection.execute(statement, list(rows))


def insert_pairs(connection: Connection, pairs: Iterable[Pair]) -> None:
    insert_ignoring_duplicates(connection, pairs_table, [pair_to_row(pair) for pair in pairs], ["id"])


def existing_pair_ids(connection: Connection, ids: Iterable[str]) -> set[str]:
    wanted = list(ids)
    if not wanted:
        return set()
    return set(connection.scalars(select(pairs_table.c.id).where(pairs_table.c.id.in_(wanted))))


def store_scores(engine: Engine, rows: Iterable[Mapping[str, Any]]) -> None:
    """Store evaluator results: each row has pair_id, evaluator, version, result and optionally scored_at.
    A (pair, evaluator, version) already scored is kept as it was."""
    now = utc_now()
    prepared = [{"scored_at": now, **row} for row in rows]
    with engine.begin() as connection:
        insert_ignoring_duplicates(connection, scores_table, prepared, ["pair_id", "evaluator", "version"])


def scored_pair_ids(engine: Engine, evaluator: str, version: str) -> set[str]:
    """Ids of the pairs this evaluator version has already scored, so a scoring run can resume."""
    query = select(scores_table.c.pair_id).where(
        scores_table.c.evaluator == evaluator, scores_table.c.version == version
    )
    with engine.connect() as connection:
        return set(connection.scalars(query))


def count_pairs(engine: Engine, *, experiment: str | None = None) -> int:
    query = select(func.count()).select_from(pairs_table)
    if experiment is not None:
        query = query.where(pairs_table.c.experiment == experiment)
    with engine.connect() as connection:
        return int(connection.scalar(query) or 0)
