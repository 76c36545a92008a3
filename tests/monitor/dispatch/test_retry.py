"""Retrying failed deliveries: back to pending and sent, never for an exam cancelled, moved or past.

The dashboard's Retry buttons (tests/monitor/web/test_outbox_pages.py) and
``hiro-monitor notifications retry`` share :func:`monitor.store.outbox.retry_failed`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from monitor.store.outbox import RetryResult, retry_failed
from monitor.store.schema import audit_log, notifications
from tests.monitor.dispatch.office import BOOKING, ONC, Office
from tests.monitor.hl7_messages import siu
from tests.monitor.trial_setup import cli

START = "2026-12-01T14:30+00:00"  # the default SIU: Tue 1 Dec 2026 09:30 New York


def _fail(office: Office, *row_ids: int, error: str = "channel_not_found", attempts: int = 10) -> None:
    with office.engine.begin() as conn:
        conn.execute(
            update(notifications)
            .where(notifications.c.id.in_(row_ids))
            .values(status="failed", attempts=attempts, last_error=error, updated_at=office.clock())
        )


def _retry(office: Office, **which: Any) -> RetryResult:
    with office.engine.begin() as conn:
        return retry_failed(conn, office.clock(), **which)


def _audit(office: Office) -> list[Any]:
    with office.engine.connect() as conn:
        return list(conn.execute(select(audit_log).where(audit_log.c.action == "notification.retry")))


def test_a_retried_row_is_pending_at_once_with_a_fresh_retry_budget_and_is_then_sent(office: Office) -> None:
    office.feed(siu(mrn="E10001"))
    booking = office.row(f"{BOOKING}|{START}")
    office.keep_only(booking.dedupe_key)
    _fail(office, booking.id, attempts=10)
    office.clock.advance(minutes=30)
    result = _retry(office, ids=[booking.id])
    assert [(r.id, r.attempts, r.last_error) for r in result.retried] == [
        (booking.id, 10, "channel_not_found")
    ]
    row = office.row(booking.dedupe_key)
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 0, office.clock())
    office.dispatch()
    assert office.row(booking.dedupe_key).status == "sent"
    assert len(office.slack.fake.posted(ONC)) == 1


def test_rows_of_a_cancelled_exam_are_not_retried_but_the_cancellation_alert_is(office: Office) -> None:
    office.feed(siu(mrn="E10001"))
    reminders = [row.id for row in office.rows(exam_id=1, kind="reminder")]
    _fail(office, *reminders)
    office.feed(siu("S15", control_id="MSG0002", status="Cancelled", mrn="E10001"))
    alerts = [row.id for row in office.rows(exam_id=1, kind="alert", finding_kind="cancelled")]
    assert alerts
    _fail(office, *alerts)
    result = _retry(office)
    assert sorted(r.id for r in result.retried) == sorted(alerts)
    assert dict(result.refused) == dict.fromkeys(reminders, "its exam was cancelled")
    assert {office.rows(id=i)[0].status for i in reminders} == {"failed"}


def test_rows_of_a_moved_or_past_exam_are_not_retried(office: Office) -> None:
    office.feed(siu(mrn="E10001"))
    old_booking = office.row(f"{BOOKING}|{START}")
    _fail(office, old_booking.id)
    office.feed(siu("S13", control_id="MSG0002", mrn="E10001", start="20261203093000"))
    assert dict(_retry(office, ids=[old_booking.id]).refused)[old_booking.id].startswith("its exam was moved")
    new_sheets = [row.id for row in office.rows(exam_id=1, kind="instructions", status="pending")]
    _fail(office, *new_sheets)
    office.clock.advance(days=30)  # long after the exam
    result = _retry(office, ids=new_sheets)
    assert result.retried == () and set(dict(result.refused).values()) == {"its exam time has passed"}


def test_a_cancelled_or_sent_notification_is_never_retried(office: Office) -> None:
    office.feed(siu(mrn="E10001"))
    office.feed(siu("S13", control_id="MSG0002", mrn="E10001", start="20261203093000"))
    [cancelled, *_] = office.rows(exam_id=1, status="cancelled")
    result = _retry(office, ids=[cancelled.id, 999_999])
    assert dict(result.refused) == {
        cancelled.id: "not failed (status cancelled)",
        999_999: "no such notification",
    }
    assert office.rows(id=cancelled.id)[0].status == "cancelled"


def test_the_retry_command_puts_rows_back_by_id_or_channel_and_audits_them(
    office: Office, capsys: pytest.CaptureFixture[str]
) -> None:
    # 2101-002's exam is booked late: alerts (no exam time involved) to Slack and email.
    office.feed(siu(mrn="E10002", control_id="LATE1", csn="7100000002"))
    slack_alert = office.rows(kind="alert", channel="slack", trial="ONC-2101")[-1]
    email_alert = office.rows(kind="alert", channel="email", trial="ONC-2101")[-1]
    _fail(office, slack_alert.id, email_alert.id, error="ratelimited", attempts=4)
    url = office.settings.database.url
    code, out, _ = cli(capsys, url, "notifications", "retry", "--failed", "--channel", "email")
    assert code == 0 and "put back 1 notification(s) to pending" in out
    assert office.rows(id=email_alert.id)[0].status == "pending"
    assert office.rows(id=slack_alert.id)[0].status == "failed"
    code, out, _ = cli(capsys, url, "notifications", "retry", str(slack_alert.id), str(email_alert.id))
    assert code == 1  # the email row was pending already
    assert "put back 1 notification(s)" in out and f"{email_alert.id}: not retried: not failed" in out
    assert office.rows(id=slack_alert.id)[0].attempts == 0
    audits = _audit(office)
    assert sorted(int(a.object_id) for a in audits) == sorted([email_alert.id, slack_alert.id])
    assert all(
        a.username.startswith("cli") and "failed after 4 attempt(s) (ratelimited)" in a.detail for a in audits
    )
    for a in audits:
        assert "E10002" not in a.detail
    with pytest.raises(SystemExit):
        cli(capsys, url, "notifications", "retry", "1", "--failed")
    with pytest.raises(SystemExit):
        cli(capsys, url, "notifications", "retry", "--channel", "slack")


def test_a_retry_does_not_wait_for_the_backoff_the_row_had(office: Office) -> None:
    office.feed(siu(mrn="E10001"))
    booking = office.row(f"{BOOKING}|{START}")
    with office.engine.begin() as conn:  # the failure left a far next attempt behind
        conn.execute(
            update(notifications)
            .where(notifications.c.id == booking.id)
            .values(status="failed", next_attempt_at=office.clock() + timedelta(hours=6))
        )
    _retry(office, ids=[booking.id])
    assert office.row(booking.dedupe_key).next_attempt_at == office.clock()
