"""Alembic environment for the pair store.

Run through `shadow.store.database` (`upgrade`, `downgrade`, `check`), which hands over an open connection
in `config.attributes["connection"]` and the models' metadata in `config.attributes["target_metadata"]`;
there is no alembic.ini and no URL in it. Taking the metadata from the caller keeps the dependency one way:
the store uses its migrations, the migrations never import the store. The connection is the one
holding the PostgreSQL advisory lock, which is what makes concurrent upgrades safe.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=context.config.attributes.get("target_metadata"),
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )


def run_migrations_offline() -> None:
    """`--sql` mode: print the SQL for a DBA instead of running it."""
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("offline migrations need the sqlalchemy.url option set to the target database URL")
    context.configure(
        url=url,
        target_metadata=context.config.attributes.get("target_metadata"),
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "run migrations through shadow.store.database.upgrade(url), which passes the connection to use"
        )
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
