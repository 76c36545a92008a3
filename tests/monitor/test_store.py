"""The store: migrations match the tables, times round-trip in UTC, retention purges PHI."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from monitor.store.database import PING_AFTER_IDLE_SECONDS, current_revision, make_engine
from monitor.store.driver import driver_for
from monitor.store.messages import purge_payloads
from monitor.store.schema import findings, messages, metadata, notifications
from tests.monitor.trial_setup import load_examples

NEW_YORK = ZoneInfo("America/New_York")


def test_migrations_create_exactly_the_declared_tables(database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert differences == []


def test_upgrade_records_the_head_revision(database_url: str) -> None:
    engine = make_engine(database_url)
    assert current_revision(engine) == "0019"
    engine.dispose()


def test_sqlite_store_is_durable_by_configuration(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/d.db")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    engine.dispose()


def _message(received_at: datetime, control_id: str) -> dict[str, object]:
    return {
        "feed": "epic",
        "control_id": control_id,
        "received_at": received_at,
        "payload": b"MSH|...PHI...",
        "body_digest": control_id,
        "outcome": "accepted",
        "dedupe_key": control_id,
    }


def test_retention_purges_old_payloads_and_keeps_the_rows(database_url: str) -> None:
    engine = make_engine(database_url)
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(messages.insert(), [_message(now - timedelta(days=91), "old"), _message(now, "new")])
    assert purge_payloads(engine, now, retention_days=90) == 1
    assert purge_payloads(engine, now, retention_days=90) == 0
    with engine.connect() as conn:
        rows = {r.control_id: r for r in conn.execute(select(messages))}
    engine.dispose()
    assert rows["old"].payload is None and rows["old"].purged_at == now
    assert rows["new"].payload is not None and rows["new"].purged_at is None


def test_naive_datetimes_are_refused(database_url: str) -> None:
    engine = make_engine(database_url)
    with pytest.raises(Exception, match="naive"), engine.begin() as conn:
        conn.execute(messages.insert(), [_message(datetime(2026, 1, 1), "naive")])
    engine.dispose()


@pytest.mark.postgres
def test_a_pooled_connection_the_server_dropped_is_replaced(postgres_url: str) -> None:
    """A connection idle for a second or more is pinged and replaced when its server end is gone
    (a restart, a failover); one used within the second is not pinged: the one statement that
    meets it fails, and the pool then drops every connection it holds."""
    engine = make_engine(postgres_url, pool_size=2)

    def backend() -> int:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())

    def kill(pid: int) -> None:
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

    first = backend()
    kill(first)
    time.sleep(PING_AFTER_IDLE_SECONDS + 0.1)
    second = backend()  # the ping found the dead one: no error, another server process
    assert second != first
    kill(second)
    with pytest.raises(OperationalError):
        backend()  # used a moment ago: not pinged, so this one statement fails ...
    assert backend() not in (first, second)  # ... and the next gets a live connection
    engine.dispose()


def test_rows_written_on_the_driver_read_back_as_rows_written_through_core(database_url: str) -> None:
    """The evaluation's bulk inserts (findings, occurrences, outbox rows) skip Core's parameter
    processing: dates, UTC times, JSON, booleans and Python-side defaults must come out the same."""
    engine = make_engine(database_url)
    load_examples(engine)
    now = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)
    finding = {
        "kind": "missed", "severity": "critical", "trial": "ONC-2101", "subject": "2101-001",
        "enrolment_id": 1, "timepoint": "screening", "occurrence_key": "o#1", "occurrence_label": "Screening",
        "exam_id": None, "window_start": date(2026, 3, 1), "window_end": date(2026, 3, 29),
        "detail": "closed", "status": "open", "opened_at": now, "updated_at": now,
    }  # fmt: skip
    notification = {
        "dedupe_key": "k", "audience": "coordinator", "channel": "slack", "address": "slack:#x",
        "kind": "alert", "trial": "ONC-2101", "enrolment_id": 1, "exam_id": None, "finding_key": "f",
        "finding_kind": "missed", "thread_key": "", "due_at": now + timedelta(hours=1), "status": "pending",
        "next_attempt_at": now, "last_error": "", "summary": "s", "created_at": now, "updated_at": now,
    }  # fmt: skip
    later = {"window_end": date(2026, 4, 5), "due_at": (now + timedelta(days=1)).astimezone(NEW_YORK)}
    with engine.begin() as conn:
        for table, row in ((findings, finding), (notifications, notification)):
            key = "key" if table is findings else "dedupe_key"
            second = {**row, **{name: value for name, value in later.items() if name in row}}
            conn.execute(table.insert(), [{**row, key: "core"}, {**second, key: "core-2"}])
            driver_for(conn).insert_many(conn, table, [{**row, key: "driver"}, {**second, key: "driver-2"}])
            read = {
                found[key]: {name: value for name, value in found.items() if name not in ("id", key)}
                for found in (r._asdict() for r in conn.execute(select(table).where(table.c[key] != "")))
            }
            assert read["driver"] == read["core"], table.name
            assert read["driver-2"] == read["core-2"] != read["core"], table.name  # per row, not the first's
            assert read["core"]["window_start" if table is findings else "maybe_sent"] in (
                date(2026, 3, 1),
                False,
            )
    engine.dispose()
