"""Where the daemon's ``now`` comes from: the system clock, or a faster one for the demo.

A clock is called for the current time (aware, UTC) and says how fast it runs against
real time (``speed``: simulated seconds per real second). The daemon hands one clock to
everything that decides with ``now``: the intake (exam history), the evaluation (due,
missed), the dispatcher (which outbox rows are due) and the dashboard (today's page).

``hiro-monitor run`` uses :class:`SystemClock`; so does every other command, unless the
caller of ``monitor.cli.main`` hands it another clock (the tests hand a :class:`FixedClock`).
``hiro-monitor demo --speed 2016`` uses a :class:`ScaledClock`, so a simulated week passes in
five real minutes; the scheduled jobs shrink their intervals by ``speed``
(``monitor/dispatch/scheduler.py``) so the periodic evaluation still runs every simulated
quarter of an hour or so. APScheduler itself keeps real time: only what the jobs *decide*
follows the clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "FixedClock", "ScaledClock", "SystemClock"]


class Clock(Protocol):
    """A source of ``now`` (aware, UTC) that runs ``speed`` times as fast as real time."""

    @property
    def speed(self) -> float: ...

    def __call__(self) -> datetime: ...


class SystemClock:
    """The real time: ``datetime.now(UTC)``; speed 1."""

    @property
    def speed(self) -> float:
        return 1.0

    def __call__(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()


def _aware(when: datetime, name: str) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return when.astimezone(UTC)


class FixedClock:
    """A clock that stands still at ``now`` until it is moved: set ``now`` or call :meth:`advance`.

    For tests and replays: every ``now`` it gives is the one it was told. Speed 1 (a job
    interval is not scaled). Raises ``ValueError`` for a naive ``now``.
    """

    def __init__(self, now: datetime) -> None:
        self._now = _aware(now, "now")

    @property
    def speed(self) -> float:
        return 1.0

    @property
    def now(self) -> datetime:
        return self._now

    @now.setter
    def now(self, value: datetime) -> None:
        self._now = _aware(value, "now")

    def __call__(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | None = None, /, **parts: float) -> datetime:
        """Move forward by ``delta`` or by ``timedelta(**parts)``; returns the new ``now``."""
        self._now += (delta or timedelta()) + timedelta(**parts)
        return self._now

    def __repr__(self) -> str:
        return f"FixedClock({self._now.isoformat()})"


class ScaledClock:
    """``start + (real time elapsed since creation) * speed``.

    ``start`` (aware) defaults to the real time now; ``real`` is the monotonic source of
    elapsed real seconds (``time.monotonic``: a wall-clock step, NTP or DST, does not make
    simulated time jump). Raises ``ValueError`` for a speed that is not positive or a naive
    ``start``. Thread-safe: it only reads.
    """

    def __init__(
        self, speed: float, start: datetime | None = None, *, real: Callable[[], float] = time.monotonic
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, not {speed!r}")
        self.start = datetime.now(UTC) if start is None else _aware(start, "start")
        self._speed = float(speed)
        self._real = real
        self._origin = real()

    @property
    def speed(self) -> float:
        return self._speed

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=(self._real() - self._origin) * self._speed)

    def real_seconds(self, simulated: timedelta) -> float:
        """How many real seconds ``simulated`` time takes on this clock."""
        return simulated.total_seconds() / self._speed

    def __repr__(self) -> str:
        return f"ScaledClock(speed={self._speed:g}, start={self.start.isoformat()})"
