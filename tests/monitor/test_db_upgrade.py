"""``hiro-monitor db upgrade`` migrates a database created by the first released schema (0001).

The rows are written with plain SQL against 0001's own tables (today's intake expects
tables 0001 did not have), then the command migrates to the newest revision: the rows must
survive and ``hiro-monitor exams --json`` must still list the exam. SQLite, and PostgreSQL
when reachable.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import JSON, bindparam, text

from monitor.cli import main
from monitor.commands.db import head_revision
from monitor.feeds.hl7.intake import content_key
from monitor.store.database import current_revision, make_engine, upgrade

FIRST = "0001"
NOW = datetime(2026, 11, 20, 13, 0)  # naive UTC: how 0001 stored times

INSERT_MESSAGE = text(
    "INSERT INTO messages (id, feed, sender_application, sender_facility, control_id, message_type,"
    " received_at, peer, payload, body_digest, outcome, ack_code, error_code, error, dedupe_key,"
    " duplicates, original_id, key_reused, purged_at) VALUES (1, 'epic', 'EPIC', 'HOSP', 'MSG0001',"
    " 'SIU^S12', :now, '127.0.0.1', :payload, :digest, 'accepted', 'AA', '', '',"
    " 'EPIC|HOSP|MSG0001', 0, NULL, 0, NULL)"
)
INSERT_EXAM = text(
    "INSERT INTO exams (id, source, external_id, status, last_event, status_code, mrn, patient_ids,"
    " accession, order_number, procedure_code, procedure_text, procedure_system, modality, location,"
    " resources, start_at, duration_minutes, comments, extra, replaces_exam_id, last_message_id,"
    " created_at, updated_at) VALUES (1, 'epic', '7000000001', 'booked', 'booked', 'Booked',"
    " 'E100042', :ids, NULL, NULL, 'IMG1234', 'CT CHEST ABDOMEN PELVIS W CONTRAST', 'EAP', 'CT',"
    " 'CT3', :empty, :start, 30, :empty, :extra, NULL, 1, :now, :now)"
).bindparams(bindparam("ids", type_=JSON), bindparam("empty", type_=JSON), bindparam("extra", type_=JSON))
INSERT_EVENT = text(
    "INSERT INTO exam_events (id, exam_id, message_id, kind, trigger, status_code, start_at, location,"
    " procedure_code, recorded_at) VALUES (1, 1, 1, 'booked', 'SIU^S12', 'Booked', :start, 'CT3',"
    " 'IMG1234', :now)"
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database (no tables): a SQLite file, and the PostgreSQL server when reachable."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    url: str = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


def _create_first_release_database(url: str) -> None:
    engine = make_engine(url)
    upgrade(engine, FIRST)
    assert current_revision(engine) == FIRST
    with engine.begin() as conn:
        conn.execute(INSERT_MESSAGE, {"now": NOW, "payload": b"MSH|^~\\&|EPIC|HOSP\r", "digest": "0" * 64})
        start = datetime(2026, 12, 1, 15, 30)
        conn.execute(
            INSERT_EXAM,
            {
                "ids": [{"value": "E100042", "authority": "EPI", "type_code": "MR"}],
                "empty": [],
                "extra": {},
                "start": start,
                "now": NOW,
            },
        )
        conn.execute(INSERT_EVENT, {"start": start, "now": NOW})
    engine.dispose()


def test_db_upgrade_migrates_a_first_release_database_and_keeps_its_rows(
    empty_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _create_first_release_database(empty_url)
    assert main(["--database", empty_url, "db", "current"]) == 1
    assert "behind" in capsys.readouterr().out

    assert main(["--database", empty_url, "db", "upgrade"]) == 0
    out = capsys.readouterr().out
    assert f"upgraded from {FIRST} to" in out

    engine = make_engine(empty_url)
    assert current_revision(engine) == head_revision(engine) != FIRST
    with engine.connect() as conn:
        assert conn.execute(text("SELECT control_id, ack_code FROM messages")).all() == [("MSG0001", "AA")]
        assert conn.execute(text("SELECT kind FROM exam_events WHERE exam_id = 1")).scalar_one() == "booked"
        # 0008: a resend of the old message is found by its content; the old event's time is
        # its receipt time, the best there is.
        assert conn.execute(text("SELECT content_key FROM messages")).scalar_one() == content_key(
            "epic", ("EPIC", "HOSP", "MSG0001"), "0" * 64
        )
        times = conn.execute(text("SELECT first_event_time, last_event_time FROM exams")).one()
        assert [str(t)[:19] for t in times] == ["2026-11-20 13:00:00"] * 2
    engine.dispose()

    assert main(["--database", empty_url, "db", "current"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["--database", empty_url, "db", "upgrade"]) == 0
    assert "already at revision" in capsys.readouterr().out

    assert main(["--database", empty_url, "exams", "--json"]) == 0
    [exam] = json.loads(capsys.readouterr().out)
    assert exam["external_id"] == "7000000001" and exam["status"] == "booked"
    assert exam["procedure_code"] == "IMG1234" and exam["location"] == "CT3"
    assert exam["start"] == "2026-12-01T15:30:00+00:00"


def test_db_current_on_an_unreachable_database_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql+psycopg://nobody:secret@127.0.0.1:1/none"
    assert main(["--database", url, "db", "current"]) == 3
    out = capsys.readouterr().out
    assert "cannot reach" in out and "secret" not in out
