"""`shadow gate`: judge the candidate from scored pairs; exit 0 pass, 1 fail, 2 inconclusive, 3 could not run.

shadow gate --input scores.jsonl [--experiment NAME] [--policy gate.toml] [--since 15m | --last 2000]
            [--segment lang=zh] [--json]
shadow gate --db postgresql+psycopg://... --experiment NAME
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from shadow.core.pairs import PairFormatError
from shadow.core.records import iter_json_objects
from shadow.gate.judge import evaluate_gate
from shadow.gate.policy import PolicyError, load_policy
from shadow.gate.render import render_table

EXIT_CODES = {"pass": 0, "fail": 1, "inconclusive": 2}
EXIT_ERROR = 3

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class GateInputError(ValueError):
    """Input the gate cannot read; the message says what to fix."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--db", metavar="URL", help="read scored pairs from the store at this database URL")
    source.add_argument(
        "--input", metavar="FILE", help="read scored pairs from a scores JSONL (`shadow score`)"
    )
    parser.add_argument("--experiment", metavar="NAME", help="judge only this experiment's pairs")
    parser.add_argument(
        "--policy", metavar="FILE", help="gate policy TOML (default: the documented defaults)"
    )
    window = parser.add_mutually_exclusive_group()
    window.add_argument(
        "--since", metavar="DURATION", type=parse_duration, help="only pairs from the last 15m, 2h, 1d"
    )
    window.add_argument("--last", metavar="N", type=int, help="only the latest N pairs")
    parser.add_argument(
        "--segment",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="only pairs of this segment (repeatable); lang=zh|en is derived from the text when not a tag",
    )
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.policy)
        segment = parse_segments(args.segment)
        records = list(_records(args))
    except (PolicyError, GateInputError) as exc:
        print(f"shadow gate: {exc}", file=sys.stderr)
        return EXIT_ERROR
    since: timedelta | None = args.since
    result = evaluate_gate(
        records, policy, segment=segment or None, since=since, last=args.last, experiment=args.experiment
    )
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print(render_table(result))
    return EXIT_CODES[result["verdict"]]


def parse_duration(text: str) -> timedelta:
    match = _DURATION_RE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration; use e.g. 90s, 15m, 2h or 1d")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def parse_segments(items: list[str]) -> dict[str, str]:
    segment: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise GateInputError(f"--segment {item!r} must be KEY=VALUE, e.g. --segment lang=zh")
        segment[key.strip()] = value.strip()
    return segment


def read_scores_file(path: str | Path) -> Iterator[dict[str, Any]]:
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed by the with below
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
        from shadow.store import make_engine
    except ImportError as exc:
        raise GateInputError(
            f"reading scored pairs from the store is not available in this build ({exc}); "
            "use `shadow export --scores` and --input instead"
        ) from exc
    try:
        engine = make_engine(url)
    except Exception as exc:
        raise GateInputError(f"cannot open the database: {exc}") from exc
    try:
        return iter(list(load_scored_pairs(engine, experiment)))
    except Exception as exc:
        raise GateInputError(f"cannot read scored pairs from the database: {exc}") from exc
    finally:
        engine.dispose()


__all__ = ["EXIT_CODES", "add_arguments", "parse_duration", "parse_segments", "read_scores_file", "run"]
