"""A real :class:`monitor.daemon.Daemon` on a loopback port 0, in a thread with its own event loop.

For tests that drive it from synchronous code (CLI commands that call ``asyncio.run``).
Its clock starts at the tests' fixed ``NOW`` and ticks in real time, unless one is given.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from monitor.clock import Clock, ScaledClock
from monitor.config import Settings
from monitor.daemon import Daemon
from monitor.store.database import make_engine, upgrade
from tests.monitor.trial_setup import NOW


@contextmanager
def running_daemon(settings: Settings, clock: Clock | None = None) -> Iterator[Daemon]:
    """Start the daemon (store migrated) on ``clock`` (default: from ``NOW``, ticking), yield it
    once listening, stop it on exit."""
    engine = make_engine(settings.database.url)
    upgrade(engine)
    loop = asyncio.new_event_loop()
    daemon = Daemon(settings, engine, clock=clock or ScaledClock(1.0, start=NOW))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(daemon.start(), loop).result(30)
        yield daemon
    finally:
        asyncio.run_coroutine_threadsafe(daemon.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        engine.dispose()
