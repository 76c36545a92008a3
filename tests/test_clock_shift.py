"""``--clock-shift=DAYS`` (tests/conftest.py) moves the real clock here and in child processes,
and leaves the tests' fixed clocks alone. Without the option the shift is zero, and so is
what this measures."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.clock import SYSTEM_CLOCK, FixedClock, ScaledClock
from tests.monitor.trial_setup import NOW

# The kernel stamps a file's mtime with the real time, which time-machine does not move.
CHILD = (
    "import os, sys, time; from datetime import datetime, UTC; from pathlib import Path\n"
    "path = Path(sys.argv[1]); path.write_text('x')\n"
    "print(datetime.now(UTC).timestamp() - path.stat().st_mtime,"  # real clock: the child's, shifted
    " time.time() - path.stat().st_mtime)\n"  # real clock: ditto
)
SLACK = timedelta(minutes=1)


def _real_now(folder: Path) -> float:
    stamp = folder / "now"
    stamp.write_text("x")
    return stamp.stat().st_mtime


def test_the_real_clock_of_this_process_is_moved_by_the_shift(tmp_path: Path, clock_shift: timedelta) -> None:
    real = _real_now(tmp_path)
    moved = timedelta(seconds=datetime.now(UTC).timestamp() - real)  # real clock: what is measured
    assert abs(moved - clock_shift) < SLACK
    assert abs(timedelta(seconds=time.time() - real) - clock_shift) < SLACK  # real clock: ditto
    system = SYSTEM_CLOCK()  # real clock: the project's system clock must follow the shift too
    assert abs(timedelta(seconds=system.timestamp() - real) - clock_shift) < SLACK


def test_a_child_python_process_is_moved_by_the_same_shift(tmp_path: Path, clock_shift: timedelta) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "child")], capture_output=True, text=True, check=True
    )
    by_datetime, by_time = (timedelta(seconds=float(value)) for value in done.stdout.split())
    assert abs(by_datetime - clock_shift) < SLACK and abs(by_time - clock_shift) < SLACK, done.stdout


def test_the_fixed_clocks_of_the_tests_are_not_moved() -> None:
    assert FixedClock(NOW)() == NOW
    # A clock ticking from NOW counts time.monotonic, which the shift leaves alone.
    assert NOW <= ScaledClock(1.0, start=NOW)() < NOW + SLACK
