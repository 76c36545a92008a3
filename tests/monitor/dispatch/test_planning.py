"""Planned notifications into the outbox: by dedupe key, moved, cancelled, never duplicated."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, update

from monitor.cli import main
from monitor.config import Settings
from monitor.evaluation import Evaluator
from monitor.feeds.hl7.intake import Arrival
from monitor.store.outbox import OutboxStatus
from monitor.store.outbox.planning import plan_notifications
from monitor.store.schema import notifications
from rules import Audience, FindingKind, NotificationKind, PlannedNotification
from tests.monitor.dispatch.office import BOOKING, ONC, Office, enrol_due_in
from tests.monitor.hl7_messages import siu
from tests.monitor.trial_setup import NOW, enrolment_id
from tests.notifiers.slack_server import SlackServer

START = "2026-12-01T14:30+00:00"  # the default SIU: Tue 1 Dec 2026 09:30 New York
MOVED = "2026-12-03T14:30+00:00"  # rescheduled to Thu 3 Dec, still in the Week 72 window


def _onc(office: Office, status: str | None = None) -> dict[str, str]:
    """ONC-2101 rows about exam 1: dedupe key -> status."""
    rows = office.rows(exam_id=1) if status is None else office.rows(exam_id=1, status=status)
    return {row.dedupe_key: row.status for row in rows if row.trial == "ONC-2101"}


def test_a_booking_plans_the_booking_notice_reminders_and_sheets_as_pending_rows(office: Office) -> None:
    receipt, summary = office.feed(siu(mrn="E10001"))
    assert receipt.exam_ids == (1,)
    assert summary.outbox.added >= 10
    rows = {(r.kind, r.address, r.due_at) for r in office.rows(exam_id=1)}
    start = datetime(2026, 12, 1, 14, 30, tzinfo=UTC)
    assert rows == {
        ("booking", "email:onc2101-team@example.org", NOW),
        ("booking", "slack:#onc-2101-imaging", NOW),
        ("reminder", "email:onc2101-team@example.org", start - timedelta(hours=72)),
        ("reminder", "slack:#onc-2101-imaging", start - timedelta(hours=72)),
        ("reminder", "email:onc2101-team@example.org", start - timedelta(hours=24)),
        ("reminder", "slack:#onc-2101-imaging", start - timedelta(hours=24)),
        ("instructions", "slack:#ct3-console", start - timedelta(hours=24)),
        ("instructions", "slack:#ct3-console", start - timedelta(hours=2)),
    }
    row = office.row(f"{BOOKING}|{START}")
    assert (row.status, row.attempts, row.next_attempt_at, row.channel) == ("pending", 0, NOW, "slack")
    assert (row.thread_key, row.audience, row.finding_kind) == ("exam:1", "coordinator", "in_window")
    assert "E10001" not in row.summary and "Week 72 restaging" in row.summary


def test_re_evaluating_and_replaying_the_feed_plans_no_second_row(office: Office) -> None:
    Evaluator(office.engine, office.settings).evaluate_all(office.clock())  # every enrolment once
    office.feed(siu(mrn="E10001"))
    before = {row.dedupe_key: (row.id, row.status) for row in office.rows()}
    office.clock.advance(hours=1)
    office.feed(siu(mrn="E10001"))  # the same message again (a resend after a lost ACK)
    office.feed(siu(mrn="E10001", control_id="MSG0001-RESENT"))  # the same booking, a new control id
    summary = Evaluator(office.engine, office.settings).evaluate_all(office.clock())
    assert summary.outbox.added == 0 and summary.outbox.cancelled == 0
    assert {row.dedupe_key: (row.id, row.status) for row in office.rows()} == before


def test_a_reschedule_cancels_the_pending_reminders_and_plans_new_ones(office: Office) -> None:
    office.feed(siu(mrn="E10001"))
    _, summary = office.feed(siu("S13", control_id="MSG0002", mrn="E10001", start="20261203093000"))
    assert summary.outbox.cancelled == 8 and summary.outbox.added == 8
    old = {key: status for key, status in _onc(office).items() if key.endswith(START)}
    new = {key: status for key, status in _onc(office).items() if key.endswith(MOVED)}
    assert set(old.values()) == {"cancelled"} and len(old) == 8
    assert set(new.values()) == {"pending"} and len(new) == 8


def test_moving_the_exam_back_reinstates_the_cancelled_rows(office: Office) -> None:
    office.feed(siu(mrn="E10001"))
    office.feed(siu("S13", control_id="MSG0002", mrn="E10001", start="20261203093000"))
    _, summary = office.feed(siu("S13", control_id="MSG0003", mrn="E10001"))
    assert summary.outbox.reinstated == 8 and summary.outbox.added == 0
    assert {key for key, status in _onc(office).items() if status == "pending"} == {
        key for key in _onc(office) if key.endswith(START)
    }


def test_a_cancellation_cancels_pending_reminders_and_plans_the_coordinators_alert(office: Office) -> None:
    office.feed(siu(mrn="E10001"))
    _, summary = office.feed(siu("S15", control_id="MSG0002", status="Cancelled", mrn="E10001"))
    assert summary.outbox.cancelled == 8
    alerts = office.rows(exam_id=1, status="pending")
    assert {(row.kind, row.finding_kind, row.address, row.due_at) for row in alerts} == {
        ("alert", "cancelled", "email:onc2101-team@example.org", NOW),
        ("alert", "cancelled", "slack:#onc-2101-imaging", NOW),
    }
    assert {row.thread_key for row in alerts} == {"exam:1"}


def test_a_due_alert_is_not_pushed_back_by_the_next_evaluation(office: Office) -> None:
    office.feed(siu(mrn="E10001"))
    before = office.row(f"{BOOKING}|{START}").due_at
    office.clock.advance(minutes=15)
    summary = Evaluator(office.engine, office.settings).evaluate_all(office.clock())
    assert summary.outbox.moved == 0
    assert office.row(f"{BOOKING}|{START}").due_at == before == NOW


def test_sent_and_failed_rows_are_never_touched_by_planning(office: Office) -> None:
    office.feed(siu(mrn="E10001"))
    key = f"{BOOKING}|{START}"
    office.keep_only(key)
    office.dispatch()
    assert office.row(key).status == OutboxStatus.SENT
    office.feed(siu("S15", control_id="MSG0002", status="Cancelled", mrn="E10001"))
    assert office.row(key).status == OutboxStatus.SENT  # delivered stays delivered


def test_the_evaluate_command_plans_notifications_too(office: Office) -> None:
    office.intake.receive(Arrival(siu(mrn="E10001")))
    assert office.rows() == []
    args = ["--database", office.settings.database.url, "--log-level", "WARNING", "evaluate"]
    assert main(args, clock=office.clock) == 0
    # What a full evaluation right after plans is already there: the command wrote it.
    summary = Evaluator(office.engine, office.settings).evaluate_all(office.clock(), full=True)
    planned = {n.dedupe_key for n in summary.evaluation.planned_notifications}
    assert planned and summary.outbox.added == 0
    assert planned <= {row.dedupe_key for row in office.rows()}


def _planned(key: str, due_at: datetime, enrolment: int) -> PlannedNotification:
    return PlannedNotification(
        audience=Audience.COORDINATOR,
        address="slack:#onc-2101-imaging",
        kind=NotificationKind.REMINDER,
        due_at=due_at,
        finding_key="ONC-2101:2101-001:restaging#1:in_window",
        finding_kind=FindingKind.IN_WINDOW,
        dedupe_key=key,
        trial="ONC-2101",
        enrolment_id=enrolment,
        occurrence_key="ONC-2101:2101-001:restaging#1",
    )


def test_a_pending_row_whose_plan_moved_is_moved_and_a_retrying_one_keeps_its_backoff(office: Office) -> None:
    enrolment = enrolment_id(office.engine, "ONC-2101", "2101-001")
    later, later_still = NOW + timedelta(days=1), NOW + timedelta(days=2)
    with office.engine.begin() as conn:
        plan_notifications(conn, [_planned("k1", later, enrolment)], {enrolment}, NOW)
        changes = plan_notifications(conn, [_planned("k1", later_still, enrolment)], {enrolment}, NOW)
    row = office.row("k1")
    assert changes.moved == 1 and row.due_at == row.next_attempt_at == later_still
    assert (row.thread_key, row.exam_id) == ("visit:ONC-2101:2101-001:restaging#1", None)
    with office.engine.begin() as conn:  # a retry pushed it back: moving the plan earlier keeps the backoff
        conn.execute(
            update(notifications).values(attempts=1, next_attempt_at=later_still + timedelta(hours=1))
        )
        plan_notifications(conn, [_planned("k1", later, enrolment)], {enrolment}, NOW)
    row = office.row("k1")
    assert row.due_at == later and row.next_attempt_at == later_still + timedelta(hours=1)
    with office.engine.begin() as conn:  # no longer planned: cancelled; other enrolments untouched
        changes = plan_notifications(conn, [], {enrolment}, NOW)
    assert changes.cancelled == 1 and office.row("k1").status == "cancelled"


# -- a quiet first run ----------------------------------------------------------------------

# Research exams already on the schedule when the monitor is first pointed at it (MRN, CSN,
# start, orderable, room, modality): ONC-2101 2101-001 and 2101-002 in their windows (booking
# notices), NEU-4405 4405-001 early (an alert).
ALREADY_BOOKED = (
    ("E10001", "7100000001", "20261201093000", "IMG1234", "CT3", "CT"),
    ("E10002", "7100000002", "20261127140000", "IMG1234", "CT1", "CT"),
    ("E10009", "7100000003", "20261130100000", "IMG3301", "MR2", "MR"),
)


def _store_existing_schedule(office: Office) -> list[int]:
    """The bookings above stored through the intake, as a feed replay before any evaluation."""
    exam_ids: list[int] = []
    for number, (mrn, csn, start, code, room, modality) in enumerate(ALREADY_BOOKED):
        raw = siu(control_id=f"OLD{number}", csn=csn, start=start, mrn=mrn, code=code, room=room,
                  modality=modality)  # fmt: skip
        exam_ids.extend(office.intake.receive(Arrival(raw)).exam_ids)
    return exam_ids


@pytest.fixture
def quiet_office(database_url: str, slack: SlackServer) -> Iterator[Office]:
    """The office with ``[dispatch] quiet_first_run`` on (the default; ``Office`` turns it off)."""
    office = Office(database_url, slack, None, dispatch={"quiet_first_run": True})
    yield office
    office.close()


def test_the_first_evaluation_of_an_existing_schedule_skips_booking_notices_but_plans_reminders(
    quiet_office: Office,
) -> None:
    office = quiet_office
    exam_ids = _store_existing_schedule(office)
    assert len(exam_ids) == 3 and office.rows() == []
    summary = Evaluator(office.engine, office.settings).evaluate_all(office.clock())
    kinds = {
        exam_id: {(row.kind, row.status) for row in office.rows(exam_id=exam_id)} for exam_id in exam_ids
    }
    for exam_id in exam_ids:
        assert ("booking", "pending") not in kinds[exam_id], exam_id
        assert {("reminder", "pending"), ("instructions", "pending")} <= kinds[exam_id], exam_id
    onc_1, onc_2, neu = exam_ids
    assert ("booking", "skipped") in kinds[onc_1] and ("booking", "skipped") in kinds[onc_2]
    assert ("alert", "pending") in kinds[neu]  # problems are still news
    skipped = office.rows(status="skipped")
    assert {row.kind for row in skipped} == {"booking"} and len(skipped) == 4  # 2 exams x 2 addresses
    assert summary.outbox.skipped == 4 and summary.outbox.added == len(office.rows()) - 4
    # Skipped stays skipped: the next sweep and a replay of the same booking plan nothing anew,
    # and the dispatcher never claims a skipped row.
    office.clock.advance(hours=1)
    again = Evaluator(office.engine, office.settings).evaluate_all(office.clock())
    office.feed(siu(control_id="OLD0-RESENT", csn="7100000001", mrn="E10001"))
    assert again.outbox.added == again.outbox.skipped == 0
    assert {row.id for row in office.rows(status="skipped")} == {row.id for row in skipped}
    office.keep_only()
    office.dispatch()
    assert {row.status for row in office.rows(kind="booking")} == {"skipped"}
    assert office.slack.fake.posted(ONC) == []


def test_a_booking_arriving_after_the_quiet_first_run_is_announced(quiet_office: Office) -> None:
    office = quiet_office
    _store_existing_schedule(office)
    Evaluator(office.engine, office.settings).evaluate_all(office.clock())
    office.clock.advance(hours=2)
    # A subject enrolled since books a restaging CT in its window: that booking is news.
    start = enrol_due_in(office.engine, "E19901", "2101-901", 10, office.clock())
    receipt, summary = office.feed(siu(control_id="NEW1", csn="7100000009", mrn="E19901", start=start))
    [exam_id] = receipt.exam_ids
    bookings = {(row.address, row.status) for row in office.rows(exam_id=exam_id, kind="booking")}
    assert bookings == {("slack:#onc-2101-imaging", "pending"), ("email:onc2101-team@example.org", "pending")}
    assert summary.outbox.skipped == 0


def test_with_quiet_first_run_off_the_first_evaluation_announces_every_booking(office: Office) -> None:
    assert office.settings.dispatch.quiet_first_run is False
    _store_existing_schedule(office)
    summary = Evaluator(office.engine, office.settings).evaluate_all(office.clock())
    assert summary.outbox.skipped == 0 and office.rows(status="skipped") == []
    assert {row.status for row in office.rows(kind="booking")} == {"pending"}


def test_quiet_first_run_is_on_by_default() -> None:
    assert Settings().dispatch.quiet_first_run is True


def test_cancelling_a_reschedules_rows_looks_them_up_by_id_not_by_every_pending_row(office: Office) -> None:
    """Without statistics SQLite would answer ``id IN (...) AND status = 'pending'`` by
    walking ``ix_notifications_status``: every pending row of the outbox, at each booking."""
    if office.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL plans from its statistics; SQLite's plan is the one to pin")
    office.feed(siu(mrn="E10001"))
    updates: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.startswith("UPDATE notifications"):
            updates.append((statement, parameters))

    event.listen(office.engine, "before_cursor_execute", seen)
    try:
        _, summary = office.feed(siu("S13", control_id="MSG0002", mrn="E10001", start="20261203093000"))
    finally:
        event.remove(office.engine, "before_cursor_execute", seen)
    assert summary.outbox.cancelled == 8
    cancels = [(sql, params) for sql, params in updates if "status=?" in sql.replace(" ", "")]
    assert cancels, updates
    with office.engine.connect() as conn:
        for sql, params in cancels:
            plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params))
            assert "PRIMARY KEY" in plan and "ix_notifications_status" not in plan, (sql, plan)
