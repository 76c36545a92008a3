"""``hiro-monitor simulate`` and the simulator against a real daemon on a loopback port."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from monitor.cli import main
from monitor.clock import FixedClock, ScaledClock
from monitor.commands.simulate import research_subjects, send_feed
from monitor.config import Settings
from monitor.demo import load_examples
from monitor.evaluation import evaluate_all
from monitor.feeds.hl7.mapping import MappingSettings, to_events
from monitor.feeds.hl7.simulated import ResearchSubject, SimulatedFeed
from monitor.store.database import make_engine, upgrade
from monitor.store.findings import list_findings
from monitor.store.schema import exams, messages
from tests.monitor.daemon_thread import running_daemon
from tests.monitor.trial_setup import NOW


def _settings(url: str) -> Settings:
    return Settings.model_validate({"database": {"url": url}, "mllp": {"port": 0}})


def test_a_seed_still_gives_the_stream_it_always_gave() -> None:
    # The digest of seed 5's first 500 messages before ORM and research bookings existed:
    # the new options are off by default and draw from their own random stream.
    stream = b"".join(SimulatedFeed(seed=5).messages(500))
    assert (
        hashlib.sha256(stream).hexdigest()
        == "0b61d94ede97ce3ccf78d5999c842d82650276deb843a3bc0112f4bdab207a32"
    )
    with_orders = [SimulatedFeed(seed=9, order_rate=0.3).messages(300) for _ in range(2)]
    assert list(with_orders[0]) == list(with_orders[1])


def test_orders_map_to_ordered_and_cancelled_imaging_orders() -> None:
    mapping = MappingSettings.from_settings(Settings().hl7)
    kinds: Counter[str] = Counter()
    for message in SimulatedFeed(seed=3, order_rate=1.0).messages(200):
        events = to_events(message, mapping)
        assert isinstance(events, list) and len(events) == 1, events
        event = events[0]
        assert event.trigger == "ORM^O01" and event.accession and event.procedure_code and event.start
        kinds[event.kind.value] += 1
    assert set(kinds) == {"ordered", "cancelled"} and kinds["ordered"] > kinds["cancelled"]


def test_simulate_command_counts_acks_and_the_daemon_stores_every_message(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(database_url)
    with running_daemon(settings) as daemon:
        target = f"127.0.0.1:{daemon.server.port}"
        code = main(
            ["--database", database_url, "simulate", "--to", target, "--count", "300", "--rate", "0"],
            clock=FixedClock(NOW),
        )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "sent 300 messages" in out and "ACKs AA 300" in out
    engine = make_engine(database_url)
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(messages)).scalar_one()
        orders = conn.execute(
            select(func.count()).select_from(exams).where(exams.c.status == "ordered")
        ).scalar_one()
    engine.dispose()
    assert stored == 300 and orders > 0


def test_simulate_paces_itself_to_the_rate_asked_for(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/paced.db"
    with running_daemon(_settings(url)) as daemon:
        result = asyncio.run(
            send_feed("127.0.0.1", daemon.server.port, SimulatedFeed(seed=2), 40, rate=100.0)
        )
    assert result.acks == {"AA": 40}
    assert 0.35 <= result.seconds < 3.0  # 40 messages at 100/s: about 0.4 s


def test_simulate_reports_an_unreachable_listener(
    capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    code = main(
        ["--database", f"sqlite:///{tmp_path}/x.db", "simulate", "--to", "127.0.0.1:1", "--count", "1"],
        clock=FixedClock(NOW),
    )
    assert code == 3 and "cannot reach" in capsys.readouterr().out


def test_research_bookings_with_deliberate_problems_become_findings(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/research.db"
    settings = _settings(url)
    engine = make_engine(url)
    upgrade(engine)
    # The example enrolments have fixed dates: on the tests' NOW they have visits due.
    clock = ScaledClock(1.0, start=NOW)
    now = clock()
    assert load_examples(engine, now) == 3
    evaluate_all(engine, settings, now)
    zone = ZoneInfo(settings.hl7.timezone)
    due = research_subjects(engine, now.astimezone(zone).date())
    assert len(due) >= 2, "the example enrolments have visits due with nothing booked"
    feed = SimulatedFeed(
        seed=4, zone=zone, start=now.astimezone(zone), research=due, research_rate=1.0, problem_rate=1.0
    )
    with running_daemon(settings, clock) as daemon:
        result = asyncio.run(send_feed("127.0.0.1", daemon.server.port, feed, 60, rate=0))
    assert result.acks == {"AA": 60}
    assert feed.problems.get("wrong_orderable") and feed.problems.get("out_of_window")
    evaluate_all(engine, settings, clock())
    kinds = {view.kind for view in list_findings(engine, open_only=True)}
    engine.dispose()
    assert "wrong_orderable" in kinds
    assert kinds & {"late", "early"}


def test_soon_bookings_are_made_as_far_ahead_as_asked_and_never_moved_or_cancelled() -> None:
    """The fast demo books them 30 to 90 hours ahead: their reminders (72 h, 24 h before) and
    day-before sheets fall due while one watches, not at once and not weeks later."""
    zone = ZoneInfo("America/New_York")
    today = NOW.astimezone(zone).date()
    window = (today - timedelta(days=3), today + timedelta(days=20))
    due = [ResearchSubject(f"R{n}", ("IMG1234",), "CT", window) for n in range(4)]  # not a feed MRN
    feed = SimulatedFeed(
        seed=7, zone=zone, research=due, research_soon=1.0, soon_hours=(30, 90), clock=FixedClock(NOW)
    )
    list(feed.messages(300))
    research = [appointment for appointment in feed.booked if appointment.mrn in {s.mrn for s in due}]
    assert len(research) == 4 and all(
        appointment.kept and not appointment.problem for appointment in research
    )
    for appointment in research:  # as booked: a kept appointment is never rescheduled
        assert timedelta(hours=29) < appointment.start - NOW < timedelta(hours=91)
