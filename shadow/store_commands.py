"""`shadow db`, `shadow import`, `shadow export`, and the store every reading command points at.

`resolve_settings` gives `score`, `gate` and `report` the store `shadow serve` writes (--db, SHADOW_DB,
`db` in --config, the default); `require_store` refuses one that is missing, unreachable or never migrated
before anything reads it, with one line that says what to do.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from shadow.cli_settings import settings_from
from shadow.core.errors import ExitCode, UsageError, UserError
from shadow.core.settings import (
    load_settings,
    read_toml,
)

STORE_HINTS = {
    "score": "give either --input and --output (file mode) or --db (store mode)",
    "gate": "give the scored pairs with --input scores.jsonl or --db URL",
    "report": "give the scored pairs with --input scores.jsonl or --db URL",
}
"""What to do when a command that can read a file instead finds no store where its settings point."""


def cmd_db(args: argparse.Namespace) -> int:
    from shadow.store import database

    settings = settings_from(args)
    if args.db_command in ("downgrade", "check", "prune"):
        require_store(args, settings.db, migrated=args.db_command == "prune")
    if args.db_command == "upgrade":
        database.upgrade(settings.db, args.revision)
        print(f"database {database.redact_url(settings.db)} is at {database.current_revision(settings.db)}")
    elif args.db_command == "downgrade":
        database.downgrade(settings.db, args.revision)
        print(f"database {database.redact_url(settings.db)} is at {database.current_revision(settings.db)}")
    elif args.db_command == "check":
        database.check(settings.db)
        print("models and migrations agree")
    elif args.db_command == "prune":
        from sqlalchemy.exc import SQLAlchemyError

        from shadow.core.pairs import utc_now
        from shadow.store.retention import count_older, prune_pairs

        cutoff = utc_now() - args.older_than
        engine = database.make_engine(settings.db)
        try:
            if args.dry_run:
                count = count_older(engine, cutoff, experiment=args.experiment)
                print(f"would delete {count} pairs created before {cutoff.isoformat()}")
            else:
                count = prune_pairs(engine, cutoff, experiment=args.experiment)
                print(f"deleted {count} pairs created before {cutoff.isoformat()} (and their scores)")
        except SQLAlchemyError as exc:
            raise _store_failed(settings.db, exc) from exc
        finally:
            engine.dispose()
    return ExitCode.OK


def cmd_import(args: argparse.Namespace) -> int:
    from shadow.store import database, jsonl

    settings = settings_from(args)
    source = Path(args.input)
    if source.is_dir():
        raise UserError(f"cannot import {source}: it is a directory; give a pairs JSONL file")
    if not source.is_file():
        raise UserError(f"cannot import {source}: no such file; give the path of a pairs JSONL file")
    database.upgrade(settings.db)  # only once the input is known to exist
    engine = database.make_engine(settings.db)
    try:
        report = jsonl.import_pairs(engine, source, experiment=args.into_experiment)
    finally:
        engine.dispose()
    print(report.summary())
    # Rejected lines are copied to <file>.rejected.jsonl, the good ones imported: done, but not all of it.
    return ExitCode.FAIL if report.rejected else ExitCode.OK


def cmd_export(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from shadow.store import database, jsonl

    table_format = _export_format(args)  # a bad --format / --output is told before the database is opened
    output = Path(args.output)
    if args.output != "-" and output.is_dir():
        raise UsageError(f"--output {output} is a directory; give the path of the file to write")
    if args.output != "-" and not args.scores and not output.parent.is_dir():
        raise UserError(f"the directory of --output ({output.parent}) does not exist")
    settings = settings_from(args)
    require_store(args, settings.db)
    engine = database.make_engine(settings.db)
    try:
        if table_format is not None:
            from evaluators.store_mode import load_scored_pairs
            from reports.export_table import scores_frame, write_table

            records = list(load_scored_pairs(engine, args.experiment))
            if args.output == "-":
                scores_frame(records).to_csv(sys.stdout, index=False)
            else:
                write_table(records, output, table_format)
            print(f"wrote {len(records)} scored pairs to {args.output}", file=sys.stderr)
            return ExitCode.OK
        target = sys.stdout if args.output == "-" else args.output
        count = jsonl.export_pairs(engine, target, experiment=args.experiment)
    except SQLAlchemyError as exc:
        raise _store_failed(settings.db, exc) from exc
    finally:
        engine.dispose()
    print(f"wrote {count} pairs to {args.output}", file=sys.stderr)
    return ExitCode.OK


def _export_format(args: argparse.Namespace) -> str | None:
    """The table format of `export --scores` (None: pairs as JSONL), from --format or the output's suffix."""
    if not args.scores:
        if args.format not in (None, "jsonl"):
            raise UsageError(
                f"--format {args.format} needs --scores (a flat table of scored pairs); pairs export as jsonl"
            )
        return None
    if args.format == "jsonl":
        raise UsageError(
            "--scores writes a flat table: use --format csv or --format parquet (pairs are jsonl)"
        )
    chosen = args.format or Path(args.output).suffix.lstrip(".").lower()
    if chosen not in ("csv", "parquet"):
        raise UsageError(
            f"--scores needs --format csv or --format parquet (or an --output ending in .csv or .parquet); "
            f"{args.output!r} names neither"
        )
    if args.output == "-" and chosen == "parquet":
        raise UsageError("parquet is a binary file: give --output FILE.parquet, or --format csv for stdout")
    return chosen


def _file_mode(args: argparse.Namespace) -> bool:
    if args.command == "score":
        return args.input is not None or args.output is not None
    return getattr(args, "input", None) is not None


def resolve_settings(args: argparse.Namespace) -> None:
    """`score`, `gate` and `report` read the settings `shadow serve` reads: unless they are given a file
    (--input), the store is --db, else SHADOW_DB, else `db` in --config, else the default; and the gate's
    policy is --policy, else the `gate_policy` setting (the one the sidecar's gate API judges with)."""
    if args.command not in STORE_HINTS:
        return
    settings = load_settings(config_path=args.config, flags={"db": args.db})
    if getattr(args, "policy", "absent") is None and settings.gate_policy:
        args.policy = settings.gate_policy
    if _file_mode(args):
        return
    args.db_source = _db_source(args)
    args.db = settings.db
    require_store(args, args.db)


def _db_source(args: argparse.Namespace) -> str:
    """Where the store's URL came from, for messages: the flag, the variable, the file or the default."""
    if getattr(args, "db_source", None):
        return str(args.db_source)
    if getattr(args, "db", None) is not None:
        return "--db"
    if os.environ.get("SHADOW_DB"):
        return "SHADOW_DB"
    if args.config and "db" in read_toml(args.config):
        return f"db in {args.config}"
    return "the default db"


def require_store(args: argparse.Namespace, url: str, *, migrated: bool = True) -> None:
    """Refuse, in one sentence, a store that cannot be read: a malformed URL, a SQLite file that does not
    exist (reading must not create an empty one), an unreachable server, or tables never migrated."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import DBAPIError

    from shadow.store import database

    source = _db_source(args)
    shown = database.redact_url(url)
    engine = database.make_engine(url, create_parent=False)  # a StoreError for a malformed URL; no I/O
    try:
        path = database.sqlite_file(engine)
        if path is not None and not path.exists():
            hint = STORE_HINTS.get(args.command, "give --db URL")
            where = f"there is no database at {path} ({source} {shown})"
            if source == "the default db":
                raise UsageError(f"{hint}: {where}; or set SHADOW_DB, or db in a --config file")
            raise UserError(
                f"{where}; check the URL, or create the store with `shadow db upgrade --db {shown}`"
            )
        if not migrated:
            return
        try:
            with engine.connect() as connection:
                tables = set(inspect(connection).get_table_names())
        except DBAPIError as exc:
            raise UserError(
                f"cannot reach the database {shown} ({source}): {database.describe_error(exc)}"
            ) from exc
        if not {"pairs", "scores"} <= tables:
            raise UserError(
                f"the database {shown} ({source}) has never been migrated: run `shadow db upgrade --db {shown}` "
                "(or `shadow serve` / `shadow import`, which do) first"
            )
    finally:
        engine.dispose()


def _store_failed(url: str, exc: BaseException) -> UserError:
    from shadow.store.database import describe_error, redact_url

    shown = redact_url(url)
    return UserError(
        f"the database {shown} failed ({describe_error(exc)}); check that it is reachable and at the newest "
        f"schema (`shadow db upgrade --db {shown}`)"
    )
