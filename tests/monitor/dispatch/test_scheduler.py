"""The daemon's jobs: deliberate misfire handling, one leader among replicas, digests, the daemon itself."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from monitor.clock import ScaledClock
from monitor.daemon import Daemon
from monitor.dispatch.scheduler import JobScheduler
from monitor.store.database import make_engine
from monitor.store.leader import LeaderLock
from tests.monitor.dispatch.office import ONC, Office, assert_no_phi, enrol_due_in, posts_by_key
from tests.monitor.hl7_messages import siu
from tests.monitor.trial_setup import NOW
from tests.notifiers.slack_server import SlackServer


@pytest.fixture
def jobs(office: Office) -> Iterator[JobScheduler]:
    settings = office.settings.model_copy(
        update={
            "fhir": office.settings.fhir.model_copy(update={"enabled": True, "base_url": "http://x/"}),
            "operations": office.settings.operations.model_copy(update={"channels": ("console:",)}),
        }
    )
    found = JobScheduler(office.engine, settings, clock=office.clock)
    yield found
    found.shutdown()


def test_every_job_has_a_deliberate_misfire_grace_coalesces_and_runs_alone(jobs: JobScheduler) -> None:
    found = {job.id: job for job in jobs.scheduler.get_jobs()}
    expected = {"dispatch": 2, "evaluate": 450, "digest": 6 * 3600, "purge": 12 * 3600, "fhir_poll": 300,
                "operations": 60}  # fmt: skip
    if jobs.engine.dialect.name == "postgresql":  # replicas: the lock has a timer of its own
        expected["leader"] = 3
    grace = {job_id: job.misfire_grace_time for job_id, job in found.items()}
    assert grace == expected
    assert all(job.coalesce and job.max_instances == 1 for job in found.values())
    assert str(found["digest"].trigger.timezone) == "America/New_York"


def test_a_missed_run_is_logged(jobs: JobScheduler, caplog: pytest.LogCaptureFixture) -> None:
    jobs.scheduler.start(paused=True)
    past = datetime.now(UTC) - timedelta(minutes=5)  # real clock: APScheduler keeps real time
    jobs.scheduler.add_job(lambda: None, "date", run_date=past, id="late", misfire_grace_time=1)
    with caplog.at_level(logging.WARNING, logger="monitor.scheduler"):
        jobs.scheduler.resume()
        deadline = time.monotonic() + 5
        while "job late missed its run" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
    assert "job late missed its run" in caplog.text


def test_start_up_catches_up_on_todays_digest_and_runs_evaluation_now(office: Office) -> None:
    settings = office.settings.model_copy(
        update={"scheduler": office.settings.scheduler.model_copy(update={"digest_hour": 0})}
    )
    jobs = JobScheduler(office.engine, settings, clock=office.clock)
    try:
        jobs.start()
        runs = jobs.next_runs()
        soon = datetime.now(UTC) + timedelta(seconds=30)  # real clock: APScheduler's run times are real
        assert runs["digest"] is not None and runs["digest"] < soon
        assert runs["evaluate"] is not None and runs["evaluate"] < soon
    finally:
        jobs.shutdown()


def test_the_digest_is_planned_once_per_trial_address_and_day_and_lists_the_problems(
    office: Office, slack: SlackServer
) -> None:
    jobs = JobScheduler(office.engine, office.settings, clock=office.clock)
    try:
        office.evaluator.evaluate_all(office.clock())
        office.keep_only()  # the alerts themselves are not the point here
        office.feed(siu(mrn="E10001"))
        office.keep_only()
        assert jobs.digest() and jobs.digest()  # twice (a restart): one row per address
        digests = office.rows(kind="digest")
        assert {row.address for row in digests if row.trial == "ONC-2101"} == {
            "email:onc2101-team@example.org",
            "slack:#onc-2101-imaging",
        }
        assert len(digests) == len({row.dedupe_key for row in digests})
        office.dispatch()
        [posted] = [m for m in slack.fake.posted(ONC) if m["text"].startswith("[ONC-2101] Daily digest")]
        assert "Wed 25 Nov 2026" in posted["text"]
        assert "2101-001" in str(posted["blocks"])  # the booking of the week
        assert_no_phi(slack.fake.all_raw())
    finally:
        jobs.shutdown()


@pytest.mark.postgres
def test_only_one_of_two_replicas_runs_the_scheduled_jobs(office: Office) -> None:
    if office.engine.dialect.name != "postgresql":
        pytest.skip("the leader lock is a PostgreSQL advisory lock")
    other_engine = make_engine(office.settings.database.url)
    first = JobScheduler(office.engine, office.settings, clock=office.clock)
    second = JobScheduler(other_engine, office.settings, clock=office.clock)
    try:
        assert first.evaluate() is True  # took the lock
        assert second.evaluate() is False and second.digest() is False and second.purge() is False
        assert first.purge() is True
        first.shutdown()  # the leader stops: its session and lock go
        assert second.evaluate() is True
    finally:
        first.shutdown()
        second.shutdown()
        other_engine.dispose()


@pytest.mark.postgres
def test_the_leader_lock_is_taken_over_when_the_leaders_session_ends(office: Office) -> None:
    if office.engine.dialect.name != "postgresql":
        pytest.skip("the leader lock is a PostgreSQL advisory lock")
    first, second = LeaderLock(office.engine), LeaderLock(office.engine)
    assert first.held() and not second.held() and first.held()
    first.release()
    assert second.held() and not first.held()
    second.release()


def _mllp_send(port: int, raw: bytes) -> bytes:
    async def send() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x0b" + raw + b"\x1c\r")
        await writer.drain()
        ack = await reader.readuntil(b"\x1c\r")
        writer.close()
        return ack

    return asyncio.run(send())


def test_the_daemon_posts_a_booking_received_over_mllp_and_stops_cleanly(
    office: Office, slack: SlackServer
) -> None:
    """A subject enrolled so that an exam three days after NOW is in its window; the daemon's
    clock starts at NOW and ticks, so the exam's reminders (72 h before it and later) are not due."""
    clock = ScaledClock(1.0, start=NOW)
    start = enrol_due_in(office.engine, "E55501", "2101-901", 3, clock())
    settings = office.settings.model_copy(
        update={
            "mllp": office.settings.mllp.model_copy(update={"port": 0}),
            "scheduler": office.settings.scheduler.model_copy(update={"dispatch_every_seconds": 0.2}),
        }
    )

    async def scenario() -> float:
        daemon = Daemon(settings, office.engine, clock=clock)
        assert daemon.jobs is not None and daemon.jobs.dispatcher is not None
        daemon.jobs.dispatcher.environ = office.environ
        await daemon.start()
        try:
            sent = time.monotonic()
            ack = await asyncio.to_thread(_mllp_send, daemon.server.port, siu(mrn="E55501", start=start))
            assert b"MSA|AA" in ack
            while not [m for m in slack.fake.posted(ONC) if "2101-901" in m["text"]]:
                assert time.monotonic() - sent < 20, "no Slack post"
                await asyncio.sleep(0.05)
            return time.monotonic() - sent
        finally:
            await daemon.stop()

    seconds = asyncio.run(scenario())
    assert seconds < 5
    booking = [row for row in office.rows(kind="booking") if row.address == "slack:#onc-2101-imaging"]
    assert [row.status for row in booking] == ["sent"]
    assert set(posts_by_key(slack.fake).values()) == {1}
