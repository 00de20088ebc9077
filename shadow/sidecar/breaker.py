"""A circuit breaker for the candidate: when it keeps failing, stop sending it traffic for a while.

A failing candidate costs us nothing in user-facing terms (mirrors run in the background), but hammering
it wastes its capacity, fills the store with error pairs and floods the logs. After ``failure_threshold``
consecutive failures the breaker opens; after ``cooldown_s`` one probe is let through, and its outcome
decides whether the breaker closes again or waits another cooldown.

Not thread-safe, by design: it lives on the proxy's single asyncio loop, where a synchronous method runs
from start to end without interruption. Share it between threads and you need a lock around each call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum

Clock = Callable[[], float]


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    @property
    def gauge_value(self) -> int:
        """The number exported on the Prometheus gauge: 0 closed, 1 open, 2 half-open."""
        return _GAUGE_VALUES[self]


_GAUGE_VALUES = {BreakerState.CLOSED: 0, BreakerState.OPEN: 1, BreakerState.HALF_OPEN: 2}


class CircuitBreaker:
    """Closed → (N consecutive failures) → open → (cooldown) → half-open, one probe → closed or open.

    Every ``allow()`` that returned True should be followed by ``record_success()`` or
    ``record_failure()``. Should a probe's result never arrive (its task was cancelled), the probe is
    presumed lost after another cooldown and a new one is let through, so one lost result cannot stop
    mirroring for good.
    """

    def __init__(self, failure_threshold: int, cooldown_s: float, clock: Clock = time.monotonic) -> None:
        if failure_threshold < 1:
            raise ValueError(f"breaker failure threshold must be at least 1, got {failure_threshold}")
        if cooldown_s < 0:
            raise ValueError(f"breaker cooldown must be 0 seconds or more, got {cooldown_s}")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._consecutive_failures = 0
        self._opened_at = 0.0
        self._probe_sent_at = 0.0

    @property
    def state(self) -> BreakerState:
        """The state as of the last call; open turns half-open only when ``allow()`` sends the probe."""
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive_failures

    def allow(self) -> bool:
        """Whether a call to the candidate may go now. In half-open state, True is the probe."""
        if self._state is BreakerState.CLOSED:
            return True
        now = self._clock()
        if self._state is BreakerState.OPEN:
            if now - self._opened_at < self.cooldown_s:
                return False
            self._state = BreakerState.HALF_OPEN
            self._probe_sent_at = now
            return True
        # Half-open: the probe is out. Only a lost one (no result for a whole cooldown) is replaced.
        if now - self._probe_sent_at < self.cooldown_s:
            return False
        self._probe_sent_at = now
        return True

    def record_success(self) -> None:
        self._state = BreakerState.CLOSED
        self._consecutive_failures = 0

    def record_failure(self) -> None:
        self._consecutive_failures += 1
        # A failed probe reopens at once, whatever the threshold. While already open, a failure is a late
        # answer to a call sent before the breaker opened: the cooldown stands.
        failed_probe = self._state is BreakerState.HALF_OPEN
        too_many = self._state is BreakerState.CLOSED and self._consecutive_failures >= self.failure_threshold
        if failed_probe or too_many:
            self._open()

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
