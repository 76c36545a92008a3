"""The daemon's clocks: the system clock, and the demo's faster one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.clock import SYSTEM_CLOCK, ScaledClock

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
    before = datetime.now(UTC)
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
    before = datetime.now(UTC)
    assert SYSTEM_CLOCK.speed == 1.0 and before <= SYSTEM_CLOCK() <= datetime.now(UTC)
