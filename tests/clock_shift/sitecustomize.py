"""Moves a child Python process's clock as ``pytest --clock-shift=DAYS`` moved its parent's.

``tests/conftest.py`` puts this folder first on ``PYTHONPATH`` and sets
``HIRO_TEST_CLOCK_SHIFT_DAYS`` for the session, so every Python process a test starts
(``sys.executable -m monitor.cli run``, the crash dispatcher, ...) imports this module at
start-up and travels by the same number of days, ticking (``time.monotonic`` is not moved).
Outside such a run the variable is unset and this does nothing.
"""

from __future__ import annotations

import os

_DAYS = os.environ.get("HIRO_TEST_CLOCK_SHIFT_DAYS")

if _DAYS:
    import datetime as _dt

    import time_machine as _time_machine

    _time_machine.travel(_dt.timedelta(days=int(_DAYS)), tick=True).start()
