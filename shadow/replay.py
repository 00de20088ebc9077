"""`shadow replay`: send captured prompts to another candidate, offline.

A team can test candidate C on last week's traffic without mirroring live: every pair's stored request
goes to C (bounded concurrency, the user's streaming choice kept so time to first token is measured),
and a new pair is written with the original primary answer as its baseline (and its secondary, so the
noise floor stays valid). Output is appended line by line and fsynced in batches; a re-run skips the
pairs already replayed, so an interrupted replay resumes where it stopped.

Requests were redacted before they were stored, so C sees the placeholders, not the personal data.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp

from evaluators.metrics import score_keys
from shadow.cli_settings import add_settings_flags, settings_from
from shadow.core.errors import UsageError, UserError
from shadow.core.pairs import Pair, PairFormatError, dumps, new_pair_id, utc_now
from shadow.core.records import iter_json_objects
from shadow.core.settings import Settings
from shadow.sidecar.http_headers import join_url
from shadow.sidecar.mirror import candidate_request_body
from shadow.sidecar.routes import MIRRORED_ROUTES
from shadow.sidecar.upstream import call_and_capture

log = logging.getLogger(__name__)

FSYNC_EVERY = 32


class ReplayError(UserError):
    """A problem with the replay's input or output; printed as one sentence."""


@dataclass
class ReplayReport:
    replayed: int = 0
    already_done: int = 0
    skipped_no_request: int = 0
    candidate_errors: int = 0

    def summary(self) -> str:
        return (
            f"replayed {self.replayed} pairs ({self.candidate_errors} candidate errors); "
            f"{self.already_done} already in the output; {self.skipped_no_request} without a replayable request"
        )


def already_replayed(output: Path) -> set[str]:
    """Ids of original pairs already in the output. A torn last line (crash mid-write) is cut off."""
    if not output.exists():
        return set()
    data = output.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        log.warning(
            "%s ends in a partial line (an interrupted run); it is removed and replayed again", output
        )
        with output.open("r+b") as handle:
            handle.truncate(len(complete))
    done = set()
    for _number, obj in iter_json_objects(complete.splitlines(), source=str(output)):
        if obj.get("replayed_from"):
            done.add(str(obj["replayed_from"]))
    return done


def read_pairs(path: Path) -> Iterator[Pair]:
    with path.open("rb") as handle:  # decoded a line at a time: a line that is not UTF-8 is named
        for number, obj in iter_json_objects(handle, source=str(path)):
            try:
                yield Pair.from_json(obj)
            except PairFormatError as exc:
                raise PairFormatError(f"{path} line {number}: {exc}") from exc


def replayed_pair(
    original: Pair, candidate_side: object, experiment: str, stale: frozenset[str] | None = None
) -> Pair:
    # A replayed pair has a new candidate, so the scores of the old one (`stale`: computed once per run
    # by the caller) no longer apply.
    stale = score_keys() if stale is None else stale
    extra = {k: v for k, v in original.extra.items() if k not in stale}
    extra.update({"replayed_from": original.id, "replayed_at": utc_now().isoformat()})
    return replace(
        original,
        id=new_pair_id(),
        experiment=experiment,
        candidate=candidate_side,  # type: ignore[arg-type]
        extra=extra,
    )


async def replay(
    input_path: Path, output_path: Path, settings: Settings, *, concurrency: int, experiment: str | None
) -> ReplayReport:
    report = ReplayReport()
    done = already_replayed(output_path)
    timeout = aiohttp.ClientTimeout(total=settings.candidate_timeout_s)
    headers = [("Content-Type", "application/json")]
    if settings.candidate_api_key:
        headers.append(("Authorization", f"Bearer {settings.candidate_api_key}"))
    paths = {route: path for path, route in MIRRORED_ROUTES.items()}
    queue: asyncio.Queue[Pair | None] = asyncio.Queue(maxsize=concurrency * 2)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    with output_path.open("a", encoding="utf-8") as out:
        unsynced = 0

        def write(pair: Pair) -> None:
            nonlocal unsynced
            out.write(dumps(pair) + "\n")
            out.flush()
            unsynced += 1
            if unsynced >= FSYNC_EVERY:
                os.fsync(out.fileno())
                unsynced = 0

        stale = score_keys()

        async def worker(session: aiohttp.ClientSession) -> None:
            while (pair := await queue.get()) is not None:
                # The route matters: only chat and completions streams take `stream_options`.
                body = candidate_request_body(pair.request, settings, pair.route)
                side = await call_and_capture(
                    session,
                    join_url(settings.candidate, paths.get(pair.route, "/chat/completions")),
                    body=json.dumps(body, ensure_ascii=False).encode(),
                    headers=headers,
                    route=pair.route,
                    timeout=timeout,
                    requested_model=body.get("model"),
                )
                report.candidate_errors += side.error is not None
                write(replayed_pair(pair, side, experiment or f"{pair.experiment}-replay", stale))
                report.replayed += 1
                if report.replayed % 25 == 0:
                    rate = report.replayed / (time.perf_counter() - started)
                    print(f"  replayed {report.replayed} pairs ({rate:.1f}/s)", file=sys.stderr, flush=True)

        async with aiohttp.ClientSession(trust_env=False) as session:
            workers = [asyncio.create_task(worker(session)) for _ in range(concurrency)]
            try:
                for pair in read_pairs(input_path):
                    if pair.id in done:
                        report.already_done += 1
                    elif not pair.request or pair.route not in paths:
                        report.skipped_no_request += 1
                    else:
                        await queue.put(pair)
            finally:
                for _ in workers:
                    await queue.put(None)
                await asyncio.gather(*workers, return_exceptions=True)
                with contextlib.suppress(OSError):
                    os.fsync(out.fileno())
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="pairs JSONL (from `shadow export` or a scores file)")
    parser.add_argument("--output", required=True, help="new pairs JSONL; appended to, and resumed from")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="requests in flight (default: %(default)s)"
    )
    parser.add_argument(
        "--experiment", help="experiment name of the new pairs (default: '<original>-replay')"
    )
    parser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS)
    add_settings_flags(
        parser,
        ["candidate", "candidate_model", "candidate_params", "candidate_api_key", "candidate_timeout_s"],
    )


def run(args: argparse.Namespace) -> int:
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    settings = settings_from(args)
    if not settings.candidate:
        raise ReplayError("--candidate is required: the OpenAI base URL of the model to replay against")
    input_path = Path(args.input)
    if input_path.is_dir():
        raise ReplayError(
            f"input {input_path} is a directory; give a pairs JSONL file (from `shadow export`)"
        )
    if not input_path.is_file():
        raise ReplayError(f"input file {input_path} does not exist; export pairs with `shadow export` first")
    if Path(args.output).is_dir():
        raise ReplayError(
            f"--output {args.output} is a directory; give the path of a JSONL file to append to"
        )
    try:
        report = asyncio.run(
            replay(
                input_path,
                Path(args.output),
                settings,
                concurrency=args.concurrency,
                experiment=args.experiment,
            )
        )
    except PairFormatError as exc:
        raise ReplayError(str(exc)) from exc
    print(report.summary(), file=sys.stderr)
    return 0


__all__ = ["ReplayError", "ReplayReport", "add_arguments", "already_replayed", "replay", "run"]
