"""The message counts of /metrics and feed health, kept by a mark instead of a full count:
after every kind of change they equal a count of the whole table. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, delete, func, select

from monitor.config import Hl7Settings
from monitor.feeds.hl7.intake import Arrival, Intake
from monitor.feeds.hl7.mapping import MappingSettings
from monitor.store.database import make_engine
from monitor.store.message_tally import SETTLING, MessageCounts, message_counts
from monitor.store.messages import feed_health
from monitor.store.schema import exam_events, exams, messages
from tests.monitor.hl7_messages import siu

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
MAPPING = MappingSettings.from_settings(Hl7Settings(feed="epic", timezone="America/Chicago"))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def _whole_table(engine: Engine) -> MessageCounts:
    """The same figures from a count of every row (what the tally must always equal)."""
    with engine.connect() as conn:
        by_type = conn.execute(
            select(messages.c.feed, messages.c.message_type, messages.c.outcome, func.count())
            .group_by(messages.c.feed, messages.c.message_type, messages.c.outcome)
            .order_by(messages.c.feed, messages.c.message_type, messages.c.outcome)
        ).all()
        reused = conn.execute(
            select(messages.c.feed, func.count())
            .where(messages.c.original_id.is_not(None))
            .group_by(messages.c.feed)
            .order_by(messages.c.feed)
        ).all()
        last = conn.execute(
            select(messages.c.feed, func.max(messages.c.received_at))
            .group_by(messages.c.feed)
            .order_by(messages.c.feed)
        ).all()
    return MessageCounts(
        [(feed, kind or "", outcome, int(count)) for feed, kind, outcome, count in by_type],
        [(feed, int(count)) for feed, count in reused],
        [(feed, at.replace(tzinfo=UTC) if isinstance(at, datetime) else _text_time(at)) for feed, at in last],
    )


def _text_time(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _tallied(engine: Engine, now: datetime) -> MessageCounts:
    with engine.connect() as conn:
        return message_counts(conn, now)


def _receive(intake: Intake, at: datetime, *raws: bytes) -> None:
    for raw in raws:
        intake.receive(Arrival(raw, received_at=at))


def test_counts_stay_equal_to_a_full_count_through_every_kind_of_change(engine: Engine) -> None:
    intake = Intake(engine, MAPPING, clock=lambda: NOW)
    raw_first = Intake(engine, MAPPING, store_raw_first=True, clock=lambda: NOW)
    day_ago = NOW - timedelta(days=1)
    _receive(intake, day_ago, siu(), siu("S14", control_id="M2"), b"MSH|^~\\&|not a message")
    assert _tallied(engine, NOW) == _whole_table(engine)  # the first call counts everything

    # Settled rows join the mark; a reused key, a rejection and a second feed are counted.
    _receive(intake, day_ago + timedelta(hours=1), siu("S15", control_id="M2", status="Cancelled"))
    other = Intake(engine, MappingSettings.from_settings(Hl7Settings(feed="radiant")), clock=lambda: NOW)
    _receive(other, day_ago + timedelta(hours=2), siu(control_id="R1"))
    tallied = _tallied(engine, NOW)
    assert tallied == _whole_table(engine)
    assert ("epic", 1) in tallied.key_reused

    # Rows still settling, and pending rows (stored raw, processed later), are counted
    # fresh on every call: processing one moves it from "pending" to its outcome.
    recent = NOW - SETTLING / 2
    _receive(intake, recent, siu(control_id="M9", csn="7000000009"))
    _receive(raw_first, day_ago + timedelta(hours=3), siu(control_id="P1", csn="7000000011"))
    _receive(intake, day_ago + timedelta(hours=4), siu(control_id="M10", csn="7000000012"))
    pending = _tallied(engine, NOW)
    assert pending == _whole_table(engine)
    assert any(outcome == "pending" for _, _, outcome, _ in pending.by_type)
    assert raw_first.process_pending()
    processed = _tallied(engine, NOW + SETTLING)
    assert processed == _whole_table(engine)
    assert all(outcome != "pending" for _, _, outcome, _ in processed.by_type)


def test_a_store_emptied_under_the_same_engine_is_counted_again_from_the_start(engine: Engine) -> None:
    intake = Intake(engine, MAPPING, clock=lambda: NOW)
    _receive(intake, NOW - timedelta(days=2), siu(), siu("S14", control_id="M2"), siu(control_id="M3"))
    assert sum(count for *_, count in _tallied(engine, NOW).by_type) == 3
    with engine.begin() as conn:
        conn.execute(delete(exam_events))
        conn.execute(delete(exams))
        conn.execute(delete(messages))
    _receive(intake, NOW - timedelta(days=1), siu(control_id="N1", csn="7000000021"))
    assert _tallied(engine, NOW) == _whole_table(engine)


def test_feed_health_reads_each_feeds_newest_message_and_its_reused_keys(engine: Engine) -> None:
    intake = Intake(engine, MAPPING, clock=lambda: NOW)
    newest = NOW - timedelta(minutes=1)  # within SETTLING: not yet behind the mark
    _receive(intake, NOW - timedelta(days=3), siu())
    _receive(intake, NOW - timedelta(days=2), siu("S14", start="20261202093000"))  # MSG0001 again
    _receive(intake, newest, siu(control_id="M5", csn="7000000005"))
    with engine.connect() as conn:
        [epic] = feed_health(conn, NOW).feeds
    assert epic.last_message == newest
    assert epic.reused_keys == 1
