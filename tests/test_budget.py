from datetime import UTC, datetime, timedelta, timezone

import pytest

from shadow.core.settings import Settings
from shadow.sidecar.budget import (
    OUTSIDE_WINDOW,
    RATE_BUDGET,
    TOKEN_BUDGET,
    MirrorBudget,
    MirrorWindow,
    RateLimiter,
    TokenBudget,
)


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeWallClock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


def utc(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2024, 1, 15, hour, minute, second, tzinfo=UTC)


# --- RateLimiter ---------------------------------------------------------------------------------------


def test_rate_limiter_allows_a_burst_then_refills_at_the_rate():
    clock = FakeClock()
    limiter = RateLimiter(5, clock=clock)
    assert [limiter.try_acquire() for _ in range(6)] == [True] * 5 + [False]
    clock.advance(0.2)  # one token back
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
    clock.advance(10)  # refill stops at the burst size
    assert sum(limiter.try_acquire() for _ in range(20)) == 5


def test_fractional_rate_allows_one_request_every_so_often():
    clock = FakeClock()
    limiter = RateLimiter(0.5, clock=clock)
    assert limiter.burst == 1
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
    clock.advance(1.9)
    assert not limiter.try_acquire()
    clock.advance(0.1)
    assert limiter.try_acquire()


def test_rate_over_many_seconds_is_the_configured_one():
    clock = FakeClock()
    limiter = RateLimiter(3, clock=clock)
    granted = 0
    for _ in range(1000):  # 100 s in 0.1 s steps
        clock.advance(0.1)
        granted += sum(limiter.try_acquire() for _ in range(10))
    assert 300 <= granted <= 303  # 3/s plus the initial burst


def test_rate_zero_is_unlimited():
    limiter = RateLimiter(0, clock=FakeClock())
    assert all(limiter.try_acquire() for _ in range(10_000))


def test_clock_stepping_back_does_not_break_the_bucket():
    clock = FakeClock()
    limiter = RateLimiter(1, clock=clock)
    assert limiter.try_acquire()
    clock.advance(-100)
    assert not limiter.try_acquire()
    clock.advance(1)
    assert limiter.try_acquire()


@pytest.mark.parametrize("rate", [-1, float("nan"), float("inf")])
def test_bad_rate_is_refused(rate):
    with pytest.raises(ValueError, match="requests per second"):
        RateLimiter(rate)


# --- TokenBudget ---------------------------------------------------------------------------------------


def test_token_budget_blocks_once_the_cap_is_reached():
    clock = FakeClock(0)
    budget = TokenBudget(1000, clock=clock)
    assert budget.allows()
    budget.spend(600)
    assert budget.allows()
    budget.spend(400)
    assert not budget.allows()
    assert budget.spent() == 1000


def test_one_answer_may_overshoot_but_then_blocks():
    # The cap is checked before the mirror, the spend known only after: the last answer may overshoot.
    budget = TokenBudget(1000, clock=FakeClock(0))
    budget.spend(999)
    assert budget.allows()
    budget.spend(5000)
    assert not budget.allows()


def test_spend_expires_after_an_hour():
    clock = FakeClock(0)
    budget = TokenBudget(1000, clock=clock)
    budget.spend(1000)
    clock.advance(3599)
    assert not budget.allows()
    clock.advance(60)  # 3659 s: still inside the minute the spend is rounded up to
    assert not budget.allows()
    clock.advance(1)  # 3660 s
    assert budget.allows()
    assert budget.spent() == 0


def test_window_slides_minute_by_minute():
    clock = FakeClock(0)
    budget = TokenBudget(1000, clock=clock)
    budget.spend(500)  # minute 0
    clock.advance(30 * 60)
    budget.spend(500)  # minute 30
    assert not budget.allows()
    clock.advance(31 * 60)  # minute 61: the first spend has expired, the second has not
    assert budget.spent() == 500
    assert budget.allows()
    clock.advance(30 * 60)  # minute 91
    assert budget.spent() == 0


def test_memory_stays_bounded():
    clock = FakeClock(0)
    budget = TokenBudget(10**12, clock=clock)
    for _ in range(100_000):  # a spend every 0.1 s for almost three hours
        budget.spend(7)
        clock.advance(0.1)
    assert budget.allows()
    assert len(budget._buckets) <= 62


def test_token_budget_zero_is_unlimited():
    budget = TokenBudget(0, clock=FakeClock(0))
    budget.spend(10**9)
    assert budget.allows()


def test_spend_validation():
    budget = TokenBudget(10, clock=FakeClock(0))
    budget.spend(0)
    assert budget.spent() == 0
    with pytest.raises(ValueError, match="negative"):
        budget.spend(-1)
    with pytest.raises(ValueError, match="tokens per hour"):
        TokenBudget(-5)


# --- MirrorWindow --------------------------------------------------------------------------------------


def test_empty_window_is_always_open():
    window = MirrorWindow.parse("")
    assert window.always_open
    assert str(window) == "always"
    assert all(window.contains(utc(hour)) for hour in range(24))
    assert MirrorWindow.parse("   ").always_open


def test_window_within_one_day():
    window = MirrorWindow.parse("09:30-17:00")
    assert not window.contains(utc(9, 29, 59))
    assert window.contains(utc(9, 30))
    assert window.contains(utc(16, 59, 59))
    assert not window.contains(utc(17, 0))  # the end is excluded
    assert str(window) == "09:30-17:00"


def test_window_across_midnight():
    window = MirrorWindow.parse("22:00-06:00")
    assert window.contains(utc(22, 0))
    assert window.contains(utc(23, 59, 59))
    assert window.contains(utc(0, 0))
    assert window.contains(utc(5, 59))
    assert not window.contains(utc(6, 0))
    assert not window.contains(utc(12, 0))
    assert not window.contains(utc(21, 59))


def test_window_is_in_utc_whatever_the_moment_is_given_in():
    window = MirrorWindow.parse("22:00-06:00")
    shanghai = timezone(timedelta(hours=8))
    assert window.contains(datetime(2024, 1, 16, 7, 0, tzinfo=shanghai))  # 23:00 UTC
    assert not window.contains(datetime(2024, 1, 16, 22, 0, tzinfo=shanghai))  # 14:00 UTC
    assert window.contains(datetime(2024, 1, 15, 23, 0))  # naive: taken as UTC


def test_whole_day_window_and_lenient_spacing():
    assert all(MirrorWindow.parse("00:00-24:00").contains(utc(hour, 59)) for hour in range(24))
    assert MirrorWindow.parse(" 8:00 - 9:15 ") == MirrorWindow(8 * 60, 9 * 60 + 15)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("22-06", "not in the form HH:MM-HH:MM"),
        ("22:00", "not in the form HH:MM-HH:MM"),
        ("10pm-6am", "not in the form HH:MM-HH:MM"),
        ("25:00-06:00", "start 25:00 is not a time of day"),
        ("22:60-06:00", "start 22:60 is not a time of day"),
        ("22:00-24:30", "end 24:30 is not a time of day"),
        ("08:00-08:00", "start and end are the same"),
    ],
)
def test_bad_window_says_what_is_wrong(text, problem):
    with pytest.raises(ValueError, match=problem) as error:
        MirrorWindow.parse(text)
    assert "leave it empty" in str(error.value)


# --- MirrorBudget --------------------------------------------------------------------------------------


def make_budget(**overrides) -> tuple[MirrorBudget, FakeClock, FakeWallClock]:
    clock = FakeClock(0)
    wall = FakeWallClock(utc(23))
    return MirrorBudget(Settings().with_overrides(**overrides), clock=clock, wall_clock=wall), clock, wall


def test_default_settings_never_skip():
    budget, _, _ = make_budget()
    assert all(budget.check() is None for _ in range(1000))
    budget.record_tokens(10**9)
    assert budget.check() is None


def test_outside_window_is_reported_and_costs_no_rate():
    budget, _, wall = make_budget(mirror_window="22:00-06:00", budget_requests_per_s=1)
    wall.moment = utc(12)
    assert [budget.check() for _ in range(3)] == [OUTSIDE_WINDOW] * 3
    wall.moment = utc(2)
    assert budget.check() is None  # the skipped checks did not use up the single token


def test_rate_budget_is_reported_and_refills():
    budget, clock, _ = make_budget(budget_requests_per_s=2)
    assert [budget.check() for _ in range(3)] == [None, None, RATE_BUDGET]
    clock.advance(0.5)
    assert budget.check() is None


def test_token_budget_is_reported_and_expires():
    budget, clock, _ = make_budget(budget_candidate_tokens_per_hour=1000, budget_requests_per_s=1)
    assert budget.check() is None
    budget.record_tokens(1200)
    clock.advance(5)
    assert budget.check() == TOKEN_BUDGET
    clock.advance(3660)
    assert budget.check() is None


def test_bad_window_in_settings_fails_at_construction():
    with pytest.raises(ValueError, match="mirror_window"):
        make_budget(mirror_window="late")
