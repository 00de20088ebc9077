"""The `shadow` command: one entry point, one subcommand per step of the loop.

    serve     mirror live traffic and capture pairs         -> shadow.sidecar.server
    db        upgrade / downgrade / check the store schema  -> shadow.store.database
    import    load a pairs JSONL file into the store        -> shadow.store.jsonl
    export    write the store's pairs (or scores) to a file -> shadow.store.jsonl / reports.export_table
    score     run the evaluators over pairs                 -> shadow.score_command
    gate      pass / fail / inconclusive, with reasons      -> shadow.gate.command
    report    the self-contained HTML divergence report     -> reports.command
    replay    send captured prompts to another candidate    -> shadow.replay
    simulate  a stand-in OpenAI model server for trying it  -> shadow.simulator

Heavy imports (torch, pandas) happen inside the subcommand that needs them, so `shadow serve` starts fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from shadow.cli_settings import add_settings_flags, settings_from
from shadow.core.errors import UserError
from shadow.core.logs import configure_logging
from shadow.core.settings import SettingsError, admin_token_required, default_of

EXIT_USAGE = 2


# --- subcommands ---------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from shadow.sidecar.server import serve_forever

    settings = settings_from(args)
    if not settings.primary:
        raise UserError(
            "--primary is required: the OpenAI base URL of the model your users get (ending in /v1)"
        )
    if not settings.candidate:
        raise UserError(
            "--candidate is required: the OpenAI base URL of the model to evaluate (ending in /v1)"
        )
    admin_token_required(settings)  # refuse an open admin listener without a token before anything starts
    with asyncio.Runner(loop_factory=_fast_event_loop()) as runner:
        runner.run(serve_forever(settings))
    return 0


def _fast_event_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (Linux, macOS): the proxy spends its time in per-chunk I/O."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def cmd_db(args: argparse.Namespace) -> int:
    from shadow.store import database

    settings = settings_from(args)
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
        from shadow.core.pairs import utc_now
        from shadow.gate.command import parse_duration
        from shadow.store.retention import count_older, prune_pairs

        try:
            cutoff = utc_now() - parse_duration(args.older_than)
        except argparse.ArgumentTypeError as exc:
            raise UserError(f"--older-than: {exc}") from exc
        engine = database.make_engine(settings.db)
        if args.dry_run:
            count = count_older(engine, cutoff, experiment=args.experiment)
            print(f"would delete {count} pairs created before {cutoff.isoformat()}")
        else:
            count = prune_pairs(engine, cutoff, experiment=args.experiment)
            print(f"deleted {count} pairs created before {cutoff.isoformat()} (and their scores)")
        engine.dispose()
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from shadow.store import database, jsonl

    settings = settings_from(args)
    database.upgrade(settings.db)
    report = jsonl.import_pairs(
        database.make_engine(settings.db), args.input, experiment=args.into_experiment
    )
    print(report.summary() if hasattr(report, "summary") else report)
    return 0 if not getattr(report, "rejected", 0) else 1


def cmd_export(args: argparse.Namespace) -> int:
    from shadow.store import database, jsonl

    settings = settings_from(args)
    engine = database.make_engine(settings.db)
    experiment = args.experiment if args.experiment is not None else None
    if args.scores:
        from evaluators.store_mode import load_scored_pairs
        from reports.export_table import write_table

        records = list(load_scored_pairs(engine, experiment))
        write_table(records, args.output, args.format)
        print(f"wrote {len(records)} scored pairs to {args.output}")
        return 0
    if args.format != "jsonl":
        raise UserError(
            "--format csv/parquet needs --scores (a flat table of scored pairs); pairs export as jsonl"
        )
    count = jsonl.export_pairs(engine, args.output, experiment=experiment)
    print(f"wrote {count} pairs to {args.output}", file=sys.stderr)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from shadow.simulator import SimulatedModel, start_simulator

    model = SimulatedModel(
        name=args.model,
        behaviour=args.behaviour,
        first_byte_delay_s=args.delay,
        chunk_delay_s=args.chunk_delay,
        variation=args.variation,
        seed=args.seed,
        loop_share=args.loop_share,
        sentences=args.sentences,
    )

    async def run() -> None:
        host, _, port = args.listen.rpartition(":")
        runner, url = await start_simulator(model, host or "127.0.0.1", int(port))
        print(f"simulated model {model.name!r} ({model.behaviour}) at {url}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


def _delegate(module: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        import importlib

        return int(importlib.import_module(module).run(args))

    return run


# --- the parser ----------------------------------------------------------------------------------------


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser. Delegated subcommands import their module (torch, scipy, matplotlib...) only when
    `command` names them, so `shadow serve` and `shadow --help` start in a fraction of a second."""
    parser = argparse.ArgumentParser(
        prog="shadow",
        description="Mirror real chat traffic to a candidate LLM, score how it diverges, and gate its promotion.",
    )
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (flat keys or [tables]).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the mirroring sidecar", description=cmd_serve.__doc__)
    serve.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="TOML settings file.")
    add_settings_flags(serve)
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="manage the store's schema")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    for name, help_text, default_rev in (
        ("upgrade", "apply migrations (default: to the newest)", "head"),
        ("downgrade", "revert migrations to REVISION ('base' = empty)", None),
        ("check", "fail if the models and the migrations disagree", None),
        ("prune", "delete pairs (and their scores) older than a duration", None),
    ):
        action = db_sub.add_parser(name, help=help_text)
        if name in ("upgrade", "downgrade"):
            action.add_argument("revision", nargs="?" if default_rev else None, default=default_rev)
        if name == "prune":
            action.add_argument("--older-than", required=True, metavar="DURATION", help="e.g. 30d, 12h")
            action.add_argument("--experiment", help="only this experiment (default: all)")
            action.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
        action.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS)
        add_settings_flags(action, ["db"])
        action.set_defaults(func=cmd_db)

    imp = sub.add_parser("import", help="load pairs from a JSONL file into the store")
    imp.add_argument("input", help="pairs JSONL file (the format in the README)")
    imp.add_argument("--into-experiment", help="override the experiment name of every imported pair")
    imp.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS)
    add_settings_flags(imp, ["db"])
    imp.set_defaults(func=cmd_import)

    exp = sub.add_parser("export", help="write the store's pairs (or scored pairs) to a file")
    exp.add_argument("--output", "-o", required=True, help="file to write ('-' for standard output)")
    exp.add_argument("--experiment", help="only this experiment (default: all)")
    exp.add_argument("--scores", action="store_true", help="export scored pairs as a flat table")
    exp.add_argument("--format", choices=("jsonl", "csv", "parquet"), default="jsonl")
    exp.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS)
    add_settings_flags(exp, ["db"])
    exp.set_defaults(func=cmd_export)

    for name, module, help_text in (
        ("score", "shadow.score_command", "score pairs with the evaluators (file or store mode)"),
        ("gate", "shadow.gate.command", "judge the candidate: pass / fail / inconclusive"),
        ("report", "reports.command", "write the self-contained HTML divergence report"),
        ("replay", "shadow.replay", "send captured prompts to another candidate, offline"),
    ):
        _add_delegated(sub, name, module, help_text, load=name == command)

    sim = sub.add_parser(
        "simulate", help="serve a simulated OpenAI-compatible model (for trying shadow-eval)"
    )
    sim.add_argument("--listen", default="127.0.0.1:8001", help="HOST:PORT (default: %(default)s)")
    sim.add_argument("--model", default="sim-model", help="model name it reports")
    sim.add_argument(
        "--behaviour", default="normal", help="normal, loop, verbose, hang, error500, garbage, ..."
    )
    sim.add_argument("--delay", type=float, default=0.0, help="seconds before the first byte")
    sim.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between streamed chunks")
    sim.add_argument("--variation", type=float, default=0.0, help="chance a sentence differs between calls")
    sim.add_argument("--loop-share", type=float, default=0.0, help="share of prompts answered with a loop")
    sim.add_argument("--sentences", type=int, default=4, help="sentences in a typical answer")
    sim.add_argument("--seed", type=int, default=0)
    sim.set_defaults(func=cmd_simulate)
    return parser


def _add_delegated(sub: Any, name: str, module: str, help_text: str, *, load: bool) -> None:
    import importlib

    command = sub.add_parser(name, help=help_text, description=help_text)
    if not load:
        return
    try:
        importlib.import_module(module).add_arguments(command)
    except ImportError as exc:
        command.set_defaults(func=_unavailable(name, exc))
        return
    command.set_defaults(func=_delegate(module))


def _unavailable(name: str, exc: ImportError) -> Callable[[argparse.Namespace], int]:
    def run(_args: argparse.Namespace) -> int:
        raise UserError(f"'shadow {name}' is not available in this installation: {exc}")

    return run


def _subcommand_of(argv: list[str]) -> str | None:
    """The first positional argument, skipping the value of a top-level `--config FILE`."""
    skip_next = False
    for arg in argv:
        if skip_next:
            skip_next = False
        elif arg == "--config":
            skip_next = True
        elif not arg.startswith("-"):
            return arg
    return None


def _log_level(args: argparse.Namespace) -> str:
    """--log-level where the command has the flag, else SHADOW_LOG_LEVEL or the TOML file's log_level."""
    flag = getattr(args, "log_level", None)
    if flag:
        return str(flag)
    try:
        return settings_from(args).log_level
    except SettingsError:  # a command that reads its settings says what is wrong with them itself
        return os.environ.get("SHADOW_LOG_LEVEL") or default_of("log_level")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_subcommand_of(argv))
    args = parser.parse_args(argv)
    if not hasattr(args, "config"):
        args.config = None
    try:
        configure_logging(_log_level(args))
        return int(args.func(args))
    except (UserError, SettingsError) as exc:
        print(f"shadow {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from shadow.store.database import StoreError

        if isinstance(exc, StoreError):
            print(f"shadow {args.command}: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        raise


if __name__ == "__main__":
    sys.exit(main())
