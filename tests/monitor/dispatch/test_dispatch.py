"""The dispatcher against a Slack-like server and a real SMTP server: once, on time, no PHI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from datetime import timedelta

from sqlalchemy import insert, select

from monitor.store.schema import audit_log, notifications
from tests.monitor.dispatch.office import BOOKING, CT3, ONC, Office, assert_no_phi, posts_by_key
from tests.monitor.hl7_messages import siu
from tests.monitor.trial_setup import NOW, REPO
from tests.notifiers.slack_server import SlackServer
from tests.notifiers.smtp_server import Inbox, SmtpServer

START = "2026-12-01T14:30+00:00"
SLACK_BOOKING = f"{BOOKING}|{START}"
EMAIL_BOOKING = SLACK_BOOKING.replace("slack:#onc-2101-imaging", "email:onc2101-team@example.org")
REMINDER_72H = (
    f"reminder|slack:#onc-2101-imaging|ONC-2101:2101-001:extended_restaging#2:in_window:exam1|72h|{START}"
)


def _top(slack: SlackServer, channel: str = ONC) -> list[dict[str, object]]:
    return [m for m in slack.fake.posted(channel) if m["thread_ts"] is None]


def test_a_booking_reaches_slack_and_email_once_without_phi(
    office: Office, slack: SlackServer, inbox: Inbox
) -> None:
    office.feed(siu(mrn="E10001"))
    dispatcher = office.dispatch()
    [message] = slack.fake.posted(ONC)
    assert message["text"].startswith(
        "[ONC-2101] Research scan booked · subject 2101-001 · Week 72 restaging"
    )
    assert "Tue 1 Dec 2026 09:30 EST" in message["text"]
    assert "https://hiro.example.org/exams/1" in json.dumps(message["blocks"])
    assert message["metadata"]["event_payload"] == {"dedupe_key": SLACK_BOOKING, "thread_key": "exam:1"}
    [(_, recipients, email)] = [m for m in inbox.received if "onc2101-team@example.org" in m[1]]
    assert recipients == ["onc2101-team@example.org"]
    row = office.row(SLACK_BOOKING)
    assert (row.status, row.attempts, row.sent_at) == ("sent", 1, NOW)
    assert row.external_ref == {
        "channel": "slack",
        "external_id": message["ts"],
        "destination": ONC,
        "status": "ok",
    }
    assert row.summary.startswith("[ONC-2101] Research scan booked") and "Next step" in row.body
    with office.engine.connect() as conn:  # the audit trail lists the alert as sent
        [audited] = conn.execute(
            select(audit_log).where(audit_log.c.action == "alert.sent", audit_log.c.object_id == str(row.id))
        ).all()
    assert (audited.username, audited.before, audited.after) == ("dispatcher", "sending", "sent")
    assert audited.detail == "booking to slack:#onc-2101-imaging" and audited.at == NOW
    assert_no_phi(audited.detail)
    assert slack.fake.posted(CT3) == []  # the technologists' sheets are due 24 h and 2 h before
    assert dispatcher.stats.failed == 0
    # Absence: no MRN, name or birth date left the process, nor sits in the outbox.
    assert_no_phi(slack.fake.all_raw())
    assert_no_phi(email.as_string())
    for stored in office.rows():
        assert_no_phi(f"{stored.summary} {stored.body} {stored.last_error} {stored.external_ref}")


def test_reminders_and_sheets_go_out_at_their_lead_times_in_the_exams_thread(
    office: Office, slack: SlackServer
) -> None:
    office.feed(siu(mrn="E10001"))
    office.dispatch()
    [root] = slack.fake.posted(ONC)
    office.clock.now = office.row(REMINDER_72H).due_at - timedelta(minutes=1)
    office.dispatch()
    assert len(slack.fake.posted(ONC)) == 1  # not yet
    office.clock.advance(minutes=1)
    office.dispatch()
    reminder = slack.fake.posted(ONC)[-1]
    assert reminder["thread_ts"] == root["ts"] and reminder["text"].startswith(
        "[ONC-2101] Upcoming research scan"
    )
    office.clock.now = NOW + timedelta(days=6, hours=1)  # 2026-12-01 13:00 UTC: both sheets are due
    office.dispatch()
    sheets = slack.fake.posted(CT3)
    assert len(sheets) == 2 and sheets[1]["thread_ts"] == sheets[0]["ts"]
    assert "Slice thickness" in json.dumps(sheets[0]["blocks"])
    assert set(posts_by_key(slack.fake).values()) == {1}
    assert_no_phi(slack.fake.all_raw())


def test_replaying_the_feed_and_re_evaluating_posts_nothing_twice(office: Office, slack: SlackServer) -> None:
    office.evaluator.evaluate_all(office.clock())
    office.feed(siu(mrn="E10001"))
    office.dispatch()
    posted = {channel: len(messages) for channel, messages in slack.fake.messages.items()}
    office.clock.advance(minutes=5)
    office.feed(siu(mrn="E10001"))
    office.feed(siu(mrn="E10001", control_id="MSG0001-AGAIN"))
    office.evaluator.evaluate_all(office.clock())
    office.dispatch()
    assert {channel: len(messages) for channel, messages in slack.fake.messages.items()} == posted
    assert set(posts_by_key(slack.fake).values()) == {1}


def test_a_reschedule_updates_the_posted_message_and_says_what_moved_in_its_thread(
    office: Office, slack: SlackServer, inbox: Inbox
) -> None:
    office.feed(siu(mrn="E10001"))
    office.dispatch()
    [root] = slack.fake.posted(ONC)
    office.clock.advance(hours=2)
    office.feed(siu("S13", control_id="MSG0002", mrn="E10001", start="20261203093000"))
    dispatcher = office.dispatch()
    assert dispatcher.stats.updated == 2  # Slack and email
    [edited] = _top(slack)
    assert edited["ts"] == root["ts"] and edited.get("edited") is True
    assert "Thu 3 Dec 2026 09:30 EST" in edited["text"]
    [note] = [m for m in slack.fake.posted(ONC) if m["thread_ts"] == root["ts"]]
    assert note["text"] == "Updated: moved from Tue 1 Dec 2026 09:30 EST to Thu 3 Dec 2026 09:30 EST"
    moved = office.row(SLACK_BOOKING.replace(START, "2026-12-03T14:30+00:00"))
    assert moved.status == "sent" and moved.external_ref["external_id"] == root["ts"]
    assert office.row(REMINDER_72H).status == "cancelled"
    follow_up = inbox.received[-1][2]
    assert follow_up["In-Reply-To"] and "moved from Tue 1 Dec 2026 09:30 EST" in follow_up.as_string()
    # The old reminder times pass: nothing; the new ones come.
    office.clock.now = NOW + timedelta(days=5, hours=3)  # 2026-11-30 15:00 UTC: 72 h before the new time
    office.dispatch()
    texts = [m["text"] for m in slack.fake.posted(ONC) if m["thread_ts"] == root["ts"]]
    assert len(texts) == 2 and texts[1].startswith("[ONC-2101] Upcoming research scan")
    assert "Thu 3 Dec 2026" in texts[1]
    assert_no_phi(slack.fake.all_raw())


def test_a_move_out_of_the_window_is_a_new_message_the_channel_sees(
    office: Office, slack: SlackServer
) -> None:
    """Not an edit of the old booking post: a warning hidden in yesterday's message is one nobody reads."""
    office.feed(siu(mrn="E10001"))
    office.dispatch()
    [root] = slack.fake.posted(ONC)
    office.feed(siu("S13", control_id="MSG0002", mrn="E10001", start="20261216093000"))  # window ends 14 Dec
    office.dispatch()
    [first] = _top(slack)
    assert first["ts"] == root["ts"] and first["text"] == root["text"]  # the booking post stands as it was
    # In the exam's thread, and broadcast: the channel sees it.
    [alert] = [m for m in slack.fake.posted(ONC) if m["thread_ts"] == root["ts"]]
    assert alert["reply_broadcast"] and alert["text"].startswith("[ONC-2101] Booked after the window")
    assert "Wed 16 Dec 2026 09:30 EST" in alert["text"]
    blocks = json.dumps(alert["blocks"])
    assert "moved from Tue 1 Dec 2026 09:30 EST to Wed 16 Dec 2026 09:30 EST" in blocks
    assert "move the exam into the window" in blocks


def test_a_cancellation_tells_the_coordinator_and_no_reminder_follows(
    office: Office, slack: SlackServer
) -> None:
    office.feed(siu(mrn="E10001"))
    office.dispatch()
    [root] = slack.fake.posted(ONC)
    office.clock.advance(hours=1)
    office.feed(siu("S15", control_id="MSG0002", status="Cancelled", mrn="E10001"))
    office.dispatch()
    [edited] = _top(slack)
    assert edited["ts"] == root["ts"] and "Research exam cancelled" in edited["text"]
    [note] = [m for m in slack.fake.posted(ONC) if m["thread_ts"] == root["ts"]]
    assert note["text"] == "Updated: exam cancelled; the visit is open again"
    office.clock.now = NOW + timedelta(days=7)  # every reminder and sheet time has passed
    office.dispatch()
    # No reminder and no sheet; the window opened (Mon 30 Nov) with nothing rebooked: a new
    # message says so, visible in the channel.
    *_, due = slack.fake.posted(ONC)
    assert len(slack.fake.posted(ONC)) == 3 and slack.fake.posted(CT3) == []
    assert "Due, nothing booked" in due["text"] and due["thread_ts"] is None
    assert {row.status for row in office.rows(exam_id=1, kind="reminder")} == {"cancelled"}


def test_a_429_is_waited_out_or_retried_and_the_message_is_delivered_exactly_once(
    office: Office, slack: SlackServer
) -> None:
    office.feed(siu(mrn="E10001"))
    office.keep_only(SLACK_BOOKING)
    slack.fake.rate_limit(retry_after=8)  # longer than slack-sdk may wait inline: back to the outbox
    office.dispatch()
    row = office.row(SLACK_BOOKING)
    assert (row.status, row.last_error, row.attempts) == ("pending", "ratelimited", 0)
    assert row.next_attempt_at == NOW + timedelta(seconds=8)
    assert slack.fake.posted(ONC) == []
    office.clock.advance(seconds=8)
    slack.fake.rate_limit(retry_after=1)  # short: slack-sdk waits it out inline, once
    office.dispatch()
    assert office.row(SLACK_BOOKING).status == "sent"
    assert posts_by_key(slack.fake) == Counter({SLACK_BOOKING: 1})
    assert slack.fake.calls.count("chat.postMessage") == 3  # 429, 429, delivered


def test_channel_not_found_fails_for_good_and_the_other_messages_are_delivered(
    office: Office, slack: SlackServer, inbox: Inbox
) -> None:
    slack.fake.channels.pop("neu-4405")  # the NEU-4405 coordinators' channel is gone
    office.feed(siu(mrn="E10001"))  # E10001 is also NEU-4405 subject 4405-004: a missed-visit alert
    office.dispatch()
    [failed] = [row for row in office.rows(status="failed")]
    assert (failed.address, failed.last_error, failed.attempts) == ("slack:#neu-4405", "channel_not_found", 1)
    assert office.row(SLACK_BOOKING).status == "sent"
    assert len(inbox.received) == 2  # both trials' coordinators by email
    calls = len(slack.fake.calls)
    office.clock.advance(hours=3)
    office.dispatch()
    assert len(slack.fake.calls) == calls and office.row(failed.dedupe_key).status == "failed"


def test_a_poison_row_is_pushed_back_and_never_blocks_the_others(
    database_url: str, slack: SlackServer, smtp: SmtpServer
) -> None:
    office = Office(database_url, slack, smtp, dispatch={"max_attempts": 2, "retry_base_seconds": 10.0})
    try:
        office.feed(siu(mrn="E10001"))
        office.keep_only(SLACK_BOOKING)
        poison = "alert|slack:#onc-2101-imaging|a finding the store never had"
        with office.engine.begin() as conn:
            conn.execute(
                insert(notifications).values(
                    dedupe_key=poison, audience="coordinator", channel="slack",
                    address="slack:#onc-2101-imaging", kind="alert", trial="ONC-2101", finding_key="nope",
                    finding_kind="missed", thread_key="",
                    due_at=NOW - timedelta(minutes=5), status="pending", attempts=0,
                    next_attempt_at=NOW - timedelta(minutes=5), maybe_sent=False, last_error="", summary="",
                    created_at=NOW, updated_at=NOW,
                )
            )  # fmt: skip
        office.dispatch()
        row = office.row(poison)
        assert (row.status, row.attempts, row.last_error) == ("pending", 1, "LookupError")
        assert NOW + timedelta(seconds=10) <= row.next_attempt_at <= NOW + timedelta(seconds=12)
        assert office.row(SLACK_BOOKING).status == "sent"  # queued behind it on the same channel
        office.clock.advance(seconds=13)
        office.dispatch()
        row = office.row(poison)
        assert (row.status, row.attempts, row.last_error) == ("failed", 2, "gave_up:LookupError")
        assert posts_by_key(slack.fake) == Counter({SLACK_BOOKING: 1})
    finally:
        office.close()


def test_an_ambiguous_failure_is_looked_up_before_the_retry(office: Office, slack: SlackServer) -> None:
    office.feed(siu(mrn="E10001"))
    office.keep_only(SLACK_BOOKING)
    slack.fake.server_error(503)
    office.dispatch()
    row = office.row(SLACK_BOOKING)
    assert (row.status, row.maybe_sent, row.last_error) == ("pending", True, "service_unavailable")
    office.clock.now = row.next_attempt_at
    office.dispatch()
    assert office.row(SLACK_BOOKING).status == "sent"
    assert slack.fake.calls[-2:] == ["conversations.history", "chat.postMessage"]  # looked, then posted
    assert posts_by_key(slack.fake) == Counter({SLACK_BOOKING: 1})


def _crash(office: Office) -> subprocess.CompletedProcess[str]:
    """Run a dispatcher in a subprocess that is SIGKILLed after its first send, before bookkeeping."""
    settings = json.dumps(office.settings.model_dump(mode="json"))
    args = [
        sys.executable,
        "-m",
        "tests.monitor.dispatch.crash_dispatch",
        settings,
        json.dumps(office.environ),
    ]
    done = subprocess.run(
        [*args, office.clock().isoformat()], cwd=REPO, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    return done


def test_a_kill_9_between_the_slack_post_and_the_bookkeeping_causes_no_second_post(
    office: Office, slack: SlackServer
) -> None:
    office.feed(siu(mrn="E10001"))
    office.keep_only(SLACK_BOOKING)
    _crash(office)
    row = office.row(SLACK_BOOKING)
    assert row.status == "sending" and row.attempts == 1  # posted, never recorded
    [posted] = slack.fake.posted(ONC)
    dispatcher = office.dispatch()  # the crashed process is gone: its row is taken back at once
    row = office.row(SLACK_BOOKING)
    assert (row.status, row.attempts, row.maybe_sent) == ("sent", 2, False)
    assert row.external_ref["external_id"] == posted["ts"] and row.external_ref["status"] == "found"
    assert dispatcher.stats.found == 1 and dispatcher.stats.sent == 0
    assert posts_by_key(slack.fake) == Counter({SLACK_BOOKING: 1})


def test_a_kill_9_after_an_email_left_resends_it_with_the_same_message_id(
    office: Office, inbox: Inbox
) -> None:
    """SMTP cannot be asked what it received: at-least-once, and the copy carries the same
    Message-ID (derived from the dedupe key), which mail stores use to drop it."""
    office.feed(siu(mrn="E10001"))
    office.keep_only(EMAIL_BOOKING)
    _crash(office)
    assert office.row(EMAIL_BOOKING).status == "sending"
    office.dispatch()
    assert office.row(EMAIL_BOOKING).status == "sent"
    first, second = (message for _, _, message in inbox.received)
    assert first["Message-ID"] == second["Message-ID"]


def test_a_row_left_sending_by_a_live_dispatcher_is_not_taken_before_the_timeout(
    office: Office, slack: SlackServer
) -> None:
    office.feed(siu(mrn="E10001"))
    office.keep_only(SLACK_BOOKING)
    other = office.dispatcher(owner="other-host:4242:feedbeef")
    [claimed] = other.claims.claim("slack:#onc-2101-imaging", NOW, 5)
    office.dispatch()
    assert office.row(SLACK_BOOKING).status == "sending" and slack.fake.posted(ONC) == []
    office.clock.advance(seconds=office.settings.dispatch.sending_timeout_seconds + 1)
    office.dispatch()
    assert office.row(SLACK_BOOKING).status == "sent" and len(slack.fake.posted(ONC)) == 1
    assert claimed.id == office.row(SLACK_BOOKING).id


def test_a_wrong_orderable_warns_the_technologists_before_the_scan_with_one_list_of_orderables(
    office: Office, slack: SlackServer
) -> None:
    """The CT is booked with an orderable the visit does not accept: the coordinator's alert
    and the technologists' sheet name the same CT orderables (never the visit's MR code)."""
    office.feed(siu(mrn="E10001", code="IMG9999"))  # a CT near the Week 72 restaging, wrong code
    office.dispatch()
    [alert] = [m for m in slack.fake.posted(ONC) if "Wrong orderable" in m["text"]]
    text = json.dumps(alert["blocks"])
    assert "order IMG1234 or IMG1240" in text and "change the order to IMG1234 or IMG1240" in text
    assert "IMG5510" not in text  # the visit's MRI orderable is not a fix for a CT booking
    assert "appointment 7000000001" in text and "exam 1 " not in text
    office.clock.now = NOW + timedelta(days=5, hours=3)  # 24 h before the scan: the sheet's lead time
    office.dispatch()
    [sheet] = slack.fake.posted(CT3)
    warning = json.dumps(sheet["blocks"])
    assert "Order not fixed: IMG9999 is not an orderable this visit accepts" in warning
    assert "IMG1234 or IMG1240" in warning and "Call the research coordinator before scanning" in warning
    assert_no_phi(warning)


def test_a_reminder_whose_time_had_passed_when_the_exam_was_booked_says_it_is_late(
    office: Office, slack: SlackServer
) -> None:
    # Booked at noon UTC for 20:00 New York the same day: the 72 h and 24 h reminder times
    # have passed; one reminder goes out now, and says it is late.
    office.feed(siu(mrn="E10001", start="20261125200000"))
    office.dispatch()
    [reminder] = [
        m for m in slack.fake.posted(ONC) if m["text"].startswith("[ONC-2101] Upcoming research scan")
    ]
    assert "sent late: it was due Tue 24 Nov 2026 20:00 EST" in json.dumps(reminder["blocks"])
    [booking] = [
        m
        for m in slack.fake.posted(ONC)
        if "Research scan booked" in m["text"] or "before the window" in m["text"]
    ]
    assert "sent late" not in json.dumps(booking["blocks"])  # an alert or notice is "now" by nature
