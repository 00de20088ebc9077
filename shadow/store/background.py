"""Two small tools of the pair writer: blocking calls on daemon threads it can abandon, and throttled logs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def in_daemon_thread(function: Callable[..., T], *args: Any) -> T:
    """Run a blocking call on a daemon thread of its own and await its result.

    Unlike `asyncio.to_thread`, a call that hangs (a database that stopped answering, a stuck disk) can be
    abandoned by cancelling the await: it does not hold a slot of the loop's default executor, and it does
    not keep the interpreter from exiting, which joins executor threads but not daemon threads."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[..., None], value: Any) -> None:
        if not future.done():  # cancelled: nobody waits any more
            outcome(value)

    def target() -> None:
        try:
            result = function(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            outcome: tuple[Callable[..., None], Any] = (future.set_exception, exc)
        else:
            outcome = (future.set_result, result)
        with contextlib.suppress(RuntimeError):  # the loop has closed: the result has nobody to go to
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(
        target=target, name=f"store-{getattr(function, '__name__', 'call')}", daemon=True
    ).start()
    return await future


class Backoff:
    """Capped exponential backoff: `failed()` doubles the wait (from `minimum_s` up to `maximum_s`) and sets
    the moment of the next try, `succeeded()` resets it."""

    def __init__(self, minimum_s: float, maximum_s: float) -> None:
        self.minimum_s = minimum_s
        self.maximum_s = maximum_s
        self.delay_s = 0.0
        self.next_at = 0.0  # time.monotonic() of the next try

    def failed(self) -> float:
        self.delay_s = min(max(self.delay_s * 2, self.minimum_s), self.maximum_s)
        self.next_at = time.monotonic() + self.delay_s
        return self.delay_s

    def succeeded(self) -> None:
        self.delay_s = 0.0
        self.next_at = 0.0

    def waiting(self, now: float) -> bool:
        return now < self.next_at


class Throttle:
    """A log line at most every `interval_s`; the next one let through says how many were held back.

    For conditions that repeat on every attempt (a full disk, a flood of refused pairs): the first line says
    what is wrong at once, and the log does not grow by hundreds of lines a second."""

    def __init__(self, logger: logging.Logger, interval_s: float) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last = -math.inf
        self._held_back = 0
        self._lock = threading.Lock()  # used from the loop and from writer threads

    def error(self, message: str, *args: object) -> None:
        self.log(logging.ERROR, message, *args)

    def warning(self, message: str, *args: object) -> None:
        self.log(logging.WARNING, message, *args)

    def log(self, level: int, message: str, *args: object) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self._interval_s:
                self._held_back += 1
                return
            held_back, self._held_back, self._last = self._held_back, 0, now
        if held_back:
            message += " (%d similar lines held back)"
            args = (*args, held_back)
        self._logger.log(level, message, *args)


__all__ = ["Backoff", "Throttle", "in_daemon_thread"]
