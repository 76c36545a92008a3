"""``hiro-monitor run``: the long-running process.

Hosts the MLLP listener and its feed writer, the dashboard (``[web] enabled``), and the
scheduled jobs (outbox dispatch, periodic evaluation, digest, purge, FHIR poll:
:mod:`monitor.dispatch.scheduler`; off with
``[scheduler] enabled = false``). SIGTERM or SIGINT stops it gracefully: stop accepting,
finish in-flight messages and their ACKs, flush the writer, let a running job and the
message being sent finish, exit 0. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from monitor.clock import SYSTEM_CLOCK, Clock
from monitor.config import Settings
from monitor.dispatch.scheduler import JobScheduler
from monitor.evaluation import Evaluator
from monitor.feeds.hl7.intake import Intake
from monitor.feeds.hl7.mapping import MappingSettings
from monitor.feeds.mllp import MllpServer
from monitor.feeds.writer import FeedWriter
from monitor.runtime import Runtime
from monitor.threads import FeedLoop

if TYPE_CHECKING:
    from monitor.dispatch.dispatcher import Dispatcher
    from monitor.web.app import EmbeddedWeb

log = logging.getLogger("monitor.daemon")


class Daemon:
    """The listener and its writer, started and stopped together.

    ``clock`` is where every decision's ``now`` comes from (the demo's faster clock; the
    system clock otherwise); ``dispatcher`` replaces the one the jobs would build from the
    settings (the demo's, which prints to the console).
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        clock: Clock = SYSTEM_CLOCK,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.intake = Intake(
            engine,
            MappingSettings.from_settings(settings.hl7),
            store_raw_first=settings.mllp.ack_mode == "after_storing_raw",
            clock=clock,
        )
        self.evaluator = Evaluator(engine, settings)
        self.writer = FeedWriter(self.intake, after_batch=self._after_batch)
        # The listener and the writer live on the feed's own loop: the writer's commits block
        # the loop they run on, and the dashboard's loop (this one) must not wait for them.
        self.feed_loop = FeedLoop(self.intake.feed)
        self.runtime = Runtime()  # what /healthz and /metrics report of this process
        latency = self.runtime.ack_latency(self.intake.feed)
        self.server = MllpServer(settings.mllp, self.writer, on_ack=latency.observe)
        self.jobs = (
            JobScheduler(
                engine,
                settings,
                dispatcher=dispatcher,
                clock=clock,
                speed=clock.speed,
                senders=self.server.senders if settings.mllp.enabled else None,
            )
            if settings.scheduler.enabled
            else None
        )
        self.runtime.watch("feed_writer", self.writer)
        self.runtime.watch("mllp_listener", self.server if settings.mllp.enabled else None)
        self.runtime.watch("scheduler", self.jobs)
        if self.jobs is not None:
            self.jobs.metrics = self.runtime.jobs
        self.web: EmbeddedWeb | None = None
        if settings.web.enabled:
            from monitor.web.app import EmbeddedWeb, create_app  # FastAPI only when the dashboard runs

            app = create_app(settings, engine, runtime=self.runtime, clock=clock)
            self.web = EmbeddedWeb(app, settings.web)

    def _after_batch(self, exam_ids: Sequence[int], now: datetime) -> None:
        """On the feed's evaluation thread: re-evaluate; new outbox rows bring the next dispatch forward."""
        summary = self.evaluator.observe_exams(exam_ids, now)
        if (
            summary is not None
            and self.jobs is not None
            and (summary.outbox.added or summary.outbox.reinstated)
        ):
            self.jobs.dispatch_soon()

    async def start(self) -> None:
        self.feed_loop.start()
        try:
            await self.feed_loop.run(self._start_feed())
        except BaseException:
            await asyncio.to_thread(self.feed_loop.stop)
            raise
        if self.jobs is not None:
            self.jobs.start()
        if self.web is not None:
            await self.web.start()
            log.info("dashboard on http://%s:%d/", self.settings.web.host, self.web.port)

    async def _start_feed(self) -> None:
        """On the feed's loop: apply what was stored raw before a crash, then listen."""
        if self.intake.store_raw_first:
            self.writer.drain_pending()
        await self.writer.start()
        if self.settings.mllp.enabled:
            await self.server.start()
            log.info("MLLP listener on %s:%d", self.settings.mllp.host, self.server.port)

    async def _stop_feed(self, grace: float) -> None:
        if self.settings.mllp.enabled:
            await self.server.close(grace)
        await self.writer.close()
        if self.intake.store_raw_first:
            self.writer.drain_pending()

    async def stop(self, grace: float = 10.0) -> None:
        if self.web is not None:
            await self.web.stop()
        await self.feed_loop.run(self._stop_feed(grace))
        await asyncio.to_thread(self.feed_loop.stop)
        if self.jobs is not None:  # after the writer: what its last batches planned is in the outbox
            await asyncio.to_thread(self.jobs.shutdown, True)


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
