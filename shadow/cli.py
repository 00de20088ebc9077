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

`main` is the one error boundary: a `shadow.core.errors.UserError` (a flag, file, setting, policy or
database the user can fix) becomes one line on stderr, `shadow <command>: error: <what to change>`, and its
`ExitCode`: 3 (could not run) or 4 (a bad command line, argparse's own errors included). The gate's 0/1/2
are its verdicts. Anything else is a bug and keeps its traceback.

Every command reads the same settings as `shadow serve` (`shadow.cli_settings`): `score`, `gate`,
`report`, `export` and `db` read the store at `--db`, else `SHADOW_DB`, else `db` of the `--config` file,
else the default, the file `shadow serve` writes.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from shadow.cli_settings import add_settings_flags, settings_from
from shadow.core.errors import ExitCode, UserError, one_line
from shadow.core.logs import configure_logging
from shadow.core.settings import (
    Settings,
    SettingsError,
)
from shadow.core.timeparse import TimeFormatError, parse_duration
from shadow.serve_command import cmd_serve, cmd_simulate
from shadow.store_commands import cmd_db, cmd_export, cmd_import, resolve_settings


class ShadowArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad command line exits `ExitCode.USAGE` (4): argparse's own 2 would read as the gate's
    "inconclusive". The output is argparse's: the usage line, then `shadow <command>: error: <message>`."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message}\n")


# --- subcommands ---------------------------------------------------------------------------------------


def _delegate(module: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        import importlib

        return int(importlib.import_module(module).run(args))

    return run


# --- the parser ----------------------------------------------------------------------------------------


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser. Delegated subcommands import their module (torch, scipy, matplotlib...) only when
    `command` names them, so `shadow serve` and `shadow --help` start in a fraction of a second."""
    parser = ShadowArgumentParser(
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
            action.add_argument(
                "--older-than", required=True, metavar="DURATION", type=_duration, help="e.g. 30d, 12h"
            )
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
    exp.add_argument(
        "--format",
        choices=("jsonl", "csv", "parquet"),
        help="jsonl for pairs (the default); csv or parquet for --scores (default: by the --output suffix)",
    )
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
    sim.add_argument("--slice-bytes", type=int, default=None, help="write streams in slices of N bytes")
    sim.add_argument(
        "--tool-behaviour",
        default="right",
        choices=("right", "wrong_arguments", "wrong_function", "text_instead", "reorder_and_reformat"),
        help="how its tool calls differ from a correct model's (default: %(default)s)",
    )
    sim.add_argument(
        "--tool-error-share", type=float, default=1.0, help="share of tool turns given --tool-behaviour"
    )
    sim.add_argument("--refusal-share", type=float, default=0.0, help="share of prompts it refuses")
    sim.add_argument("--refuse-harmful", action="store_true", help="refuse prompts that ask for harm")
    sim.add_argument("--reasoning", action="store_true", help="stream reasoning before the answer")
    sim.add_argument("--no-usage", action="store_true", help="never report usage, even when asked")
    sim.set_defaults(func=cmd_simulate)
    return parser


def _add_delegated(sub: Any, name: str, module: str, help_text: str, *, load: bool) -> None:
    import importlib

    command = sub.add_parser(name, help=help_text, description=help_text)
    if not load:
        return
    importlib.import_module(module).add_arguments(command)
    if "--config" not in command._option_string_actions:
        command.add_argument(
            "--config", metavar="FILE", default=argparse.SUPPRESS, help="TOML settings file (as for serve)."
        )
    command.set_defaults(func=_delegate(module))


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


def _duration(text: str) -> Any:
    """A DURATION flag: `shadow.core.timeparse.parse_duration`, its message shown by argparse."""
    try:
        return parse_duration(text)
    except TimeFormatError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _log_level(args: argparse.Namespace) -> str:
    """--log-level where the command has the flag, else SHADOW_LOG_LEVEL or the TOML file's log_level."""
    flag = getattr(args, "log_level", None)
    if flag:
        return str(flag)
    try:
        return settings_from(args).log_level
    except SettingsError:  # a command that reads its settings says what is wrong with them itself
        return os.environ.get("SHADOW_LOG_LEVEL") or Settings().log_level


# --- the store a command reads ---------------------------------------------------------------------------


# --- the boundary ------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit status is an `ExitCode` (README, "Exit codes")."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_subcommand_of(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0), or a bad command line (4), already printed by argparse
        return exc.code if isinstance(exc.code, int) else ExitCode.USAGE
    if not hasattr(args, "config"):
        args.config = None
    name = " ".join(part for part in (args.command, getattr(args, "db_command", None)) if part)
    try:
        configure_logging(_log_level(args))
        resolve_settings(args)
        return int(args.func(args))
    except UserError as exc:
        print(f"shadow {name}: error: {one_line(exc)}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # `shadow export -o - | head`: the reader has what it wanted. Point stdout at /dev/null so the
        # interpreter's final flush does not fail again, as the Python docs advise.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    except OSError as exc:
        if exc.filename is None:  # not about a path the user gave: a bug, or the machine; keep the traceback
            raise
        print(f"shadow {name}: error: cannot use {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return ExitCode.COULD_NOT_RUN


if __name__ == "__main__":
    sys.exit(main())
