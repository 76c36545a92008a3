"""The outbox on the dashboard: an exam's notifications, the feed-health backlog, and retrying
failed deliveries (admins only, CSRF-checked, audited)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from monitor.store.schema import notifications
from tests.monitor.trial_setup import NOW
from tests.monitor.web.conftest import Login, Site, csrf_in

PHI = ("E10001", "E10009", "99887766", "TESTPATIENT")


def _row(site: Site, exam_id: int, kind: str, channel: str) -> Any:
    query = (
        select(notifications)
        .where(
            notifications.c.exam_id == exam_id,
            notifications.c.kind == kind,
            notifications.c.channel == channel,
        )
        .order_by(notifications.c.id)
    )
    with site.engine.connect() as conn:
        return conn.execute(query).first()


def _fail(site: Site, row_id: int, error: str = "channel_not_found", attempts: int = 10) -> None:
    """What the dispatcher records for a delivery that failed for good."""
    with site.engine.begin() as conn:
        conn.execute(
            update(notifications)
            .where(notifications.c.id == row_id)
            .values(status="failed", attempts=attempts, last_error=error, updated_at=NOW)
        )


def _status(site: Site, row_id: int) -> Any:
    with site.engine.connect() as conn:
        return conn.execute(select(notifications).where(notifications.c.id == row_id)).one()


def test_the_exam_page_lists_its_notifications_with_status_and_times_in_the_site_zone(
    site: Site, login: Login
) -> None:
    booking = _row(site, 1, "booking", "email")
    _fail(site, booking.id, "SMTPRecipientsRefused", attempts=3)
    page = login("admin").get("/exams/1").text
    section = page[page.index('id="notifications"') : page.index("Feed history")]
    assert f'id="notification-{booking.id}"' in section
    row = section[section.index(f'id="notification-{booking.id}"') :].split("</tr>")[0]
    assert "booking" in row and "email:onc2101-team@example.org" in row
    assert "failed" in row and ">3<" in row and "SMTPRecipientsRefused" in row
    assert "Wed 25 Nov 2026" in row and "07:00" in row  # due 12:00 UTC, shown in New York
    assert "reminder" in section and "instructions" in section and "pending" in section
    assert "slack:#neu-4405" not in section  # exam 1's messages only


def test_a_coordinator_sees_the_notifications_of_their_trials_only(site: Site, login: Login) -> None:
    # A co-enrolled patient: a message about exam 1 routed for the other trial.
    with site.engine.begin() as conn:
        conn.execute(
            notifications.insert().values(
                dedupe_key="reminder|slack:#neu-4405|test-only", audience="coordinator", channel="slack",
                address="slack:#neu-4405", kind="reminder", trial="NEU-4405", exam_id=1, due_at=NOW,
                status="pending", attempts=0, next_attempt_at=NOW, last_error="", summary="",
                created_at=NOW, updated_at=NOW,
            )
        )  # fmt: skip
    coordinator = login("coord")
    assert "slack:#onc-2101-imaging" in coordinator.get("/exams/1").text
    assert "slack:#neu-4405" not in coordinator.get("/exams/1").text
    assert "slack:#neu-4405" in login("admin").get("/exams/1").text
    listed = coordinator.get("/api/exams/1/notifications").json()
    assert listed and {n["trial"] for n in listed} == {"ONC-2101"}
    assert not {"summary", "body", "dedupe_key"} & set(listed[0])
    # Another trial's exam: 404 for the page and the API alike.
    assert coordinator.get("/exams/3").status_code == 404
    assert coordinator.get("/api/exams/3/notifications").status_code == 404
    assert site.audit_rows(username="coord", action="api.view", object_type="exam_notifications")


def test_feed_health_shows_the_backlog_and_a_failed_delivery_an_admin_retries(
    site: Site, login: Login
) -> None:
    reminder = _row(site, 1, "reminder", "slack")
    _fail(site, reminder.id, "channel_not_found", attempts=10)
    admin = login("admin")
    page = admin.get("/feeds").text
    outbox = page[page.index('id="outbox"') : page.index("Polls (FHIR appointments, PACS studies)")]
    assert "<td>slack</td>" in outbox and "<td>email</td>" in outbox  # the backlog by channel
    failed = outbox[outbox.index(f'id="failed-{reminder.id}"') :].split("</tr>")[0]
    assert "reminder" in failed and "ONC-2101" in failed and "channel_not_found" in failed
    assert f'action="/feeds/outbox/{reminder.id}/retry"' in failed
    assert 'action="/feeds/outbox/retry"' in outbox  # retry all failed for a channel
    for value in PHI:
        assert value not in outbox
    answer = admin.post(f"/feeds/outbox/{reminder.id}/retry", data={"csrf_token": csrf_in(page)})
    assert answer.status_code == 303 and answer.headers["location"] == "/feeds?retried=1&refused=0#outbox"
    row = _status(site, reminder.id)
    assert (row.status, row.next_attempt_at, row.attempts) == ("pending", NOW, 0)
    [audit] = site.audit_rows(action="notification.retry", object_id=str(reminder.id))
    assert audit.username == "admin" and audit.object_type == "notification"
    assert "failed after 10 attempt(s) (channel_not_found)" in audit.detail
    assert "Put back to pending: 1." in admin.get(answer.headers["location"]).text
    # Retrying it again changes nothing: it is not failed any more.
    again = admin.post(f"/feeds/outbox/{reminder.id}/retry", data={"csrf_token": csrf_in(page)})
    assert again.headers["location"] == "/feeds?retried=0&refused=1#outbox"
    assert len(site.audit_rows(action="notification.retry", object_id=str(reminder.id))) == 1


def test_retry_all_failed_for_a_channel_leaves_the_other_channels_failed(site: Site, login: Login) -> None:
    slack_row = _row(site, 3, "reminder", "slack")
    email_row = _row(site, 3, "reminder", "email")
    _fail(site, slack_row.id)
    _fail(site, email_row.id, "SMTPServerDisconnected")
    admin = login("admin")
    token = csrf_in(admin.get("/feeds").text)
    answer = admin.post("/feeds/outbox/retry", data={"csrf_token": token, "channel": "email"})
    assert answer.status_code == 303
    assert _status(site, email_row.id).status == "pending"
    assert _status(site, slack_row.id).status == "failed"
    assert site.audit_rows(action="notification.retry", object_id=str(email_row.id))


def test_only_admins_may_retry_and_only_with_the_csrf_token(site: Site, login: Login) -> None:
    sheet = _row(site, 1, "instructions", "slack")
    _fail(site, sheet.id)
    for name in ("coord", "viewer"):
        client = login(name)
        page = client.get("/feeds").text
        assert f'id="failed-{sheet.id}"' in page  # both may see it (ONC-2101)
        assert "/retry" not in page  # no Retry button
        token = csrf_in(page)
        assert client.post(f"/feeds/outbox/{sheet.id}/retry", data={"csrf_token": token}).status_code == 403
        assert (
            client.post("/feeds/outbox/retry", data={"csrf_token": token, "channel": "slack"}).status_code
            == 403
        )
    admin = login("admin")
    assert admin.post(f"/feeds/outbox/{sheet.id}/retry", data={"csrf_token": "forged"}).status_code == 403
    assert admin.post(f"/feeds/outbox/{sheet.id}/retry").status_code == 403
    assert _status(site, sheet.id).status == "failed"
    assert site.audit_rows(action="notification.retry", object_id=str(sheet.id)) == []


def test_a_coordinator_sees_failed_deliveries_of_their_trials_only(site: Site, login: Login) -> None:
    neuro_row = _row(site, 3, "instructions", "slack")
    _fail(site, neuro_row.id)
    assert f'id="failed-{neuro_row.id}"' not in login("coord").get("/feeds").text
    assert f'id="failed-{neuro_row.id}"' in login("neuro").get("/feeds").text
