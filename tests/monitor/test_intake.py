"""The intake: store, apply, acknowledge. Runs on SQLite and, when reachable, PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import hl7
import pytest
from sqlalchemy import Engine, create_engine, func, select

from monitor.config import Hl7Settings
from monitor.feeds.hl7.intake import Arrival, Intake
from monitor.feeds.hl7.mapping import MappingSettings
from monitor.store.database import make_engine
from monitor.store.schema import exam_events, exams, messages
from tests.monitor.hl7_messages import BIRTH_DATE, MRN, PATIENT_NAME, hold, siu

CHICAGO = Hl7Settings(feed="epic", timezone="America/Chicago")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def intake(engine: Engine) -> Intake:
    return Intake(engine, MappingSettings.from_settings(CHICAGO))


def _count(engine: Engine, table: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def _exam(engine: Engine, external_id: str = "7000000001") -> dict[str, object]:
    with engine.connect() as conn:
        row = conn.execute(select(exams).where(exams.c.external_id == external_id)).mappings().one()
    return dict(row)


def test_booking_is_stored_applied_and_acknowledged(intake: Intake, engine: Engine) -> None:
    raw = siu()
    receipt = intake.receive(Arrival(raw))
    assert (receipt.outcome, receipt.ack_code) == ("accepted", "AA")
    exam = _exam(engine)
    assert exam["status"] == "scheduled"
    assert exam["mrn"] == MRN
    # 09:30 in Chicago (CST, UTC-6) is 15:30 UTC.
    assert exam["start_at"] == datetime(2026, 12, 1, 15, 30, tzinfo=UTC)
    assert exam["procedure_code"] == "IMG1234"
    ack = hl7.parse(receipt.ack(raw).decode())
    assert str(ack.segment("MSA")[1]) == "AA"
    assert str(ack.segment("MSA")[2]) == "MSG0001"
    with engine.connect() as conn:
        stored = conn.execute(select(messages)).mappings().one()
    assert stored["payload"] == raw and stored["outcome"] == "accepted" and stored["ack_code"] == "AA"


def test_resent_message_answers_aa_and_changes_nothing(intake: Intake, engine: Engine) -> None:
    intake.receive(Arrival(siu()))
    before = _exam(engine)
    # Some engines restamp MSH-7 when they resend: still the same message.
    again = intake.receive(Arrival(siu(sent_at="20261120081500")))
    assert (again.outcome, again.ack_code) == ("duplicate", "AA")
    assert _exam(engine) == before
    assert _count(engine, exam_events) == 1
    assert _count(engine, messages) == 1


def test_reused_control_id_with_another_body_is_applied_and_flagged(intake: Intake, engine: Engine) -> None:
    intake.receive(Arrival(siu()))
    reused = intake.receive(Arrival(siu("S13", start="20261202093000")))
    assert reused.ack_code == "AA" and reused.key_reused
    assert _exam(engine)["start_at"] == datetime(2026, 12, 2, 15, 30, tzinfo=UTC)
    with engine.connect() as conn:
        flagged = conn.execute(select(messages).where(messages.c.key_reused == 1)).mappings().one()
    assert flagged["original_id"] is not None and flagged["dedupe_key"] is None


def test_unprocessable_message_is_kept_and_answered_ae(intake: Intake, engine: Engine) -> None:
    raw = b"MSH|^~\\&|EPIC|HOSP|HIRO|RIO|20261120080000||SIU^S12|BAD1|P|2.5.1\rSCH|1|7000000009||||||||||\r"
    receipt = intake.receive(Arrival(raw))
    assert receipt.ack_code == "AE" and receipt.outcome == "rejected" and receipt.error_code
    ack = hl7.parse(receipt.ack(raw).decode())
    assert str(ack.segment("MSA")[1]) == "AE"
    assert ack.segment("ERR")
    with engine.connect() as conn:
        stored = conn.execute(select(messages)).mappings().one()
    assert stored["payload"] == raw and stored["outcome"] == "rejected" and stored["error"]
    assert _count(engine, exams) == 0


def test_garbage_without_msh_is_kept_and_answered_ae(intake: Intake, engine: Engine) -> None:
    receipt = intake.receive(Arrival(b"this is not HL7 at all"))
    assert receipt.ack_code == "AE"
    assert _count(engine, messages) == 1


def test_hold_without_patient_is_skipped_without_error(intake: Intake, engine: Engine) -> None:
    receipt = intake.receive(Arrival(hold()))
    assert (receipt.outcome, receipt.ack_code) == ("skipped", "AA")
    assert _count(engine, exams) == 0 and _count(engine, messages) == 1


def test_reschedule_moves_the_exam_and_keeps_history(intake: Intake, engine: Engine) -> None:
    intake.receive(Arrival(siu()))
    intake.receive(Arrival(siu("S13", control_id="MSG0002", start="20261203140000")))
    exam = _exam(engine)
    assert exam["start_at"] == datetime(2026, 12, 3, 20, 0, tzinfo=UTC)
    with engine.connect() as conn:
        kinds = conn.execute(select(exam_events.c.kind).order_by(exam_events.c.id)).scalars().all()
    assert kinds == ["booked", "rescheduled"]


def test_cancel_then_rebook_under_a_new_id_links_the_two_exams(intake: Intake, engine: Engine) -> None:
    intake.receive(Arrival(siu()))
    intake.receive(Arrival(siu("S15", control_id="MSG0002", status="Cancelled")))
    intake.receive(Arrival(siu(control_id="MSG0003", csn="7000000002", start="20261204093000")))
    old, new = _exam(engine, "7000000001"), _exam(engine, "7000000002")
    assert old["status"] == "cancelled"
    assert new["replaces_exam_id"] == old["id"]
    # An unrelated later booking does not steal the link.
    intake.receive(Arrival(siu(control_id="MSG0004", csn="7000000003", start="20261205093000")))
    assert _exam(engine, "7000000003")["replaces_exam_id"] is None


def test_a_rebooking_is_matched_by_the_start_the_cancelled_exam_had_at_the_time(
    intake: Intake, engine: Engine
) -> None:
    # 7000000001: booked for 1 December, moved to 1 March, then cancelled. A booking for
    # 2 December made after that is not its replacement (the exam had moved 89 days away);
    # 7000000002, cancelled while still on 3 December, is.
    intake.receive(Arrival(siu(sent_at="20261101080000")))
    intake.receive(
        Arrival(siu(control_id="M2", csn="7000000002", start="20261203093000", sent_at="20261101090000"))
    )
    intake.receive(Arrival(siu("S13", control_id="M3", start="20270301093000", sent_at="20261102080000")))
    intake.receive(
        Arrival(
            siu("S15", control_id="M4", status="Cancelled", start="20270301093000", sent_at="20261103080000")
        )
    )
    intake.receive(
        Arrival(
            siu(
                "S15",
                control_id="M5",
                csn="7000000002",
                status="Cancelled",
                start="20261203093000",
                sent_at="20261103090000",
            )
        )
    )
    intake.receive(
        Arrival(siu(control_id="M6", csn="7000000003", start="20261202093000", sent_at="20261104080000"))
    )
    assert _exam(engine, "7000000003")["replaces_exam_id"] == _exam(engine, "7000000002")["id"]


def test_no_phi_in_what_the_store_says_about_a_rejection(intake: Intake, engine: Engine) -> None:
    raw = siu(start="2026-12-01T09:30")  # a malformed timestamp in a message full of PHI
    receipt = intake.receive(Arrival(raw))
    assert receipt.ack_code == "AE"
    ack = receipt.ack(raw).decode()
    with engine.connect() as conn:
        error = conn.execute(select(messages.c.error)).scalar_one()
    for phi in (MRN, PATIENT_NAME.split("^")[0], BIRTH_DATE):
        assert phi not in receipt.reason and phi not in error and phi not in ack


def test_a_batch_is_one_commit_and_keeps_order(intake: Intake, engine: Engine) -> None:
    batch = [
        Arrival(siu()),
        Arrival(siu("S13", control_id="MSG0002", start="20261203140000")),
        Arrival(siu()),  # duplicate inside the same batch
    ]
    receipts = intake.receive_batch(batch)
    assert [r.outcome for r in receipts] == ["accepted", "accepted", "duplicate"]
    assert _exam(engine)["status"] == "scheduled"
    assert _count(engine, exam_events) == 2


def test_store_unavailable_answers_ar_so_the_sender_retries() -> None:
    dead = create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 1}
    )
    intake = Intake(dead, MappingSettings.from_settings(CHICAGO))
    receipts = intake.receive_batch([Arrival(siu()), Arrival(siu(control_id="MSG0002"))])
    assert [r.ack_code for r in receipts] == ["AR", "AR"]
    assert all(r.message_id is None for r in receipts)


def test_after_storing_raw_mode_acks_first_and_applies_later(engine: Engine) -> None:
    intake = Intake(engine, MappingSettings.from_settings(CHICAGO), store_raw_first=True)
    receipt = intake.receive(Arrival(siu()))
    assert (receipt.outcome, receipt.ack_code) == ("pending", "AA")
    assert _count(engine, exams) == 0
    [applied] = intake.process_pending()
    assert applied.outcome == "accepted" and applied.exam_ids == (_exam(engine)["id"],)
    assert _exam(engine)["status"] == "scheduled"
    assert intake.process_pending() == []


def test_feed_zone_is_applied_across_dst(engine: Engine) -> None:
    intake = Intake(engine, MappingSettings.from_settings(Hl7Settings(timezone="America/New_York")))
    intake.receive(Arrival(siu(start="20261031093000")))  # EDT, UTC-4
    intake.receive(Arrival(siu(control_id="M2", csn="7000000002", start="20261102093000")))  # EST, UTC-5
    assert _exam(engine, "7000000001")["start_at"] == datetime(2026, 10, 31, 13, 30, tzinfo=UTC)
    assert _exam(engine, "7000000002")["start_at"] == datetime(2026, 11, 2, 14, 30, tzinfo=UTC)


def test_unsupported_message_type_is_kept_and_answered_ar(intake: Intake, engine: Engine) -> None:
    raw = b"MSH|^~\\&|EPIC|HOSP|HIRO|RIO|20261120080000||QRY^Q01|Q1|P|2.5.1\rQRD|20261120||R|I|Q1\r"
    receipt = intake.receive(Arrival(raw))
    assert (receipt.outcome, receipt.ack_code, receipt.error_code) == ("rejected", "AR", "200")
    ack = hl7.parse(receipt.ack(raw).decode())
    assert str(ack.segment("ERR")[3]).startswith("200")
    assert _count(engine, messages) == 1


def test_content_the_database_refuses_is_kept_and_answered_ae(
    intake: Intake, engine: Engine, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite stores a NUL character; PostgreSQL refuses it in text columns")
    good = siu(control_id="OK1", csn="7000000005")
    receipts = intake.receive_batch([Arrival(good), Arrival(siu(csn="70000\x0000001"))])
    assert [(r.outcome, r.ack_code) for r in receipts] == [("accepted", "AA"), ("rejected", "AE")]
    assert "DataError" in receipts[1].reason
    with engine.connect() as conn:
        outcomes = dict(conn.execute(select(messages.c.control_id, messages.c.outcome)).all())
    assert outcomes == {"OK1": "accepted", "MSG0001": "rejected"}
    assert _count(engine, exams) == 1


def test_a_mapping_bug_is_stored_answered_ae_and_logged_without_the_message_text(
    intake: Intake, engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(raw: bytes, settings: object) -> object:
        raise ValueError(f"cannot read {MRN} {PATIENT_NAME}")  # as a careless bug might word it

    monkeypatch.setattr("monitor.feeds.hl7.intake.to_events", broken)
    with caplog.at_level("DEBUG"):
        receipt = intake.receive(Arrival(siu()))
    assert (receipt.outcome, receipt.ack_code, receipt.error_code) == ("rejected", "AE", "207")
    assert "ValueError at" in caplog.text and "broken" in caplog.text  # where it failed, for the fix
    assert MRN not in caplog.text and PATIENT_NAME not in caplog.text
    assert _count(engine, messages) == 1
