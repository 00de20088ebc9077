"""Cost control for mirroring: a time window, a request rate and an hourly token budget for the candidate.

Every piece takes its clock as an argument so tests can drive time by hand. None of them is thread-safe:
they are used from the proxy's single asyncio loop, where nothing runs between two statements of a
synchronous method.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from shadow.core.settings import Settings

Clock = Callable[[], float]
WallClock = Callable[[], datetime]

OUTSIDE_WINDOW: Final = "outside_window"
RATE_BUDGET: Final = "rate_budget"
TOKEN_BUDGET: Final = "token_budget"
SKIP_REASONS: Final = (OUTSIDE_WINDOW, RATE_BUDGET, TOKEN_BUDGET)
"""Why `MirrorBudget.check` skipped a mirror; used as a metric label, so the set stays closed."""


class RateLimiter:
    """A token bucket: ``per_second`` mirrors a second on average, bursts up to ``max(1, per_second)``.

    ``per_second == 0`` means no limit. A fractional rate such as 0.5 still allows single requests (the
    burst is at least one), one every two seconds.
    """

    def __init__(self, per_second: float, clock: Clock = time.monotonic) -> None:
        if not math.isfinite(per_second) or per_second < 0:
            raise ValueError(f"requests per second must be 0 (no limit) or more, got {per_second}")
        self.per_second = per_second
        self.burst = max(1.0, per_second)
        self._clock = clock
        self._tokens = self.burst
        self._last = clock()

    def try_acquire(self) -> bool:
        """Take one token if there is one; False means the caller should skip this mirror."""
        if self.per_second == 0:
            return True
        now = self._clock()
        # max(0, ...): a clock that steps backwards must not drain the bucket.
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(self.burst, self._tokens + elapsed * self.per_second)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class TokenBudget:
    """Candidate tokens spent over the last hour, against a cap; ``per_hour == 0`` means no cap.

    Spend is kept in one-minute buckets, so memory stays at ~61 numbers whatever the traffic. A token is
    counted from the minute it was spent until an hour after that minute *ends*, i.e. for between 60 and
    61 minutes: the budget errs on the side of spending less, never more.
    """

    WINDOW_S: Final = 3600.0
    BUCKET_S: Final = 60.0

    def __init__(self, per_hour: int, clock: Clock = time.monotonic) -> None:
        if per_hour < 0:
            raise ValueError(f"candidate tokens per hour must be 0 (no cap) or more, got {per_hour}")
        self.per_hour = per_hour
        self._clock = clock
        self._buckets: deque[list[int]] = deque()  # [minute index, tokens], oldest first
        self._total = 0

    def _expire(self) -> int:
        minute = int(self._clock() // self.BUCKET_S)
        buckets_in_window = int(self.WINDOW_S // self.BUCKET_S)
        # Bucket m ends at (m + 1) minutes; it expires an hour after that.
        while self._buckets and self._buckets[0][0] + 1 + buckets_in_window <= minute:
            self._total -= self._buckets.popleft()[1]
        return minute

    def spent(self) -> int:
        """Tokens counted against the cap right now."""
        self._expire()
        return self._total

    def allows(self) -> bool:
        """False once the window's spend has reached the cap."""
        if self.per_hour == 0:
            return True
        return self.spent() < self.per_hour

    def spend(self, tokens: int) -> None:
        if tokens < 0:
            raise ValueError(f"cannot spend a negative number of tokens ({tokens})")
        if tokens == 0:
            return
        minute = self._expire()
        if self._buckets and self._buckets[-1][0] >= minute:
            # ">=": a clock that stepped back adds to the newest bucket rather than disordering the deque.
            self._buckets[-1][1] += tokens
        else:
            self._buckets.append([minute, tokens])
        self._total += tokens


_WINDOW_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_MINUTES_PER_DAY = 24 * 60


@dataclass(frozen=True, slots=True)
class MirrorWindow:
    """A daily UTC time window, start included and end excluded; it may wrap midnight ("22:00-06:00").

    ``start_minute``/``end_minute`` are minutes after midnight; both None means always open.
    """

    start_minute: int | None = None
    end_minute: int | None = None

    @classmethod
    def parse(cls, text: str) -> MirrorWindow:
        """Parse 'HH:MM-HH:MM' (24-hour, UTC); an empty string means always open.

        "24:00" is accepted as an end, so "00:00-24:00" is the whole day.
        """
        if not text.strip():
            return cls()
        match = _WINDOW_RE.match(text)
        problem = None
        if match is None:
            problem = "it is not in the form HH:MM-HH:MM"
        else:
            start_h, start_m, end_h, end_m = (int(part) for part in match.groups())
            start = start_h * 60 + start_m
            end = end_h * 60 + end_m
            if start_h > 23 or start_m > 59:
                problem = f"the start {start_h:02d}:{start_m:02d} is not a time of day"
            elif end_m > 59 or end > _MINUTES_PER_DAY:
                problem = f"the end {end_h:02d}:{end_m:02d} is not a time of day"
            elif start == end:
                problem = "start and end are the same, which leaves no time or all of it"
        if problem is not None:
            raise ValueError(
                f"mirror_window {text!r} cannot be used: {problem}. Give a UTC window such as "
                "'22:00-06:00', or leave it empty to mirror at all hours."
            )
        return cls(start, end)

    @property
    def always_open(self) -> bool:
        return self.start_minute is None or self.end_minute is None

    def contains(self, moment: datetime) -> bool:
        """Whether the moment falls in the window; a naive datetime is taken to be UTC already."""
        if self.start_minute is None or self.end_minute is None:
            return True
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC)
        minute = moment.hour * 60 + moment.minute
        if self.start_minute < self.end_minute:
            return self.start_minute <= minute < self.end_minute
        return minute >= self.start_minute or minute < self.end_minute

    def __str__(self) -> str:
        if self.start_minute is None or self.end_minute is None:
            return "always"
        return (
            f"{self.start_minute // 60:02d}:{self.start_minute % 60:02d}-"
            f"{self.end_minute // 60:02d}:{self.end_minute % 60:02d}"
        )


def _utc_now() -> datetime:
    return datetime.now(UTC)


class MirrorBudget:
    """The window, the rate limit and the token budget, asked together before each mirror."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock = time.monotonic,
        wall_clock: WallClock = _utc_now,
    ) -> None:
        self.window = MirrorWindow.parse(settings.mirror_window)
        self.rate = RateLimiter(settings.budget_requests_per_s, clock=clock)
        self.tokens = TokenBudget(settings.budget_candidate_tokens_per_hour, clock=clock)
        self._wall_clock = wall_clock

    def check(self) -> str | None:
        """The reason to skip this mirror (one of `SKIP_REASONS`), or None when it may go.

        The rate limiter is asked last because asking it spends a token: a mirror skipped for another
        reason must not use up the rate.
        """
        if not self.window.contains(self._wall_clock()):
            return OUTSIDE_WINDOW
        if not self.tokens.allows():
            return TOKEN_BUDGET
        if not self.rate.try_acquire():
            return RATE_BUDGET
        return None

    def record_tokens(self, tokens: int) -> None:
        """Count the candidate's tokens (prompt + completion) once its answer is in."""
        self.tokens.spend(tokens)
