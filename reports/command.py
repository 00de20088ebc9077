"""`shadow report`: the page a release manager opens before saying yes to the candidate.

    shadow report --input scores.jsonl --output report.html
    shadow report --db postgresql://... --experiment exp-1 --output report.html
    shadow report --input scores.jsonl --format json --output report.json

Reads scored pairs (from `shadow score`'s JSONL or the store), asks the gate for its verdict (the same judge
as `shadow gate`), and writes one self-contained HTML file, or the report's data as JSON for other tools.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from reports.build import TABLE_CAP, ReportOptions, build_report
from reports.render import render_report
from shadow.core.errors import UsageError, UserError
from shadow.core.pairs import PairFormatError
from shadow.core.records import iter_json_objects


class ReportError(UserError):
    """A problem the user can fix; the message says what to do (exit `ExitCode.COULD_NOT_RUN`)."""


class ReportUsageError(ReportError, UsageError):
    """A command line that does not make sense (exit `ExitCode.USAGE`)."""


NEEDS_EXPERIMENT = (
    "--db needs --experiment NAME (the experiment to report on; the store is --db, else SHADOW_DB, "
    "else db in --config)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--input", metavar="PATH", help="scored pairs as JSONL (from `shadow score`); - for stdin"
    )
    source.add_argument(
        "--db",
        metavar="URL",
        help="SQLAlchemy URL of the pair store (needs --experiment); default: SHADOW_DB, db in --config, "
        "else the store `shadow serve` writes",
    )
    parser.add_argument("--experiment", metavar="NAME", help="experiment to report on (required with --db)")
    parser.add_argument("--output", "-o", metavar="PATH", required=True, help="file to write")
    parser.add_argument(
        "--format", choices=("html", "json"), default="html", help="html: the page (default); json: its data"
    )
    parser.add_argument("--policy", metavar="PATH", help="gate policy file, as for `shadow gate`")
    parser.add_argument(
        "--sample-rate", type=float, metavar="SHARE", help="share of users mirrored, shown in the header"
    )
    parser.add_argument(
        "--max-table-pairs",
        type=int,
        default=TABLE_CAP,
        metavar="N",
        help=f"pairs embedded in the worst-pairs table (default {TABLE_CAP}); statistics use all pairs",
    )


def run(args: argparse.Namespace) -> int:
    """Write the report. A `UserError` (a flag, input, policy or database that cannot be used) propagates to
    `shadow.cli.main`, which prints it as one line and exits with its code."""
    if args.max_table_pairs < 1:
        raise ReportUsageError("--max-table-pairs must be at least 1")
    if args.sample_rate is not None and not 0 <= args.sample_rate <= 1:
        raise ReportUsageError("--sample-rate must be a share between 0 and 1, such as 0.1")
    if args.db and not args.experiment:
        raise ReportUsageError(NEEDS_EXPERIMENT)
    if Path(args.output).is_dir():
        raise ReportUsageError(f"--output {args.output} is a directory; give the path of the file to write")
    check_policy(args.policy)  # a bad policy file is reported before the pairs are read
    records = load_records(args)
    if not records:
        raise ReportError("no scored pairs to report on; check --input / --experiment")
    gate = judge(records, args.policy)
    options = ReportOptions(table_cap=args.max_table_pairs, sample_rate=args.sample_rate)
    if args.format == "json":
        text = json.dumps(build_report(records, gate, options), ensure_ascii=False, allow_nan=False)
    else:
        text = render_report(records, gate, options)
    write_atomically(Path(args.output), text)
    print(
        f"shadow report: wrote {args.output} ({len(records):,} pairs, verdict {gate['verdict']})",
        file=sys.stderr,
    )
    return 0


def load_records(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.db:
        if not args.experiment:
            raise ReportUsageError(NEEDS_EXPERIMENT)
        return load_from_db(args.db, args.experiment)
    if args.input is None:
        raise ReportUsageError(
            "give the scored pairs with --input scores.jsonl or --db URL --experiment NAME"
        )
    if args.input == "-":
        records = parse_jsonl(sys.stdin.buffer, "stdin")
    else:
        path = Path(args.input)
        if path.is_dir():
            raise ReportError(f"input {path} is a directory; pass the JSONL file written by `shadow score`")
        if not path.is_file():
            raise ReportError(f"input file {path} does not exist; pass the JSONL written by `shadow score`")
        with path.open("rb") as lines:  # decoded a line at a time: a line that is not UTF-8 is named
            records = parse_jsonl(lines, str(path))
    if args.experiment:
        records = [r for r in records if r.get("experiment") == args.experiment]
    return records


def parse_jsonl(lines: Iterable[str] | Iterable[bytes], source: str) -> list[dict[str, Any]]:
    """Scored pairs, one JSON object a line; blank lines are skipped."""
    records = []
    try:
        for number, record in iter_json_objects(lines, source=source):
            if "experiment" not in record:
                raise ReportError(
                    f"{source} line {number}: not a pair (a JSON object with an 'experiment' field)"
                )
            records.append(record)
    except PairFormatError as exc:
        raise ReportError(str(exc)) from exc
    return records


def load_from_db(url: str, experiment: str) -> list[dict[str, Any]]:
    from sqlalchemy.exc import SQLAlchemyError

    from evaluators.store_mode import load_scored_pairs
    from shadow.store.database import describe_error, make_engine, redact_url

    engine = make_engine(url)  # a StoreError names the URL's problem
    try:
        pairs = load_scored_pairs(engine, experiment)
        return [_as_record(pair) for pair in pairs]
    except SQLAlchemyError as exc:
        raise ReportError(
            f"could not read experiment {experiment!r} from the database {redact_url(url)!r} "
            f"({describe_error(exc)}); check that it is reachable and migrated (`shadow db upgrade`)"
        ) from exc
    finally:
        engine.dispose()


def check_policy(policy_path: str | None) -> None:
    """Load the policy file once, so that a bad one stops the report before any pair is read."""
    if not policy_path:
        return
    try:
        from shadow.gate import load_policy
    except ImportError:  # `judge` says so
        return
    load_policy(policy_path)  # a PolicyError names the key (or the TOML syntax) to fix


def judge(records: list[dict[str, Any]], policy_path: str | None) -> dict[str, Any]:
    """The gate's verdict on these pairs: the same judge and policy as `shadow gate`."""
    try:
        from shadow.gate import evaluate_gate, load_policy
    except ImportError as exc:
        raise ReportError(
            f"the gate (shadow.gate) cannot be loaded, so there is no verdict to show: {exc}"
        ) from exc
    policy = load_policy(policy_path) if policy_path else None
    return evaluate_gate(records, policy=policy)


def write_atomically(path: Path, text: str) -> None:
    """Write beside the target and rename, so a reader never opens half a report."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        # A lone surrogate (escaped in the input JSON) is written as its escape, not refused.
        temporary.write_text(text, encoding="utf-8", errors="backslashreplace")
        temporary.replace(path)
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _as_record(pair: Any) -> dict[str, Any]:
    if isinstance(pair, Mapping):
        return dict(pair)
    if hasattr(pair, "to_json"):
        return pair.to_json()
    raise ReportError(f"the store returned a {type(pair).__name__}, not a scored pair")


__all__ = [
    "ReportError",
    "ReportUsageError",
    "add_arguments",
    "check_policy",
    "judge",
    "load_records",
    "parse_jsonl",
    "run",
    "write_atomically",
]
