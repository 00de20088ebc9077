"""A real PostgreSQL server for the tests, on loopback, started and stopped by the suite.

It uses the server binaries installed on the machine (`initdb`, `pg_ctl`), found on PATH or under
/usr/lib/postgresql/*/bin. initdb refuses to run as root, so under root the server runs as the `postgres`
user on a data directory handed over to it. Durability is switched off (`fsync=off`): the data is
thrown away after the run and the tests that stop the server stop it cleanly.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.net import free_port

START_TIMEOUT_S = 30


def find_postgres_bin() -> Path | None:
    """The directory holding initdb and pg_ctl, newest installed version first; None when there is none."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for candidate in candidates:
        if (candidate / "pg_ctl").exists() and (candidate / "initdb").exists():
            return candidate
    return None


class PostgresServer:
    """One throw-away cluster: `start()` (initialises it the first time), `stop()`, `url`, `cleanup()`."""

    def __init__(self, bin_dir: Path, port: int | None = None) -> None:
        self.bin_dir = bin_dir
        self.port = port or free_port()
        self.base_dir = Path(tempfile.mkdtemp(prefix="shadow-pg-"))
        self.data_dir = self.base_dir / "data"
        self.log_file = self.base_dir / "server.log"
        self._as_postgres = os.geteuid() == 0
        self._initialised = False
        self.running = False

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        if not self._initialised:
            self._initdb()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.base_dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", str(START_TIMEOUT_S),
            "-o", options, "start",
        )  # fmt: skip
        self.running = True

    def stop(self) -> None:
        """Fast shutdown: open sessions are disconnected, as when an operator restarts the server."""
        if self.running:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
            self.running = False

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        self._admin_sql(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def _initdb(self) -> None:
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.base_dir, user.pw_uid, user.pw_gid)
        self._run(
            "initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--locale=C", "--no-sync",
        )  # fmt: skip
        self._initialised = True

    def _admin_sql(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin_dir / program), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(
            command, cwd=self.base_dir, capture_output=True, text=True, timeout=START_TIMEOUT_S + 30
        )
        if result.returncode != 0:
            log = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(
                f"{program} failed with exit code {result.returncode}:\n{result.stdout}{result.stderr}\n{log}"
            )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on PATH or under /usr/lib/postgresql")
    server = PostgresServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the shared server for one test."""
    if not postgres_server.running:  # a previous test stopped it and failed before starting it again
        postgres_server.start()
    url = postgres_server.create_database()
    yield url
    if not postgres_server.running:
        postgres_server.start()
    postgres_server.drop_database(url)
