"""Migrations: from empty to head and back on SQLite and PostgreSQL, no drift from the models, and safe
when several processes upgrade one database at the same time."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

from shadow.store.database import (
    SchemaDriftError,
    StoreError,
    check,
    current_revision,
    downgrade,
    make_engine,
    normalise_url,
    redact_url,
    upgrade,
)
from shadow.store.models import pairs_table, row_to_pair

HEAD = "0006_score_claims"
REPO_ROOT = Path(__file__).resolve().parent.parent


def schema_of(url: str) -> dict[str, object]:
    engine = make_engine(url)
    try:
        inspector = inspect(engine)
        tables = set(inspector.get_table_names())
        indexes = {
            index["name"] for table in tables - {"alembic_version"} for index in inspector.get_indexes(table)
        }
        columns = {c["name"]: c["type"] for c in inspector.get_columns("pairs")} if "pairs" in tables else {}
        return {"tables": tables, "indexes": indexes, "pair_columns": columns}
    finally:
        engine.dispose()


def assert_full_schema(url: str) -> None:
    schema = schema_of(url)
    assert schema["tables"] == {"alembic_version", "pairs", "scores", "score_claims"}
    assert {
        "ix_pairs_experiment_created_at_id",
        "ix_pairs_created_at",
        "ix_scores_evaluator_version",
    } <= schema["indexes"]  # type: ignore[operator]
    columns = schema["pair_columns"]
    for side in ("baseline", "candidate", "secondary"):
        assert f"{side}_started_at" in columns  # type: ignore[operator]
    assert "has_candidate" in columns and "has_secondary" in columns  # type: ignore[operator]
    assert "capture_notes" in columns  # type: ignore[operator]
    assert current_revision(url) == HEAD


def upgrade_check_downgrade(url: str) -> None:
    assert current_revision(url) is None
    upgrade(url)
    assert_full_schema(url)
    check(url)  # models and migrations agree
    upgrade(url)  # a second upgrade is a no-op
    downgrade(url, "0001_pairs")
    assert schema_of(url)["tables"] == {"alembic_version", "pairs"}
    downgrade(url, "base")
    assert schema_of(url)["tables"] == {"alembic_version"}
    assert current_revision(url) is None
    upgrade(url)
    check(url)


def test_sqlite_upgrade_check_and_downgrade(tmp_path: Path) -> None:
    upgrade_check_downgrade(f"sqlite:///{tmp_path}/nested/dir/shadow.db")


def test_postgres_upgrade_check_and_downgrade(postgres_url: str) -> None:
    upgrade_check_downgrade(postgres_url)
    columns = schema_of(postgres_url)["pair_columns"]
    assert type(columns["request"]).__name__ == "JSONB"  # type: ignore[index]
    assert "TIME ZONE" in str(columns["created_at"]).upper() or columns["created_at"].timezone  # type: ignore[index]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_capture_notes_revision_keeps_old_rows_and_scores(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path}/shadow.db" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    )
    upgrade(url, "0003_scale_indexes")
    engine = make_engine(url)
    with engine.begin() as connection:  # a row written before the column existed
        connection.execute(
            text(
                "INSERT INTO pairs (id, experiment, created_at, route, stream, request, prompt, segment,"
                " user_cancelled, extra, has_candidate, has_secondary)"
                " VALUES ('01OLD', 'e', '2025-01-01 00:00:00+00', 'chat', false, '{}', 'p', '{}', false, '{}',"
                " false, false)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO scores (pair_id, evaluator, version, result, scored_at)"
                " VALUES ('01OLD', 'length', '1', '{}', '2025-01-01 00:00:00+00')"
            )
        )
    upgrade(url)
    check(url)
    with engine.connect() as connection:
        row = connection.execute(select(pairs_table)).mappings().one()
    assert row_to_pair(row).capture_notes == []
    # Going back drops the column only; a rebuilt table would have cascaded the scores away.
    downgrade(url, "0003_scale_indexes")
    assert "capture_notes" not in schema_of(url)["pair_columns"]  # type: ignore[operator]
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM scores")) == 1
    engine.dispose()


def test_check_reports_drift(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shadow.db"
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_scores_evaluator_version"))
    engine.dispose()
    with pytest.raises(SchemaDriftError, match="does not match the models"):
        check(url)


def test_check_on_an_old_database_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shadow.db"
    upgrade(url, "0001_pairs")
    with pytest.raises(StoreError, match="not up to date"):
        check(url)


@pytest.mark.timeout(120)
def test_concurrent_upgrades_on_postgres(postgres_url: str) -> None:
    # Separate processes, released at the same instant, as when several replicas start together.
    start_at = time.time() + 4.0
    script = (
        "import sys, time\n"
        "from shadow.store.database import upgrade\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
        "upgrade(sys.argv[1])\n"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, postgres_url, str(start_at)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=90)[0] for process in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output
    assert_full_schema(postgres_url)
    check(postgres_url)
    engine = make_engine(postgres_url)
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM alembic_version")) == 1
    engine.dispose()


def test_url_normalisation_and_redaction() -> None:
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgresql://u:p@h:5432/db") == "postgresql+psycopg://u:p@h:5432/db"
    assert normalise_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"
    assert redact_url("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "is not valid"),
        ("nosuchdb://x", "unknown database"),
        ("mysql+nosuchdriver://u@h/db", "unknown database"),
        ("postgresql+asyncpg://u:secret@h/db", "driver .* is not installed"),
    ],
)
def test_bad_urls_get_clear_errors(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as info:
        make_engine(url)
    assert "secret" not in str(info.value)


def test_unreachable_database_is_a_store_error() -> None:
    import socket

    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StoreError, match="upgrading the schema of .* failed"):
        upgrade(f"postgresql://nobody@127.0.0.1:{port}/nothing")
