"""`shadow serve` and `shadow simulate`: check the settings before anything is opened, then run.

`check_serve_settings` refuses a bad setting (a mirror window, a URL, a policy, a taken port) before any
socket or database is touched, so a mistake costs nothing and leaves nothing open.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
from collections.abc import Callable

from shadow.cli_settings import settings_from
from shadow.core.errors import ExitCode, UsageError, UserError
from shadow.core.settings import (
    Settings,
    SettingsError,
    admin_token_required,
    split_host_port,
)


def cmd_serve(args: argparse.Namespace) -> int:
    from shadow.sidecar.server import serve_forever

    settings = settings_from(args)
    check_serve_settings(settings)  # everything the worker will parse, before a socket or the database
    try:
        with asyncio.Runner(loop_factory=_fast_event_loop()) as runner:
            runner.run(serve_forever(settings))
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES) or exc.filename:
            raise
        raise UserError(
            f"cannot listen on {settings.listen}: {exc.strerror}; choose another --listen HOST:PORT"
        ) from exc
    return ExitCode.OK


def check_serve_settings(settings: Settings) -> None:
    """Raise a `UserError` for any setting `shadow serve` cannot use. The capture worker parses these in
    its own process, where a bad value would be a traceback (and a restart loop) after the user port and the
    database were already opened."""
    from urllib.parse import urlsplit

    from shadow.gate.policy import load_policy
    from shadow.sidecar.budget import MirrorWindow
    from shadow.sidecar.redact import Redactor
    from shadow.store.database import make_engine

    for name, what in (
        ("primary", "the OpenAI base URL of the model your users get (ending in /v1)"),
        ("candidate", "the OpenAI base URL of the model to evaluate (ending in /v1)"),
    ):
        value = getattr(settings, name)
        if not value:
            raise SettingsError(f"--{name} is required: {what}")
        try:
            parts = urlsplit(value)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
        except ValueError:  # a port that is not a number
            valid = False
        if not valid:
            raise SettingsError(
                f"{name} must be an http:// or https:// URL such as http://host:8000/v1, got {value!r}"
            )
    try:
        MirrorWindow.parse(settings.mirror_window)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    try:
        Redactor(settings.redact)
    except ValueError as exc:
        raise SettingsError(f"redact: {exc}") from None
    if settings.gate_policy:
        load_policy(settings.gate_policy)  # a PolicyError names the key or the file
    make_engine(settings.db, create_parent=False).dispose()  # a malformed URL or a missing driver; no I/O
    admin_token_required(settings)  # refuse an open admin listener without a token
    for name in ("listen", "admin_listen"):
        _check_port_free(getattr(settings, name), name)


def _check_port_free(address: str, name: str) -> None:
    """Bind and let go, so that a port in use is one sentence here rather than a failure in the worker."""
    import socket

    host, port = split_host_port(address, name)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        socket.create_server((host, port), family=family).close()
    except OSError as exc:
        flag = "--" + name.replace("_", "-")
        raise SettingsError(
            f"cannot listen on {address} ({name}): {exc.strerror or exc}; choose another {flag} HOST:PORT"
        ) from None


def _fast_event_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (Linux, macOS): the proxy spends its time in per-chunk I/O."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def cmd_simulate(args: argparse.Namespace) -> int:
    from shadow.simulator import BEHAVIOURS, SimulatedModel, start_simulator

    model = SimulatedModel(
        name=args.model,
        behaviour=args.behaviour,
        first_byte_delay_s=args.delay,
        chunk_delay_s=args.chunk_delay,
        variation=args.variation,
        seed=args.seed,
        loop_share=args.loop_share,
        sentences=args.sentences,
        slice_bytes=args.slice_bytes,
        tool_behaviour=args.tool_behaviour,
        tool_error_share=args.tool_error_share,
        refusal_share=args.refusal_share,
        refuse_harmful=args.refuse_harmful,
        reasoning=args.reasoning,
        report_usage=not args.no_usage,
    )

    if model.behaviour not in BEHAVIOURS:
        raise UsageError(f"--behaviour {model.behaviour!r} is not one of {', '.join(BEHAVIOURS)}")
    for name, share in (
        ("--tool-error-share", args.tool_error_share),
        ("--refusal-share", args.refusal_share),
    ):
        if not 0.0 <= share <= 1.0:
            raise UsageError(f"{name} must be a share between 0 and 1, got {share}")
    try:
        _host, port = split_host_port(args.listen, "--listen")
    except SettingsError as exc:  # a flag of this command, not a setting
        raise UsageError(str(exc)) from None
    host = args.listen.rpartition(":")[0].strip("[]") or "127.0.0.1"
    _check_port_free(f"{host}:{port}", "listen")

    async def run() -> None:
        runner, url = await start_simulator(model, host, port)
        print(f"simulated model {model.name!r} ({model.behaviour}) at {url}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return ExitCode.OK
