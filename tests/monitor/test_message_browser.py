"""The integration team's message browser: search, a message's fields by name, reprocessing.

Reprocessing is tried the way an integration engineer meets it: a mapping bug rejects
bookings (AE 207), the bug is fixed, the rejected messages go through the intake again.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from monitor.clock import FixedClock
from monitor.config import Settings
from monitor.feeds.hl7 import intake as intake_module
from monitor.feeds.hl7.intake import Arrival, Intake
from monitor.feeds.hl7.mapping import MappingSettings
from monitor.feeds.hl7.structure import lay_out
from monitor.store.database import make_engine, upgrade
from monitor.store.message_browser import MessageFilter, search_messages
from monitor.store.schema import audit_log, exams, messages
from tests.monitor.hl7_messages import BIRTH_DATE, MRN, PATIENT_NAME, siu
from tests.monitor.trial_setup import NOW, cli


def _intake(engine: Engine, minutes: int = 0) -> Intake:
    clock = FixedClock(NOW + timedelta(minutes=minutes))
    return Intake(engine, MappingSettings.from_settings(Settings().hl7), clock=clock)


@pytest.fixture
def store(database_url: str) -> Engine:
    engine = make_engine(database_url)
    upgrade(engine)
    return engine


def _broken_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(raw: bytes, mapping: Any) -> Any:
        raise KeyError("a mapping bug")

    monkeypatch.setattr(intake_module, "to_events", bug)


def test_a_rejected_booking_is_reprocessed_once_after_the_fix_and_its_resend_is_then_answered_aa(
    store: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    booking = siu(control_id="BK1", csn="7100")
    with monkeypatch.context() as patched:
        _broken_mapping(patched)
        first = _intake(store).receive(Arrival(booking, peer="10.0.0.7"))
    assert (first.outcome, first.ack_code, first.error_code) == ("rejected", "AE", "207")
    assert first.message_id is not None
    with store.connect() as conn:
        assert conn.execute(select(exams.c.id)).first() is None

    fixed = _intake(store, minutes=5)
    done = fixed.reprocess(first.message_id, by="integration-ann", client="10.1.1.1")
    assert done.done and done.outcome == "accepted" and done.original == first.message_id
    assert done.attempt is not None and done.attempt != first.message_id
    with store.connect() as conn:
        exam = conn.execute(select(exams.c.id, exams.c.external_id, exams.c.last_message_id)).one()
        attempt = conn.execute(select(messages).where(messages.c.id == done.attempt)).one()
        original = conn.execute(select(messages).where(messages.c.id == first.message_id)).one()
        audits = conn.execute(select(audit_log).where(audit_log.c.action == "message.reprocess")).all()
    assert (exam.external_id, exam.last_message_id, done.exam_ids) == ("7100", done.attempt, (exam.id,))
    assert (attempt.reprocess_of, attempt.peer) == (first.message_id, "reprocess")
    assert attempt.outcome == "accepted"
    assert (original.outcome, original.ack_code) == ("rejected", "AE")  # what its sender was told stays
    assert [(a.username, a.object_id, a.client) for a in audits] == [
        ("integration-ann", str(first.message_id), "10.1.1.1")
    ]

    again = fixed.reprocess(first.message_id, by="integration-ann")  # idempotent
    assert not again.done and again.attempt == done.attempt
    assert "already reprocessed" in again.reason
    via_attempt = fixed.reprocess(done.attempt, by="integration-ann")  # an attempt names its original
    assert not via_attempt.done and via_attempt.original == first.message_id

    resent = fixed.receive(Arrival(booking))  # the sender resends the same message
    assert (resent.outcome, resent.ack_code) == ("duplicate", "AA")
    with store.connect() as conn:
        assert len(conn.execute(select(messages.c.id)).all()) == 2  # nothing stored twice
        assert len(conn.execute(select(exams.c.id)).all()) == 1


def test_what_cannot_be_reprocessed_is_refused_with_its_reason(store: Engine) -> None:
    intake = _intake(store)
    accepted = intake.receive(Arrival(siu(control_id="OK1", csn="7200")))
    bad_time = intake.receive(Arrival(siu(control_id="BAD1", csn="7201", start="20261301093000")))
    assert accepted.message_id is not None and bad_time.message_id is not None
    assert "only rejected messages" in intake.reprocess(accepted.message_id, by="x").reason
    assert intake.reprocess(999_999, by="x").reason == "there is no message 999999"
    other_feed = Intake(
        store, MappingSettings.from_settings(Settings.model_validate({"hl7": {"feed": "other"}}).hl7)
    )
    assert "came from feed 'epic'" in other_feed.reprocess(bad_time.message_id, by="x").reason
    # Still wrong after "the fix": a new attempt, rejected again, and another may follow.
    tries = [intake.reprocess(bad_time.message_id, by="x") for _ in range(2)]
    assert [(t.done, t.outcome) for t in tries] == [(True, "rejected"), (True, "rejected")]
    assert tries[0].attempt != tries[1].attempt
    assert "AIS-4" in tries[0].reason


def test_search_pages_newest_first_without_gaps_and_finds_by_exam_and_outcome(store: Engine) -> None:
    for number in range(7):
        _intake(store, minutes=number).receive(Arrival(siu(control_id=f"C{number}", csn=f"73{number}")))
    _intake(store, minutes=9).receive(Arrival(siu(control_id="CBAD", csn="7399", start="2026130109")))
    with store.connect() as conn:
        seen: list[str] = []
        page = search_messages(conn, MessageFilter(), limit=3)
        while True:
            seen += [row.control_id for row in page.rows]
            if page.next is None:
                break
            page = search_messages(conn, MessageFilter(), page.next, limit=3)
        assert seen == ["CBAD", "C6", "C5", "C4", "C3", "C2", "C1", "C0"]
        rejected = search_messages(conn, MessageFilter(outcome="rejected")).rows
        assert [row.control_id for row in rejected] == ["CBAD"]
        by_csn = search_messages(conn, MessageFilter(appointment="733")).rows
        assert [row.control_id for row in by_csn] == ["C3"]
        by_mrn = search_messages(conn, MessageFilter(mrn=MRN, message_type="SIU")).rows
        assert len(by_mrn) == 7  # the rejected one wrote no exam: found by control id, type, time
        window = MessageFilter(since=NOW + timedelta(minutes=2), until=NOW + timedelta(minutes=4))
        assert [row.control_id for row in search_messages(conn, window).rows] == ["C3", "C2"]
        assert search_messages(conn, MessageFilter(control_id="C5")).rows[0].message_type == "SIU^S12"


def test_fields_carry_their_hl7_names_from_the_message_version() -> None:
    version, segments = lay_out(siu())
    named = {field.position: (field.name, field.value) for segment in segments for field in segment.fields}
    assert version == "2.5.1"
    assert named["PID-3"][0] == "Patient Identifier List"
    assert named["MSH-10"] == ("Message Control Id", "MSG0001")
    assert named["SCH-2"][0] == "Filler Appointment Id"
    assert named["MSH-1"][1] == "|" and named["MSH-2"][1] == "^~\\&"
    z_segment = lay_out(siu() + b"ZDS|1|x\r")[1][-1]
    assert (z_segment.segment, z_segment.fields[0].position, z_segment.fields[0].name) == ("ZDS", "ZDS-1", "")


def test_the_cli_searches_shows_and_reprocesses_and_keeps_phi_out_of_the_listing(
    store: Engine, database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:
        _broken_mapping(patched)
        for number in range(2):
            _intake(store, minutes=number).receive(Arrival(siu(control_id=f"R{number}", csn=f"74{number}")))

    code, out, _ = cli(capsys, database_url, "messages", "search", "--outcome", "rejected")
    assert code == 0 and "R1" in out and "R0" in out and "internal mapping" in out
    assert PATIENT_NAME.split("^")[0] not in out and MRN not in out and BIRTH_DATE not in out
    assert max(len(line) for line in out.splitlines()) <= 80

    code, out, _ = cli(capsys, database_url, "messages", "search", "--limit", "1", "--json")
    page = json.loads(out)
    assert [m["control_id"] for m in page["messages"]] == ["R1"] and page["next"]
    code, out, _ = cli(capsys, database_url, "messages", "search", "--after", page["next"], "--json")
    assert [m["control_id"] for m in json.loads(out)["messages"]] == ["R0"]

    first_id = page["messages"][0]["id"]
    code, out, _ = cli(capsys, database_url, "messages", "show", str(first_id))
    assert code == 0 and "PID-3    Patient Identifier List" in out and "exams touched: none" in out
    assert "MSA|AE|R1" in out and "ERR|||207^Application internal error^HL70357" in out  # the ACK it got

    code, out, _ = cli(capsys, database_url, "messages", "reprocess", "--rejected-since", "2026-11-25")
    assert code == 0, out
    assert out.count("reprocessed as message") == 2 and "accepted" in out
    code, out, _ = cli(capsys, database_url, "messages", "reprocess", "--rejected-since", "2026-11-25")
    assert "no rejected message of feed epic waits" in out
    code, out, _ = cli(capsys, database_url, "messages", "show", str(first_id))
    assert "reprocessed as message" in out
    with store.connect() as conn:
        actions = [row.action for row in conn.execute(select(audit_log.c.action).order_by(audit_log.c.id))]
    assert actions.count("message.reprocess") == 2 and actions.count("view") == 2
