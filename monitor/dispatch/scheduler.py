"""The jobs of ``hiro-monitor run``, on APScheduler 3 (``BackgroundScheduler``, job store in memory).

=============  ====================================  ========  ===========================
job            when                                  leader    misfire grace / coalesce
=============  ====================================  ========  ===========================
dispatch       every ``dispatch_every_seconds``,     no        one interval / yes
               and at once when the feed planned
               new rows (:meth:`dispatch_soon`)
evaluate       every ``evaluate_every_minutes``,     yes       half an interval / yes
               and once at start-up
digest         daily at ``digest_hour`` (site zone)  yes       6 h / yes
purge          daily at ``purge_hour`` (site zone)   yes       12 h / yes
fhir_poll      every ``fhir.poll_interval_seconds``  yes       one interval / yes
               (when ``fhir.enabled``), and at start
pacs_poll      every ``pacs.poll_interval_seconds``  yes       one interval / yes
               (when ``pacs.enabled``), and at start;
               spaced out while the PACS fails
leader         every ``leader_check_seconds`` (3),   no        one interval / yes
               PostgreSQL only: tries for the lock;
               a new leader runs the jobs above now
=============  ====================================  ========  ===========================

Why these values: a run that could not start on time (the process was suspended, the
machine was busy) still runs if it is late by less than the grace time, and several missed
runs collapse into one (``coalesce``): re-evaluating or polling twice in a row buys
nothing. Dispatch and evaluation are cheap to skip (the next run is near); a digest late by
an hour is still worth sending. Every job has ``max_instances=1``. Missed runs are logged
(``EVENT_JOB_MISSED``).

Restarts: the job store is in memory (APScheduler's FAQ: a job store cannot be shared
between processes), so a restart forgets the schedule. Nothing is skipped or doubled for
that: evaluation and purge run at start-up (both are idempotent), and today's digest is
planned at start-up when its hour has passed: its dedupe key carries the day, so it is
delivered once per trial, address and day however often the process restarts.

A faster clock (the demo's ``--speed``, :class:`monitor.clock.ScaledClock`): ``speed``
divides the evaluation interval and its grace time (no shorter than one real second), so
due and missed visits are found every simulated quarter hour as in production. Dispatch
keeps its real polling interval (it only asks which rows are due by the clock), and the
daily digest and purge keep real wall-clock hours.

Replicas (PostgreSQL): only the replica holding the advisory lock (:class:`monitor.store.leader.LeaderLock`)
runs evaluate, digest, purge and poll; the others try for the lock every
``leader_check_seconds`` and, on taking it, run those jobs at once: a leader killed with
``kill -9`` is replaced within seconds, whatever the jobs' intervals. Dispatch runs
everywhere: rows are claimed with ``SKIP LOCKED``. With SQLite there is one process and no lock.

Jobs are observing code: they log failures by exception type (no PHI) and never raise.
Each run is counted (``hiro_job_runs_total{job, outcome}`` on the daemon's
:class:`~monitor.runtime.JobMetrics`), and :meth:`JobScheduler.liveness` tells ``/healthz``
whether the scheduler still starts its jobs: it is down when APScheduler is not running, when
no job has been started for twice the shortest interval plus 30 s (the loop is stuck), or
when one run has lasted more than an hour (or four of its intervals, if longer).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.events import (  # type: ignore[import-untyped]
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
    JobExecutionEvent,
)
from apscheduler.schedulers.background import BackgroundScheduler  # type: ignore[import-untyped]
from apscheduler.schedulers.base import STATE_PAUSED, STATE_RUNNING  # type: ignore[import-untyped]
from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]
from sqlalchemy import Engine

from monitor.clock import SYSTEM_CLOCK
from monitor.config import Settings
from monitor.dispatch.backoff import PollBackoff
from monitor.dispatch.content import ContentBuilder
from monitor.dispatch.dispatcher import Dispatcher
from monitor.dispatch.operations import SenderWatch, check_operations
from monitor.evaluation import Evaluator
from monitor.feeds.mllp.server import SenderPresence
from monitor.render import Renderer
from monitor.runtime import JobMetrics, Liveness
from monitor.store.leader import LeaderLock
from monitor.store.messages import purge_payloads
from monitor.store.outbox.planning import plan_digests
from monitor.store.registry.protocols import ProtocolCatalogue
from monitor.threads import scheduler_executor

__all__ = ["JobScheduler"]

log = logging.getLogger("monitor.scheduler")

JOB_STALL_SECONDS = 3600.0  # a run longer than this (or four intervals) is reported stalled


class JobScheduler:
    """The daemon's jobs: built from settings, started and shut down with the daemon."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        dispatcher: Dispatcher | None = None,
        clock: Callable[[], datetime] = SYSTEM_CLOCK,
        speed: float = 1.0,
        leader: LeaderLock | None = None,
        metrics: JobMetrics | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        senders: Callable[[], Sequence[SenderPresence]] | None = None,
    ) -> None:
        self.engine = engine
        # This replica's listener: who sends to it (the sender_gone check runs on every replica).
        self.senders = senders
        self._sender_watch = SenderWatch(engine, settings)
        self.settings = settings
        self.clock = clock
        self.speed = speed  # simulated seconds per real second of ``clock``
        self.zone = ZoneInfo(settings.site.timezone)
        self.leader = leader or LeaderLock(engine)
        # Set by check_leader: whether this replica led at the previous check. Start-up runs
        # the catch-up jobs itself, so a replica that leads from its first check has run them.
        self._was_leader = True
        self.dispatcher = dispatcher
        if self.dispatcher is None and settings.dispatch.enabled:
            self.dispatcher = Dispatcher(engine, settings, clock=clock)
        self._evaluator = Evaluator(engine, settings)  # each job thread its own (not thread-safe)
        self._poll_evaluator = Evaluator(engine, settings)
        self._pacs_evaluator = Evaluator(engine, settings)  # its own: jobs may run at once
        self._pacs_backoff = PollBackoff()
        self._builder = ContentBuilder(settings, Renderer.from_settings(settings))
        self._catalogue = ProtocolCatalogue()
        self.scheduler = BackgroundScheduler(
            timezone=self.zone,
            executors={"default": scheduler_executor()},
            job_defaults={"max_instances": 1, "coalesce": True},
        )
        self.scheduler.add_listener(self._missed, EVENT_JOB_MISSED)
        self.metrics = metrics
        # Liveness: when the scheduler's loop last started (or skipped, already running) a job,
        # and which runs are under way since when. Written by APScheduler's threads, read by
        # /healthz; a float store and a dict under a lock, never the scheduler's own locks.
        self._monotonic = monotonic
        self._woke_at = monotonic()
        self._wake_within = 3600.0  # these two are set from the jobs' intervals by start()
        self._stall_after: dict[str, float] = {}
        self._running: dict[str, float] = {}
        self._running_lock = threading.Lock()
        self.scheduler.add_listener(self._woke, EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES)
        self._add_jobs()

    def _add_jobs(self) -> None:
        jobs = self.settings.scheduler
        add = self.scheduler.add_job
        if self.dispatcher is not None:
            every = jobs.dispatch_every_seconds
            add(self._dispatch_tick, IntervalTrigger(seconds=every), id="dispatch",
                misfire_grace_time=max(1, round(every)), coalesce=True, max_instances=1)  # fmt: skip
        every = max(1.0, jobs.evaluate_every_minutes * 60 / self.speed)  # real seconds
        grace = max(1, round(max(30, jobs.evaluate_every_minutes * 30) / self.speed))
        add(self.evaluate, IntervalTrigger(seconds=every), id="evaluate",
            misfire_grace_time=grace, coalesce=True, max_instances=1)  # fmt: skip
        if jobs.digest_enabled:
            add(self.digest, CronTrigger(hour=jobs.digest_hour, timezone=self.zone), id="digest",
                misfire_grace_time=6 * 3600, coalesce=True, max_instances=1)  # fmt: skip
        add(self.purge, CronTrigger(hour=jobs.purge_hour, minute=30, timezone=self.zone), id="purge",
            misfire_grace_time=12 * 3600, coalesce=True, max_instances=1)  # fmt: skip
        if self.settings.fhir.enabled:
            seconds = self.settings.fhir.poll_interval_seconds
            add(self.poll, IntervalTrigger(seconds=seconds), id="fhir_poll",
                misfire_grace_time=seconds, coalesce=True, max_instances=1)  # fmt: skip
        if self.settings.pacs.enabled:
            seconds = self.settings.pacs.poll_interval_seconds
            add(self.poll_pacs, IntervalTrigger(seconds=seconds), id="pacs_poll",
                misfire_grace_time=seconds, coalesce=True, max_instances=1)  # fmt: skip
        if self.settings.operations.channels:
            seconds = self.settings.operations.check_every_seconds
            add(self.check_operations, IntervalTrigger(seconds=seconds), id="operations",
                misfire_grace_time=seconds, coalesce=True, max_instances=1)  # fmt: skip
            if self.senders is not None and self.settings.operations.sender_gone_minutes:
                add(self.check_senders, IntervalTrigger(seconds=seconds), id="senders",
                    misfire_grace_time=seconds, coalesce=True, max_instances=1)  # fmt: skip
        if self.engine.dialect.name == "postgresql":  # replicas: the lock on its own short timer
            every = jobs.leader_check_seconds
            add(self.check_leader, IntervalTrigger(seconds=every), id="leader",
                misfire_grace_time=max(1, round(every)), coalesce=True, max_instances=1)  # fmt: skip

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the jobs; evaluation, purge, the FHIR poll and a missed digest of today run now."""
        catch_up = self._catch_up_jobs()
        intervals = {
            job.id: job.trigger.interval.total_seconds()
            for job in self.scheduler.get_jobs()
            if isinstance(job.trigger, IntervalTrigger)
        }
        self._wake_within = 2 * min(intervals.values(), default=1800.0) + 30
        self._stall_after = {job: max(JOB_STALL_SECONDS, 4 * every) for job, every in intervals.items()}
        self._woke_at = self._monotonic()
        self.scheduler.start()
        self._run_now(catch_up)

    def shutdown(self, wait: bool = True) -> None:
        """Stop scheduling; with ``wait`` let running jobs (and the message in hand) finish."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)
        if self.dispatcher is not None:
            self.dispatcher.close(wait=wait)
        self.leader.release()

    def dispatch_soon(self) -> None:
        """Run the dispatch job now rather than at its next interval (new rows were planned).

        Called from the feed's evaluation thread; never raises (observing code)."""
        try:
            job = self.scheduler.get_job("dispatch") if self.scheduler.running else None
            if job is not None:
                job.modify(next_run_time=SYSTEM_CLOCK().astimezone(self.zone))
        except Exception as exc:
            log.debug("bringing dispatch forward failed (%s)", type(exc).__name__)

    def liveness(self) -> Liveness:
        """Up while APScheduler runs, its loop keeps starting jobs and no run has stalled."""
        state = self.scheduler.state
        if state != STATE_RUNNING:
            return Liveness(False, "paused" if state == STATE_PAUSED else "not running")
        now = self._monotonic()
        quiet = now - self._woke_at
        if quiet > self._wake_within:
            expected = f"expected within {self._wake_within:.0f} s"
            return Liveness(False, f"no job started for {quiet:.0f} s ({expected})")
        with self._running_lock:
            running = dict(self._running)
        for job, since in sorted(running.items()):
            if now - since > self._stall_after.get(job, JOB_STALL_SECONDS):
                return Liveness(False, f"job {job} has been running for {now - since:.0f} s")
        names = ", ".join(sorted(running)) or "none"
        return Liveness(True, f"last job started {quiet:.0f} s ago; running: {names}")

    def _woke(self, event: JobEvent) -> None:
        self._woke_at = self._monotonic()

    def _record(self, job: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.record(job, outcome)

    def _missed(self, event: JobExecutionEvent) -> None:
        self._record(event.job_id, "missed")
        late = SYSTEM_CLOCK() - event.scheduled_run_time
        level = logging.DEBUG if event.job_id == "dispatch" else logging.WARNING
        log.log(
            level, "job %s missed its run at %s (late by %s)", event.job_id, event.scheduled_run_time, late
        )

    # -- the jobs (observing code: log by type, never raise) ------------------------------

    def check_leader(self) -> bool:
        """The ``leader`` job: try for the lock (a follower) or check it is still held (the
        leader). A replica that has just taken over runs the leader's jobs at once (evaluate,
        purge, the polls and a digest whose hour has passed), rather than when each one's
        interval next comes round: a dead leader's work resumes within ``leader_check_seconds``
        (issue 19: 45 s and up to 15 minutes before). True while this replica leads."""
        leading = self.leader.held()
        if leading and not self._was_leader:
            log.info("scheduled jobs: this replica leads now; running the leader's jobs")
            self._run_now(self._catch_up_jobs())
        self._was_leader = leading
        return leading

    def _catch_up_jobs(self) -> list[str]:
        jobs = ["evaluate", "purge", "fhir_poll", "pacs_poll", "operations"]
        now = SYSTEM_CLOCK().astimezone(self.zone)
        if self.settings.scheduler.digest_enabled and now.hour >= self.settings.scheduler.digest_hour:
            jobs.append("digest")
        return jobs

    def _run_now(self, job_ids: list[str]) -> None:
        now = SYSTEM_CLOCK().astimezone(self.zone)  # APScheduler keeps real time
        for job_id in job_ids:
            job = self.scheduler.get_job(job_id) if self.scheduler.running else None
            if job is not None:
                job.modify(next_run_time=now)

    def _leading(self, job: str) -> bool:
        if self.leader.held():
            return True
        log.debug("job %s: another replica runs the scheduled jobs", job)
        return False

    def _guarded(self, job: str, run: Callable[[], Any], *, leader_only: bool = True) -> bool:
        if leader_only and not self._leading(job):
            self._record(job, "not_leader")
            return False
        with self._running_lock:
            self._running[job] = self._monotonic()
        try:
            run()
        except Exception as exc:
            log.error("job %s failed (%s)", job, type(exc).__name__)
            self._record(job, "error")
        else:
            self._record(job, "success")
        finally:
            with self._running_lock:
                self._running.pop(job, None)
        return True

    def _dispatch_tick(self) -> None:
        """Start sending what is due (on every replica: rows are claimed one by one)."""
        if self.dispatcher is not None:
            self._guarded("dispatch", self.dispatcher.tick, leader_only=False)

    def evaluate(self) -> bool:
        """Re-evaluate every enrolment (and plan its messages). False: not the leader."""

        def run() -> None:
            summary = self._evaluator.evaluate_all(self.clock())
            if summary.changes.changed or summary.outbox.changed:
                log.info("evaluated %d enrolment(s): %s", summary.enrolments, summary.outbox)

        return self._guarded("evaluate", run)

    def check_operations(self) -> bool:
        """Raise or recover the operations alerts (a quiet feed, rejections, an outbox backlog)."""

        def run() -> None:
            result = check_operations(self.engine, self.settings, self.clock())
            if result.raised or result.recovered:
                self.dispatch_soon()

        return self._guarded("operations", run)

    def check_senders(self) -> bool:
        """Raise a sender that left this replica's listener and has not come back; clear it on
        return (every replica: each knows its own listener's senders)."""
        senders = self.senders

        def run() -> None:
            if senders is not None:
                result = self._sender_watch.check(senders(), self.clock())
                if result.raised or result.recovered:
                    self.dispatch_soon()

        return self._guarded("senders", run, leader_only=False)

    def digest(self) -> bool:
        """Plan today's digest of every trial with something to report."""

        def run() -> None:
            now = self.clock()
            with self.engine.connect() as conn:
                trials = self._catalogue.trials(conn)
                news = {trial: bool(self._builder.digest_findings(conn, trial, now)) for trial in trials}
            written = plan_digests(self.engine, trials, now, self.zone, news)
            if written:
                log.info("planned %d digest message(s)", written)

        return self._guarded("digest", run)

    def purge(self) -> bool:
        """Empty raw HL7 payloads past the retention period."""

        def run() -> None:
            days = self.settings.database.raw_retention_days
            purged = purge_payloads(self.engine, self.clock(), days)
            if purged:
                log.info("purged the payload of %d message(s) older than %d days", purged, days)

        return self._guarded("purge", run)

    def poll(self) -> bool:
        """Poll the FHIR server once and re-evaluate what changed."""

        def run() -> None:
            from monitor.dispatch.fhir_poll import poll_and_evaluate

            poll_and_evaluate(self.engine, self.settings, self._poll_evaluator, clock=self.clock)

        return self._guarded("fhir_poll", run)

    def poll_pacs(self) -> bool:
        """Poll the PACS once (unless backing off) and re-evaluate the exams whose images changed."""

        def run() -> None:
            from monitor.dispatch.pacs_poll import poll_and_evaluate

            if not self._pacs_backoff.due():
                return
            result = poll_and_evaluate(self.engine, self.settings, self._pacs_evaluator, clock=self.clock)
            self._pacs_backoff.record(result.ok)
            if result.changed_exams:
                self.dispatch_soon()

        return self._guarded("pacs_poll", run)

    def next_runs(self) -> dict[str, datetime | None]:
        """Each job's next run time (for ``check-config`` and tests)."""
        return {job.id: getattr(job, "next_run_time", None) for job in self.scheduler.get_jobs()}
