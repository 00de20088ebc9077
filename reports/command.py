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
from shadow.core.pairs import PairFormatError
from shadow.core.records import iter_json_objects


class ReportError(Exception):
    """A problem the user can fix; the message says what to do."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--input", metavar="PATH", help="scored pairs as JSONL (from `shadow score`); - for stdin"
    )
    source.add_argument("--db", metavar="URL", help="SQLAlchemy URL of the pair store (needs --experiment)")
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
    try:
        if args.max_table_pairs < 1:
            raise ReportError("--max-table-pairs must be at least 1")
        if args.sample_rate is not None and not 0 <= args.sample_rate <= 1:
            raise ReportError("--sample-rate must be a share between 0 and 1, such as 0.1")
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
    except ReportError as exc:
        print(f"shadow report: {exc}", file=sys.stderr)
        return 2
    print(
        f"shadow report: wrote {args.output} ({len(records):,} pairs, verdict {gate['verdict']})",
        file=sys.stderr,
    )
    return 0


def load_records(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.db:
        if not args.experiment:
            raise ReportError("--db needs --experiment NAME (the experiment to report on)")
        return load_from_db(args.db, args.experiment)
    if args.input == "-":
        records = parse_jsonl(sys.stdin, "stdin")
    else:
        path = Path(args.input)
        if not path.is_file():
            raise ReportError(f"input file {path} does not exist; pass the JSONL written by `shadow score`")
        with path.open(encoding="utf-8") as lines:
            records = parse_jsonl(lines, str(path))
    if args.experiment:
        records = [r for r in records if r.get("experiment") == args.experiment]
    return records


def parse_jsonl(lines: Iterable[str], source: str) -> list[dict[str, Any]]:
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
    try:
        from evaluators.store_mode import load_scored_pairs
    except ImportError as exc:
        raise ReportError(
            "reading scored pairs from --db needs evaluators.store_mode, which this installation lacks; "
            "write them to JSONL with `shadow score` and pass --input instead"
        ) from exc
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    try:
        engine = create_engine(url)
    except (SQLAlchemyError, ValueError) as exc:
        raise ReportError(f"--db {url!r} is not a usable database URL ({exc})") from exc
    try:
        pairs = load_scored_pairs(engine, experiment)
        return [_as_record(pair) for pair in pairs]
    except SQLAlchemyError as exc:
        raise ReportError(f"could not read experiment {experiment!r} from the database: {exc}") from exc
    finally:
        engine.dispose()


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
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _as_record(pair: Any) -> dict[str, Any]:
    if isinstance(pair, Mapping):
        return dict(pair)
    if hasattr(pair, "to_json"):
        return pair.to_json()
    raise ReportError(f"the store returned a {type(pair).__name__}, not a scored pair")


__all__ = ["ReportError", "add_arguments", "judge", "load_records", "parse_jsonl", "run", "write_atomically"]
