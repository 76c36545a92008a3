"""``hiro-monitor run``: the long-running process.

Hosts the MLLP listener and its feed writer (and, as later issues land, the scheduler and
the web app). SIGTERM or SIGINT stops it gracefully: stop accepting, finish in-flight
messages and their ACKs, flush the writer, exit 0. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

from sqlalchemy import Engine

from monitor.config import Settings
from monitor.evaluation import Evaluator
from monitor.feeds.hl7.mapping import MappingSettings
from monitor.feeds.mllp import MllpServer
from monitor.feeds.writer import FeedWriter
from monitor.intake import Intake

log = logging.getLogger("monitor.daemon")


class Daemon:
    """The listener and its writer, started and stopped together."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.intake = Intake(
            engine,
            MappingSettings.from_settings(settings.hl7),
            store_raw_first=settings.mllp.ack_mode == "after_storing_raw",
        )
        self.writer = FeedWriter(self.intake, after_batch=Evaluator(engine, settings).observe_exams)
        self.server = MllpServer(settings.mllp, self.writer)

    async def start(self) -> None:
        if self.intake.store_raw_first:
            await asyncio.to_thread(self.writer.drain_pending)
        await self.writer.start()
        if self.settings.mllp.enabled:
            await self.server.start()
            log.info("MLLP listener on %s:%d", self.settings.mllp.host, self.server.port)

    async def stop(self, grace: float = 10.0) -> None:
        if self.settings.mllp.enabled:
            await self.server.close(grace)
        await self.writer.close()
        if self.intake.store_raw_first:
            await asyncio.to_thread(self.writer.drain_pending)


async def run_until_signalled(daemon: Daemon, on_ready: Callable[[Daemon], None] | None = None) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def _signalled(signum: int) -> None:
        if stopping.is_set():
            log.warning("second signal: exiting now")
            os._exit(1)
        log.info("signal %s: shutting down gracefully", signal.Signals(signum).name)
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _signalled, signum)
    await daemon.start()
    if on_ready is not None:
        on_ready(daemon)
    await stopping.wait()
    await daemon.stop()
