"""`shadow gate`: judge the candidate from scored pairs; exit 0 pass, 1 fail, 2 inconclusive, 3 could not run,
4 a bad command line (`shadow.core.errors.ExitCode`).

shadow gate --input scores.jsonl [--experiment NAME] [--policy gate.toml] [--since 15m | --last 2000]
            [--segment lang=zh] [--json]
shadow gate --db postgresql+psycopg://... --experiment NAME
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from shadow.core.errors import UserError
from shadow.core.pairs import PairFormatError
from shadow.core.records import iter_json_objects
from shadow.core.timeparse import TimeFormatError, parse_duration
from shadow.core.verdicts import Verdict
from shadow.gate.judge import evaluate_gate
from shadow.gate.policy import load_policy
from shadow.gate.render import render_table


class GateInputError(UserError, ValueError):
    """Input the gate cannot read; the message says what to fix."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--db",
        metavar="URL",
        help="read scored pairs from the store at this database URL (default without --input: SHADOW_DB, "
        "else db in --config, else the store `shadow serve` writes)",
    )
    source.add_argument(
        "--input", metavar="FILE", help="read scored pairs from a scores JSONL (`shadow score`)"
    )
    parser.add_argument("--experiment", metavar="NAME", help="judge only this experiment's pairs")
    parser.add_argument(
        "--policy",
        metavar="FILE",
        help="gate policy TOML (default: the gate_policy setting, else the documented defaults)",
    )
    window = parser.add_mutually_exclusive_group()
    window.add_argument(
        "--since", metavar="DURATION", type=duration_argument, help="only pairs from the last 15m, 2h, 1d"
    )
    window.add_argument("--last", metavar="N", type=count_argument, help="only the latest N pairs")
    parser.add_argument(
        "--segment",
        metavar="KEY=VALUE",
        type=segment_argument,
        action="append",
        default=[],
        help="only pairs of this segment (repeatable); lang=zh|en is derived from the text when not a tag",
    )
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    """Judge and print; the exit code is the verdict's (`Verdict.exit_code`). A `UserError` (a policy,
    input file or database that cannot be used) propagates to `shadow.cli.main`, which prints it."""
    policy = load_policy(args.policy)
    segment = parse_segments(args.segment)
    records = list(_records(args))
    since: timedelta | None = args.since
    result = evaluate_gate(
        records, policy, segment=segment or None, since=since, last=args.last, experiment=args.experiment
    )
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print(render_table(result))
    return Verdict(result["verdict"]).exit_code


def duration_argument(text: str) -> timedelta:
    """`--since`: `shadow.core.timeparse.parse_duration`, its message shown by argparse."""
    try:
        return parse_duration(text)
    except TimeFormatError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def count_argument(text: str) -> int:
    """`--last`: a whole number of pairs, at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is not a number of pairs; give a whole number, at least 1"
        )
    return value


def segment_argument(text: str) -> str:
    """`--segment`: checked as KEY=VALUE when the command line is read."""
    try:
        parse_segments([text])
    except GateInputError:
        raise argparse.ArgumentTypeError(f"{text[:60]!r} must be KEY=VALUE, e.g. --segment lang=zh") from None
    return text


def parse_segments(items: list[str]) -> dict[str, str]:
    segment: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise GateInputError(f"--segment {item!r} must be KEY=VALUE, e.g. --segment lang=zh")
        segment[key.strip()] = value.strip()
    return segment


def read_scores_file(path: str | Path) -> Iterator[dict[str, Any]]:
    """The records of a scores JSONL. Bytes are read, and decoded a line at a time, so that a line that is
    not UTF-8 is named like any other bad line."""
    if Path(path).is_dir():
        raise GateInputError(f"cannot read {path}: it is a directory; check the --input path")
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise GateInputError(f"cannot read {path}: {exc.strerror}; check the --input path") from exc
    with handle:
        try:
            for _number, record in iter_json_objects(handle, source=str(path)):
                yield record
        except PairFormatError as exc:
            raise GateInputError(f"{exc}; is it a scores file from `shadow score`?") from exc


def _records(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    if args.input:
        return read_scores_file(args.input)
    if args.db:
        return _store_records(args.db, args.experiment)
    raise GateInputError("give the scored pairs with --input scores.jsonl or --db URL")


def _store_records(url: str, experiment: str | None) -> Iterator[dict[str, Any]]:
    try:
        from evaluators.store_mode import load_scored_pairs
        from shadow.store.database import describe_error, make_engine, redact_url
    except ImportError as exc:
        raise GateInputError(
            f"reading scored pairs from the store is not available in this build ({exc}); "
            "use `shadow export --scores` and --input instead"
        ) from exc
    from sqlalchemy.exc import SQLAlchemyError

    engine = make_engine(url)  # a StoreError names the URL's problem
    try:
        return iter(list(load_scored_pairs(engine, experiment)))
    except SQLAlchemyError as exc:
        raise GateInputError(
            f"cannot read scored pairs from the database {redact_url(url)!r} ({describe_error(exc)}); "
            f"check that it is reachable and migrated (`shadow db upgrade --db {redact_url(url)}`)"
        ) from exc
    finally:
        engine.dispose()


__all__ = [
    "GateInputError",
    "add_arguments",
    "count_argument",
    "duration_argument",
    "parse_segments",
    "read_scores_file",
    "run",
]
