"""The clocks: the system clock, the demo's faster one, and the fixed one of tests and replays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from monitor.clock import SYSTEM_CLOCK, FixedClock, ScaledClock

START = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


class RealSeconds:
    """A monotonic source the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_scaled_clock_runs_speed_times_as_fast_as_real_time_from_its_start() -> None:
    real = RealSeconds()
    clock = ScaledClock(2016, START, real=real)
    assert clock() == START and clock.speed == 2016
    real.now += 300  # five real minutes
    assert clock() == START + timedelta(weeks=1)
    assert clock.real_seconds(timedelta(days=1)) == pytest.approx(86400 / 2016)


def test_a_scaled_clock_starts_at_the_real_time_and_is_aware() -> None:
    before = datetime.now(UTC)  # real clock: the default start is the real time
    clock = ScaledClock(60)
    now = clock()
    assert now.tzinfo is not None and now >= before


@pytest.mark.parametrize("speed", [0, -1])
def test_a_speed_that_is_not_positive_is_refused(speed: float) -> None:
    with pytest.raises(ValueError, match="speed"):
        ScaledClock(speed)


def test_a_naive_start_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        ScaledClock(2, datetime(2026, 3, 2, 14, 0))


def test_the_system_clock_is_real_time_at_speed_one() -> None:
    before = datetime.now(UTC)  # real clock: the system clock is the real time
    assert SYSTEM_CLOCK.speed == 1.0 and before <= SYSTEM_CLOCK() <= datetime.now(UTC)  # real clock: ditto


def test_a_fixed_clock_stands_still_until_it_is_set_or_advanced() -> None:
    clock = FixedClock(START)
    assert clock() == clock() == clock.now == START and clock.speed == 1.0
    assert clock.advance(minutes=15) == START + timedelta(minutes=15) == clock()
    assert clock.advance(timedelta(days=1), hours=1) == START + timedelta(days=1, hours=1, minutes=15)
    clock.now = START
    assert clock() == START


def test_a_fixed_clock_keeps_utc_and_refuses_a_naive_time() -> None:
    new_york = timezone(timedelta(hours=-5))
    assert FixedClock(datetime(2026, 3, 2, 9, 0, tzinfo=new_york))() == START
    with pytest.raises(ValueError, match="aware"):
        FixedClock(datetime(2026, 3, 2, 14, 0))
    clock = FixedClock(START)
    with pytest.raises(ValueError, match="aware"):
        clock.now = datetime(2026, 3, 2, 14, 0)
