"""`shadow score`: run the evaluators over a pairs file or over the pair store.

File mode (``--input pairs.jsonl --output scores.jsonl``) writes each input pair with the evaluators' objects
added (see `evaluators.runner`), a chunk at a time, into a temporary file that replaces the output only when
every line was scored: a bad line stops the run with its line number and leaves no half-written output.

Store mode (``--db URL``) scores the pairs the current evaluator versions have not scored yet and stores one
row per pair and evaluator (see `evaluators.store_mode`); ``--follow`` keeps polling for new pairs until
Ctrl-C or SIGTERM, finishing the chunk in hand first. Each chunk is claimed first, so several scorers on one
store share the work; a dead scorer's claims lapse after `score_claim_ttl_s` (`shadow.store.claims`).

``--engine ray`` runs the same scoring on Ray Data (see `evaluators.ray_engine`): a local Ray by default, or
the cluster at ``--address``; ``--input`` may then also be a directory of JSONL or Parquet shards.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from evaluators.registry import EVALUATORS, UnknownEvaluatorError, parse_names
from evaluators.runner import (
    DEFAULT_CHUNK_SIZE,
    DeviceError,
    EncoderLoadError,
    EvaluatorFailedError,
    ScoreRunner,
    score_lines,
)
from shadow.cli_settings import add_settings_flags
from shadow.core.errors import ExitCode, UserError
from shadow.core.pairs import PairFormatError
from shadow.core.settings import load_settings


class ScoreCommandError(UserError):
    """A problem the user can fix; the message is one sentence. `exit_code` is the exit status:
    `ExitCode.USAGE` for a command line that does not make sense, else `ExitCode.COULD_NOT_RUN`."""

    def __init__(self, message: str, code: ExitCode = ExitCode.COULD_NOT_RUN) -> None:
        super().__init__(message)
        self.exit_code = code


def _usage(message: str) -> ScoreCommandError:
    return ScoreCommandError(message, ExitCode.USAGE)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("what to score (give --input and --output, or --db)")
    source.add_argument("--input", metavar="PATH", help="pairs JSONL file to score ('-' reads stdin)")
    source.add_argument("--output", metavar="PATH", help="scores JSONL file to write (replaced atomically)")
    source.add_argument(
        "--db",
        metavar="URL",
        help="pair store URL (sqlite:///path or postgresql://...); without --input/--output the default is "
        "SHADOW_DB, else db in --config, else the store `shadow serve` writes",
    )
    source.add_argument("--experiment", metavar="NAME", help="store mode: only this experiment's pairs")
    source.add_argument(
        "--follow", action="store_true", help="store mode: keep scoring new pairs until stopped"
    )
    source.add_argument(
        "--interval", type=float, default=10.0, metavar="SECONDS", help="--follow: seconds between polls"
    )
    add_settings_flags(parser, ["score_claim_ttl_s"])
    how = parser.add_argument_group("how to score")
    how.add_argument(
        "--evaluators",
        default=",".join(EVALUATORS),
        metavar="NAMES",
        help=f"comma-separated evaluators to run (default: {','.join(EVALUATORS)})",
    )
    how.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (for the encoder)")
    how.add_argument("--encoder", metavar="NAME_OR_PATH", help="sentence-transformers model instead of USE")
    how.add_argument(
        "--encoder-backend",
        choices=("auto", "torch", "onnx", "onnx-int8"),
        default="auto",
        help="how the default encoder runs: auto (onnx on a CPU, torch on a GPU), torch, onnx, onnx-int8",
    )
    how.add_argument("--batch-size", type=int, default=64, help="texts per encoder batch")
    how.add_argument(
        "--chunk-size",
        type=int,
        default=DEFAULT_CHUNK_SIZE,
        help="pairs read, scored and written at a time (bounds memory)",
    )
    how.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="score here, or on Ray (needs the ray extra)",
    )
    how.add_argument(
        "--address", metavar="ADDR", help="--engine ray: 'auto' or ray://host:port (default: a local Ray)"
    )
    how.add_argument(
        "--ray-workers", type=int, default=1, metavar="N", help="--engine ray: encoder actors / CPU tasks"
    )


def run(args: argparse.Namespace) -> int:
    """Score; a `ScoreCommandError` (or any `UserError`) propagates to `shadow.cli.main`, which prints it as
    one line and exits with its `exit_code`."""
    file_mode = args.input is not None or args.output is not None
    if file_mode == (args.db is not None):
        raise _usage("give either --input and --output (file mode) or --db (store mode)")
    if file_mode and (args.input is None or args.output is None):
        raise _usage("file mode needs both --input PATH and --output PATH")
    if file_mode and (args.follow or args.experiment):
        raise _usage("--follow and --experiment apply to store mode (--db) only")
    if args.batch_size < 1 or args.chunk_size < 1:
        raise _usage("--batch-size and --chunk-size must be at least 1")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", args.device.strip().lower()):
        raise _usage(f"--device must be auto, cpu, cuda or cuda:N, not {args.device!r}")
    if not args.interval > 0 or args.interval == float("inf"):
        raise _usage("--interval must be a positive number of seconds")
    try:
        names = parse_names(args.evaluators)
    except UnknownEvaluatorError as exc:
        raise _usage(str(exc)) from exc
    if args.engine == "ray":
        return _score_with_ray(args, names, file_mode)
    if file_mode and args.input != "-":
        _check_input_file(Path(args.input))
    if file_mode and args.output != "-":
        _check_output_path(Path(args.output))
    runner = _build_runner(args, names)
    if file_mode:
        return _score_file(args, runner)
    return _score_store(args, runner)


def _build_runner(args: argparse.Namespace, names: list[str]) -> ScoreRunner:
    try:
        return ScoreRunner.build(
            names,
            device=args.device,
            batch_size=args.batch_size,
            encoder_name=args.encoder,
            encoder_backend=args.encoder_backend,
        )
    except (UnknownEvaluatorError, DeviceError) as exc:
        raise ScoreCommandError(str(exc)) from exc
    except EncoderLoadError as exc:
        raise ScoreCommandError(f"{exc}; run scripts/setup to build it, or pass --encoder") from exc


def _check_input_file(path: Path) -> None:
    if path.is_dir():
        raise ScoreCommandError(f"input {path} is a directory; give the path of a pairs JSONL file")
    if not path.is_file():
        raise ScoreCommandError(f"input file {path} does not exist; give the path of a pairs JSONL file")


def _check_output_path(output: Path) -> None:
    if output.is_dir():
        raise _usage(f"--output {output} is a directory; give the path of the scores file to write")
    if not output.parent.is_dir():
        raise ScoreCommandError(f"the directory of --output ({output.parent}) does not exist")


# --- file mode -----------------------------------------------------------------------------------------


def _score_file(args: argparse.Namespace, runner: ScoreRunner) -> int:
    output = Path(args.output)
    started = time.monotonic()
    count = 0
    with contextlib.ExitStack() as stack:
        source = sys.stdin.buffer if args.input == "-" else stack.enter_context(open(args.input, "rb"))
        total = None if args.input == "-" else os.fstat(source.fileno()).st_size
        bar = stack.enter_context(_progress(total=total, unit="B", unit_scale=True, desc="scoring"))
        lines = score_lines(_read_lines(source, bar), runner, chunk_size=args.chunk_size)
        try:
            if args.output == "-":  # a pipe: lines go out as they are scored, nothing to replace
                for line in lines:
                    sys.stdout.write(_writable(line) + "\n")
                    count += 1
            else:
                count = _write_atomically(output, lines)
        except PairFormatError as exc:
            raise ScoreCommandError(f"{args.input} {exc}; nothing was written to {output}") from exc
        except EvaluatorFailedError as exc:
            raise ScoreCommandError(f"{exc}; nothing was written to {output}") from exc
        except KeyboardInterrupt as exc:
            raise ScoreCommandError(
                f"interrupted; nothing was written to {output}", ExitCode.INTERRUPTED
            ) from exc
    _report(count, started, runner.versions, f"-> {args.output}")
    return ExitCode.OK


def _write_atomically(output: Path, lines: Iterator[str]) -> int:
    """Write into a temporary sibling and rename it over `output` only once every line is written."""
    handle, temp_name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    count = 0
    try:
        # backslashreplace: a lone surrogate (a `\ud83d` escape in the input) goes out as that escape again,
        # which is the same JSON string; it is the only character UTF-8 cannot encode.
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n", errors="backslashreplace") as sink:
            for line in lines:
                sink.write(line)
                sink.write("\n")
                count += 1
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp_name, 0o666 & ~umask)  # mkstemp makes 0600; the output is an ordinary file
        os.replace(temp_name, output)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
    return count


def _writable(line: str) -> str:
    """The line with any lone surrogate as its JSON escape, so that a UTF-8 stream can take it."""
    return line if line.isascii() else line.encode("utf-8", "backslashreplace").decode("utf-8")


def _read_lines(source: IO[bytes], bar: Any) -> Iterator[bytes]:
    for line in source:
        bar.update(len(line))
        yield line


# --- store mode ----------------------------------------------------------------------------------------


def _score_store(args: argparse.Namespace, runner: ScoreRunner) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from evaluators import store_mode
    from shadow.store.claims import ClaimLease
    from shadow.store.database import describe_error, make_engine, redact_url

    url = redact_url(args.db)
    ttl_s = _claim_ttl_s(args)
    engine = make_engine(args.db)  # a StoreError names the URL's problem
    started = time.monotonic()
    stop = threading.Event()
    try:
        with ClaimLease(engine, ttl_s=ttl_s) as lease:
            if args.follow:
                bar = _progress(total=None, unit="pair", desc="scoring (following)")
                with bar, _stop_on_signals(stop):
                    count = store_mode.follow(
                        engine,
                        runner,
                        stop=stop,
                        interval_s=args.interval,
                        experiment=args.experiment,
                        chunk_size=args.chunk_size,
                        on_chunk=bar.update,
                        lease=lease,
                    )
            else:
                pending = store_mode.count_unscored(engine, runner.versions, experiment=args.experiment)
                bar = _progress(total=pending, unit="pair", desc="scoring")
                with bar, _stop_on_signals(stop):
                    count = store_mode.score_pending(
                        engine,
                        runner,
                        experiment=args.experiment,
                        chunk_size=args.chunk_size,
                        stop=stop,
                        on_chunk=bar.update,
                        lease=lease,
                    )
    except SQLAlchemyError as exc:
        raise ScoreCommandError(
            f"the pair store at {url} failed ({describe_error(exc)}); "
            f"check that it is reachable and migrated (`shadow db upgrade --db {url}`)"
        ) from exc
    except EvaluatorFailedError as exc:
        raise ScoreCommandError(f"{exc}; the chunks scored before it are stored") from exc
    finally:
        engine.dispose()
    _report(count, started, runner.versions, f"-> {url}")
    return ExitCode.OK


def _claim_ttl_s(args: argparse.Namespace) -> float:
    """`score_claim_ttl_s` from the flag, else SHADOW_SCORE_CLAIM_TTL_S, else --config, else its default."""
    flag = getattr(args, "score_claim_ttl_s", None)
    settings = load_settings(config_path=getattr(args, "config", None), flags={"score_claim_ttl_s": flag})
    return settings.score_claim_ttl_s


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C or SIGTERM sets `stop`: the chunk in hand is finished and stored, then the run ends. A second
    Ctrl-C interrupts at once (the open chunk's transaction is rolled back)."""

    def handle(signum: int, frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    previous: dict[int, Any] = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handle)
    except ValueError:  # not the main thread (an embedding caller): signals stay theirs
        pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- the ray engine ------------------------------------------------------------------------------------


def _score_with_ray(args: argparse.Namespace, names: list[str], file_mode: bool) -> int:
    """Score on Ray Data; the output (a file replaced atomically, or store rows) is the local engine's."""
    if args.follow:
        raise _usage("--follow is not supported with --engine ray; run it again instead")
    if args.ray_workers < 1:
        raise _usage("--ray-workers must be at least 1")
    if file_mode and (args.input == "-" or not Path(args.input).exists()):
        raise ScoreCommandError(
            "--engine ray reads --input from a file or directory of JSONL / Parquet shards"
        )
    try:
        from evaluators import ray_engine
    except ModuleNotFoundError as exc:
        raise ScoreCommandError(
            f"--engine ray needs Ray ({exc}); install it with: pip install 'shadow-eval[ray]'"
        ) from exc
    options = ray_engine.RayOptions(
        names=tuple(names),
        device=args.device,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        encoder_name=args.encoder,
        workers=args.ray_workers,
    )
    versions = ray_engine.versions_of(names)
    claim_ttl_s = None if file_mode else _claim_ttl_s(args)  # a bad setting fails before Ray starts
    started = time.monotonic()
    try:
        with ray_engine.ray_session(args.address):
            if file_mode:
                output = Path(args.output)
                if args.output != "-" and not output.parent.is_dir():
                    raise ScoreCommandError(f"the directory of --output ({output.parent}) does not exist")
                stats = ray_engine.RayRunStats()
                lines = ray_engine.score_files([args.input], options, stats)
                if args.output == "-":
                    sys.stdout.writelines(line + "\n" for line in lines)
                    count = stats.pairs
                else:
                    count = _write_atomically(output, lines)
                where = f"-> {args.output}"
            else:
                from shadow.store.database import redact_url

                count = ray_engine.score_store(
                    args.db, options, experiment=args.experiment, claim_ttl_s=claim_ttl_s
                )
                where = f"-> {redact_url(args.db)}"
    except (PairFormatError, EvaluatorFailedError, ValueError, RuntimeError) as exc:
        nothing = (
            f"; nothing was written to {args.output}"
            if file_mode
            else "; the batches scored before it are stored"
        )
        raise ScoreCommandError(f"{exc}{nothing}") from exc
    _report(count, started, versions, where)
    return ExitCode.OK


# --- shared --------------------------------------------------------------------------------------------


def _progress(**kwargs: Any) -> Any:
    """A tqdm bar on stderr when it is a terminal; otherwise a silent stand-in with the same methods."""
    from tqdm import tqdm

    return tqdm(file=sys.stderr, disable=not sys.stderr.isatty(), **kwargs)


def _report(count: int, started: float, versions: dict[str, str], where: str) -> None:
    elapsed = max(time.monotonic() - started, 1e-9)
    named = ", ".join(f"{name} {version}" for name, version in versions.items())
    print(
        f"shadow score: scored {count} pairs with {named} {where} ({count / elapsed:.1f} pairs/s)",
        file=sys.stderr,
    )


__all__ = ["add_arguments", "run"]
