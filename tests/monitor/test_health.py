"""``/healthz`` and ``/metrics`` of a real daemon (MLLP on loopback port 0, the dashboard on
port 0, a real store), and of the dashboard running alone."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from apscheduler.events import EVENT_JOB_SUBMITTED  # type: ignore[import-untyped]
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import insert

from monitor.config import MllpSettings, Settings
from monitor.daemon import Daemon
from monitor.dispatch.scheduler import JobScheduler
from monitor.feeds.mllp import MllpServer, Peer, frame
from monitor.runtime import ack_code
from monitor.store.database import make_engine, upgrade
from monitor.store.schema import notifications
from monitor.web import create_app
from monitor.web.health import STORE_PROBE_SECONDS
from tests.monitor.hl7_messages import BIRTH_DATE, PATIENT_NAME, siu

END = b"\x1c\r"
MRNS = [f"E77{n:04d}" for n in range(12)]
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _settings(url: str, **sections: dict[str, object]) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": url},
            "mllp": {"port": 0},
            "web": {"enabled": True, "port": 0, "cookie_secure": False},
            "scheduler": {"dispatch_every_seconds": 0.2},
            **sections,
        }
    )


async def _send(port: int, payloads: list[bytes]) -> list[bytes]:
    """One connection, one message in flight: each ACK before the next message."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    acks = []
    try:
        for payload in payloads:
            writer.write(frame(payload))
            await writer.drain()
            acks.append(await asyncio.wait_for(reader.readuntil(END), 10))
    finally:
        writer.close()
    return acks


def _samples(exposition: str) -> list[Sample]:
    return [sample for family in text_string_to_metric_families(exposition) for sample in family.samples]


def _value(exposition: str, name: str, **labels: str) -> float | None:
    for sample in _samples(exposition):
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return None


def _run_with_daemon(
    settings: Settings, scenario: Callable[[Daemon, httpx.AsyncClient], Awaitable[None]]
) -> None:
    """Start a real daemon on this thread's loop, run ``scenario`` against it, stop it."""

    async def main() -> None:
        engine = make_engine(settings.database.url)
        upgrade(engine)
        daemon = Daemon(settings, engine)
        await daemon.start()
        try:
            assert daemon.web is not None
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.web.port}", timeout=10) as http:
                await scenario(daemon, http)
        finally:
            await daemon.stop()
            engine.dispose()

    asyncio.run(main())


async def _wait_for(check: Callable[[], Awaitable[bool]], what: str, within: float = 20.0) -> None:
    """Poll until ``check`` holds (a bound on waiting, not a speed assertion)."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.05)


# -- the daemon ---------------------------------------------------------------------------------


def test_every_ack_is_timed_by_feed_and_code_and_no_patient_data_is_exposed(database_url: str) -> None:
    payloads = [siu(control_id=f"MSG{n:04d}", csn=f"71{n:08d}", mrn=mrn) for n, mrn in enumerate(MRNS)]
    payloads.append(b"MSH|^~\\&|EPIC|HOSP|HIRO|RIO|20261120080000||SIU^S12|BAD0001|P|2.5.1\r")
    found: dict[str, object] = {}

    async def scenario(daemon: Daemon, http: httpx.AsyncClient) -> None:
        found["acks"] = [
            ack_code(ack.strip(b"\x0b\x1c\r")) for ack in await _send(daemon.server.port, payloads)
        ]
        found["metrics"] = (await http.get("/metrics")).text
        found["healthz"] = (await http.get("/healthz")).text

    _run_with_daemon(_settings(database_url), scenario)
    assert found["acks"] == ["AA"] * len(MRNS) + ["AE"]
    text = str(found["metrics"])
    assert _value(text, "hiro_ack_latency_seconds_count", feed="epic", code="AA") == len(MRNS)
    assert _value(text, "hiro_ack_latency_seconds_count", feed="epic", code="AE") == 1
    assert (_value(text, "hiro_ack_latency_seconds_sum", feed="epic", code="AA") or 0) > 0
    buckets = [
        (float(s.labels["le"]), s.value)
        for s in _samples(text)
        if s.name == "hiro_ack_latency_seconds_bucket" and s.labels["code"] == "AA"
    ]
    assert [le for le, _ in buckets][:1] == [0.001] and buckets[-1] == (float("inf"), len(MRNS))
    counts = [count for _, count in buckets]
    assert counts == sorted(counts), "cumulative buckets never decrease"
    assert _value(text, "hiro_messages_total", feed="epic", type="SIU^S12", outcome="accepted") == len(MRNS)
    assert _value(text, "hiro_store_up") == 1
    for exposed in (text, str(found["healthz"])):
        for phi in (*MRNS, PATIENT_NAME, PATIENT_NAME.split("^")[0], BIRTH_DATE):
            assert phi not in exposed


def test_scheduled_job_runs_are_counted_with_their_last_success(database_url: str) -> None:
    async def scenario(daemon: Daemon, http: httpx.AsyncClient) -> None:
        async def runs(job: str) -> float:
            return (
                _value((await http.get("/metrics")).text, "hiro_job_runs_total", job=job, outcome="success")
                or 0
            )

        async def evaluated() -> bool:  # evaluation runs once at start-up
            return await runs("evaluate") >= 1

        await _wait_for(evaluated, "the start-up evaluation is counted")
        first = await runs("dispatch")

        async def dispatched_again() -> bool:
            return await runs("dispatch") > first

        await _wait_for(dispatched_again, "the dispatch job's counter moves on")
        text = (await http.get("/metrics")).text
        stamp = _value(text, "hiro_job_last_success_timestamp_seconds", job="evaluate")
        assert stamp is not None and abs(stamp - time.time()) < 600  # real clock: the metric is Unix time
        assert _value(text, "hiro_job_runs_total", job="evaluate", outcome="error") is None

    _run_with_daemon(_settings(database_url), scenario)


def test_healthz_is_200_with_every_component_up(tmp_path: Path) -> None:
    found: dict[str, httpx.Response] = {}

    async def scenario(daemon: Daemon, http: httpx.AsyncClient) -> None:
        found["healthz"] = await http.get("/healthz")

    _run_with_daemon(_settings(f"sqlite:///{tmp_path / 'up.db'}"), scenario)
    answer = found["healthz"]
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ok" and body["failing"] == []
    assert {name: state["status"] for name, state in body["components"].items()} == {
        "database": "ok", "mllp_listener": "ok", "feed_writer": "ok", "scheduler": "ok",
    }  # fmt: skip
    assert "connection(s) open" in body["components"]["mllp_listener"]["detail"]


async def _close_listener(daemon: Daemon) -> None:
    await daemon.feed_loop.run(daemon.server.close(1.0))


async def _close_writer(daemon: Daemon) -> None:
    await daemon.feed_loop.run(daemon.writer.close())


async def _shut_down_scheduler(daemon: Daemon) -> None:
    assert daemon.jobs is not None
    daemon.jobs.scheduler.shutdown(wait=False)  # the scheduler dies; the daemon does not know


async def _pause_scheduler(daemon: Daemon) -> None:
    assert daemon.jobs is not None
    daemon.jobs.scheduler.pause()


@pytest.mark.parametrize(
    ("stop", "component", "detail"),
    [
        (_close_listener, "mllp_listener", "closed"),
        (_close_writer, "feed_writer", "stopped"),
        (_shut_down_scheduler, "scheduler", "not running"),
        (_pause_scheduler, "scheduler", "paused"),
    ],
)
def test_healthz_is_503_naming_the_component_that_stopped(
    tmp_path: Path, stop: Callable[[Daemon], Awaitable[None]], component: str, detail: str
) -> None:
    found: dict[str, httpx.Response] = {}

    async def scenario(daemon: Daemon, http: httpx.AsyncClient) -> None:
        assert (await http.get("/healthz")).status_code == 200
        await stop(daemon)
        found["healthz"] = await http.get("/healthz")

    _run_with_daemon(_settings(f"sqlite:///{tmp_path / 'down.db'}"), scenario)
    answer = found["healthz"]
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "unavailable" and body["failing"] == [component]
    assert body["components"][component] == {"status": "down", "detail": detail}


def test_components_switched_off_are_reported_disabled_and_do_not_fail(tmp_path: Path) -> None:
    found: dict[str, httpx.Response] = {}

    async def scenario(daemon: Daemon, http: httpx.AsyncClient) -> None:
        found["healthz"] = await http.get("/healthz")

    settings = _settings(f"sqlite:///{tmp_path / 'off.db'}", scheduler={"enabled": False})
    settings = settings.model_copy(update={"mllp": MllpSettings(enabled=False, port=0)})
    _run_with_daemon(settings, scenario)
    body = found["healthz"].json()
    assert found["healthz"].status_code == 200
    assert body["components"]["mllp_listener"] == {"status": "disabled"}
    assert body["components"]["scheduler"] == {"status": "disabled"}
    assert body["components"]["feed_writer"]["status"] == "ok"


def test_a_scheduler_whose_loop_stops_starting_jobs_is_reported_stalled(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'stall.db'}"
    engine = make_engine(url)
    upgrade(engine)
    now = [1000.0]
    # No dispatch job and no digest: the shortest interval is the evaluation's 15 minutes, so
    # once the start-up runs are over nothing wakes the loop and the fake monotonic clock decides.
    settings = _settings(url, dispatch={"enabled": False}, scheduler={"digest_enabled": False})
    jobs = JobScheduler(engine, settings, monotonic=lambda: now[0])
    submitted: list[str] = []
    # Called after the JobScheduler's own listener: once both start-up runs are seen here,
    # their wake-ups are recorded and no other is due for 15 minutes.
    jobs.scheduler.add_listener(lambda event: submitted.append(event.job_id), EVENT_JOB_SUBMITTED)
    try:
        jobs.start()
        deadline = time.monotonic() + 20
        while not {"evaluate", "purge"} <= set(submitted):
            assert time.monotonic() < deadline, "the start-up runs were never submitted"
            time.sleep(0.02)
        assert jobs.liveness().up
        now[0] += 2 * 15 * 60 + 31
        answer = jobs.liveness()
        assert not answer.up and answer.detail.startswith("no job started for 1831 s")
    finally:
        jobs.shutdown()
        engine.dispose()


# -- the listener's ACK timer -------------------------------------------------------------------


class _Acknowledge:
    async def on_message(self, message: bytes, peer: Peer) -> bytes | None:
        return b"MSH|^~\\&|HIRO|RIO|EPIC|HOSP|20261120080000||ACK|A1|P|2.5.1\rMSA|AA|MSG0001\r"

    async def on_oversize(self, head: bytes, size: int, peer: Peer) -> bytes | None:
        return None


def test_a_broken_ack_timer_never_costs_a_message() -> None:
    observed: list[float] = []

    def broken(ack: bytes, seconds: float) -> None:
        observed.append(seconds)
        raise RuntimeError("the metric is broken")

    async def scenario() -> list[bytes]:
        server = MllpServer(MllpSettings(host="127.0.0.1", port=0), _Acknowledge(), on_ack=broken)
        await server.start()
        try:
            return await _send(server.port, [siu(), siu(control_id="MSG0002")])
        finally:
            await server.close(1.0)

    acks = asyncio.run(scenario())
    assert len(acks) == 2 and all(b"MSA|AA|" in ack for ack in acks)
    assert len(observed) == 2 and all(seconds >= 0 for seconds in observed)


@pytest.mark.parametrize(
    ("ack", "code"),
    [
        (b"MSH|^~\\&|A|B|C|D|1||ACK|1|P|2.5.1\rMSA|AA|X\r", "AA"),
        (b"MSH|^~\\&|A|B|C|D|1||ACK|1|P|2.5.1\rMSA|AR|X\rERR|||207\r", "AR"),
        (b"MSH#^~\\&#A#B\rMSA#AE#X\r", "AE"),  # MSH-1 need not be "|"
        (b"MSH|^~\\&|A|B|C|D|1||ACK|1|P|2.5.1\rMSA|ZZ|X\r", "other"),  # bounded label values
        (b"MSH|^~\\&|A|B|C|D|1||ACK|1|P|2.5.1\r", "other"),
        (b"", "other"),
    ],
)
def test_the_ack_code_label_is_msa_1_or_other(ack: bytes, code: str) -> None:
    assert ack_code(ack) == code


# -- the dashboard alone ------------------------------------------------------------------------


@pytest.fixture
def alone(database_url: str) -> Iterator[TestClient]:
    engine = make_engine(database_url)
    yield TestClient(create_app(_settings(database_url), engine, clock=lambda: NOW))
    engine.dispose()


def test_the_dashboard_alone_reports_the_daemon_parts_as_elsewhere_and_is_healthy(alone: TestClient) -> None:
    answer = alone.get("/healthz")
    assert answer.status_code == 200
    assert answer.json()["components"] == {
        "database": {"status": "ok"},
        "mllp_listener": {"status": "not_in_this_process"},
        "feed_writer": {"status": "not_in_this_process"},
        "scheduler": {"status": "not_in_this_process"},
    }
    text = alone.get("/metrics").text
    assert "hiro_ack_latency_seconds" not in text and "hiro_job_runs" not in text
    assert _value(text, "hiro_store_up") == 1


def _row(key: str, channel: str, status: str, next_attempt_at: datetime) -> dict[str, object]:
    return {
        "dedupe_key": key, "audience": "coordinator", "channel": channel, "address": f"{channel}:x",
        "kind": "alert", "trial": "ONC-2101", "finding_key": "", "finding_kind": "", "thread_key": "",
        "due_at": next_attempt_at, "status": status, "attempts": 0, "next_attempt_at": next_attempt_at,
        "maybe_sent": False, "last_error": "", "summary": "", "created_at": NOW, "updated_at": NOW,
    }  # fmt: skip


def test_outbox_gauges_count_rows_by_channel_and_status_and_the_oldest_due(
    alone: TestClient, database_url: str
) -> None:
    rows = [
        _row("a", "slack", "pending", NOW - timedelta(minutes=10)),  # due 600 s ago: the oldest
        _row("b", "slack", "pending", NOW - timedelta(minutes=1)),
        _row("c", "slack", "pending", NOW + timedelta(hours=1)),  # not due yet
        _row("d", "email", "sending", NOW - timedelta(minutes=5)),
        _row("e", "webhook", "failed", NOW - timedelta(days=1)),
        _row("f", "webhook", "failed", NOW - timedelta(days=2)),
        _row("g", "email", "pending", NOW + timedelta(minutes=30)),
        _row("h", "email", "sent", NOW - timedelta(days=3)),  # not watched
    ]
    engine = make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(insert(notifications), rows)
    engine.dispose()
    text = alone.get("/metrics").text
    gauges = {
        (s.labels["channel"], s.labels["status"]): s.value
        for s in _samples(text)
        if s.name == "hiro_outbox_notifications"
    }
    expected = {(channel, status): 0.0 for channel in ("console", "email", "slack", "webhook")
                for status in ("pending", "sending", "failed")}  # fmt: skip
    expected |= {
        ("slack", "pending"): 3,
        ("email", "sending"): 1,
        ("webhook", "failed"): 2,
        ("email", "pending"): 1,
    }
    assert gauges == expected
    assert _value(text, "hiro_outbox_oldest_due_seconds", channel="slack") == 600
    assert _value(text, "hiro_outbox_oldest_due_seconds", channel="email") == 0  # pending, not due yet
    assert "ONC-2101" not in text


def test_a_store_that_does_not_answer_fails_healthz_and_metrics_still_answer() -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"  # nothing listens on port 1
    engine = make_engine(url, connect_args={"connect_timeout": 5})
    client = TestClient(create_app(_settings(url), engine))
    answer = client.get("/healthz")
    assert answer.status_code == 503
    assert answer.json()["failing"] == ["database"]
    assert answer.json()["components"]["database"]["status"] == "down"
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and _value(metrics.text, "hiro_store_up") == 0
    engine.dispose()


def test_a_store_that_hangs_fails_healthz_within_the_probe_time() -> None:
    """A PostgreSQL address that accepts connections and never answers (a stuck server)."""
    silent = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        silent.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(silent.accept()[0])

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    url = f"postgresql+psycopg://postgres@127.0.0.1:{silent.getsockname()[1]}/stuck"
    engine = make_engine(url)
    try:
        answer = TestClient(create_app(_settings(url), engine)).get("/healthz")
        assert answer.status_code == 503
        assert answer.json()["components"]["database"] == {
            "status": "down",
            "detail": f"no answer within {STORE_PROBE_SECONDS:g} s",
        }
    finally:
        stop.set()
        acceptor.join(5)  # out of accept() before its socket closes (else EBADF in the thread)
        for connection in held:
            connection.close()
        silent.close()
        engine.dispose()
