import pytest

from shadow.sidecar.breaker import BreakerState, CircuitBreaker


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make(threshold: int = 3, cooldown_s: float = 30.0) -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    return CircuitBreaker(threshold, cooldown_s, clock=clock), clock


def open_breaker(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN


def test_starts_closed_and_allows():
    breaker, _ = make()
    assert breaker.state is BreakerState.CLOSED
    assert all(breaker.allow() for _ in range(100))


def test_opens_after_n_consecutive_failures():
    breaker, _ = make(threshold=3)
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.consecutive_failures == 3
    assert not breaker.allow()


def test_a_success_resets_the_count():
    breaker, _ = make(threshold=3)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    assert breaker.consecutive_failures == 0
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


def test_stays_open_until_the_cooldown_has_passed():
    breaker, clock = make(cooldown_s=30)
    open_breaker(breaker)
    clock.advance(29.9)
    assert not breaker.allow()
    assert breaker.state is BreakerState.OPEN


def test_exactly_one_probe_after_the_cooldown():
    breaker, clock = make(cooldown_s=30)
    open_breaker(breaker)
    clock.advance(30)
    assert breaker.allow()
    assert breaker.state is BreakerState.HALF_OPEN
    assert [breaker.allow() for _ in range(10)] == [False] * 10


def test_probe_success_closes():
    breaker, clock = make(cooldown_s=30)
    open_breaker(breaker)
    clock.advance(30)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0
    assert all(breaker.allow() for _ in range(10))


def test_probe_failure_reopens_with_a_fresh_cooldown():
    breaker, clock = make(cooldown_s=30)
    open_breaker(breaker)
    clock.advance(45)
    assert breaker.allow()
    clock.advance(5)  # the probe takes a while
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.advance(29)  # 29 s after the probe failed, 79 s after the breaker first opened
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow()
    assert breaker.state is BreakerState.HALF_OPEN


def test_a_single_failure_in_half_open_reopens_even_with_a_high_threshold():
    breaker, clock = make(threshold=10, cooldown_s=5)
    open_breaker(breaker)
    clock.advance(5)
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN


def test_late_failures_while_open_do_not_extend_the_cooldown():
    breaker, clock = make(cooldown_s=30)
    open_breaker(breaker)
    clock.advance(20)
    breaker.record_failure()  # a call sent before the breaker opened finally fails
    clock.advance(10)
    assert breaker.allow()


def test_a_lost_probe_is_replaced_after_another_cooldown():
    breaker, clock = make(cooldown_s=30)
    open_breaker(breaker)
    clock.advance(30)
    assert breaker.allow()  # this probe's task is cancelled and never reports
    clock.advance(29)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow()
    assert not breaker.allow()


def test_gauge_values():
    assert [state.gauge_value for state in BreakerState] == [0, 1, 2]
    assert BreakerState.CLOSED.gauge_value == 0
    assert BreakerState.OPEN.gauge_value == 1
    assert BreakerState.HALF_OPEN.gauge_value == 2
    assert BreakerState("half_open") is BreakerState.HALF_OPEN


def test_threshold_of_one_opens_on_the_first_failure():
    breaker, _ = make(threshold=1)
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN


@pytest.mark.parametrize(("threshold", "cooldown", "message"), [(0, 30, "threshold"), (3, -1, "cooldown")])
def test_bad_arguments_are_refused(threshold, cooldown, message):
    with pytest.raises(ValueError, match=message):
        CircuitBreaker(threshold, cooldown)
