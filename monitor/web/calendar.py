"""iCalendar feeds of research exams and open windows, read by calendar apps without signing in.

    GET /calendar/{token}.ics      text/calendar; 404 (empty body) for an unknown or revoked token

A calendar app cannot sign in, so the secret address is the credential: the token is made
by ``hiro-monitor calendar add`` (shown once, only its SHA-256 stored, see
``monitor.store.calendar``). The route takes no session (no ``signed_in`` dependency), so
an unknown token is a plain 404, never a redirect to the sign-in form; ``SecurityHeaders``
sends ``no-store`` as on every page that is not cacheable.

PHI policy ``none``: a feed names the trial, the subject's study id, the timepoint, the
modality, the room, the window and its status, never a name, MRN, birth date, accession or
procedure text. Per feed:

- one timed event (UTC) per research exam starting from 30 days ago to 90 days ahead, in
  the feed's trials, ``STATUS:CANCELLED`` when the exam was cancelled (calendar apps then
  strike it out), with the window in the description and a link to the exam's dashboard
  page when ``[notifications] dashboard_base_url`` is set;
- one all-day event per window of a timepoint that is due with nothing booked (the
  engine's ``due`` occurrences), spanning the window's local dates in the site's zone.

A trial feed lists that trial; a coordinator feed the trials assigned to the account when
the feed is read (a deactivated account's feed answers 404). Every read moves the token's
``last_used_at`` and writes an audit row naming the token's label.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response
from icalendar import Calendar, Event

from monitor.store.accounts import record_audit
from monitor.store.calendar import (
    CalendarScope,
    DueWindow,
    FeedExam,
    due_windows,
    feed_exams,
    feed_trials,
    mark_used,
    token_in_force,
)
from monitor.web.context import web_of
from monitor.web.security import client_address
from monitor.web.wording import STATUS_TEXT

__all__ = ["calendar_feed", "router"]

router = APIRouter(include_in_schema=False)

LOOK_BACK = timedelta(days=30)
LOOK_AHEAD = timedelta(days=90)
# What secrets.token_urlsafe makes (43 characters for 32 bytes); anything else is not a
# token and is refused before the store is asked.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,128}")
_UID_DOMAIN = "hiro-monitor"
# The words a coordinator reads for the engine's occurrence statuses and finding kinds.
_STATUS_WORDS = {
    **STATUS_TEXT,
    "in_window": "in window",
    "early": "early",
    "late": "late",
    "wrong_orderable": "wrong orderable",
    "duplicate": "second exam for the timepoint",
    "unmatched_exam": "serves no timepoint",
    "after_off_study": "after off-study date",
    "cancelled": "cancelled",
    "no_show": "no-show",
}


def _words(status: str) -> str:
    return _STATUS_WORDS.get(status, status.replace("_", " "))


def _window_status(exam: FeedExam) -> str:
    """What the window says: the open findings about the exam when there are any (they say
    more than the occurrence status: "late", not "booked"), else the occurrence's status."""
    if exam.open_kinds:
        return ", ".join(_words(kind) for kind in exam.open_kinds)
    return _words(exam.link_status) if exam.link_status else "no open finding"


def _window_text(start: date | None, end: date | None) -> str:
    if start is None or end is None:
        return "no window (the exam serves no timepoint)"
    return f"window {start.isoformat()} to {end.isoformat()}"


def calendar_feed(
    name: str, exams_: Iterable[FeedExam], windows: Iterable[DueWindow], now: datetime, dashboard_url: str
) -> bytes:
    """The iCalendar text (RFC 5545) of a feed called ``name``; ``dashboard_url`` may be empty."""
    base = dashboard_url.rstrip("/")
    calendar = Calendar()
    calendar.add("prodid", "-//hiro-monitor//research imaging calendar//EN")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add("x-wr-calname", name)
    calendar.add("refresh-interval", timedelta(hours=1), parameters={"VALUE": "DURATION"})
    calendar.add("x-published-ttl", "PT1H")  # Outlook's name for REFRESH-INTERVAL
    for exam in exams_:
        event = Event()
        event.add("uid", f"exam-{exam.exam_id}-{exam.trial}@{_UID_DOMAIN}")
        event.add("dtstamp", now)
        event.add("last-modified", exam.updated_at)
        event.add("dtstart", exam.start.astimezone(UTC))
        if exam.duration_minutes:
            event.add("dtend", exam.start.astimezone(UTC) + timedelta(minutes=exam.duration_minutes))
        what = " ".join(filter(None, (exam.trial, exam.subject, exam.timepoint, exam.modality)))
        event.add("summary", f"Cancelled: {what}" if exam.cancelled else what)
        event.add("status", "CANCELLED" if exam.cancelled else "CONFIRMED")
        if exam.room:
            event.add("location", exam.room)
        lines = [
            f"{exam.trial} subject {exam.subject}" + (f", {exam.timepoint}" if exam.timepoint else ""),
            f"{_window_text(exam.window_start, exam.window_end).capitalize()}: {_window_status(exam)}.",
            f"Exam {exam.exam_id}: {_words(exam.exam_status)}.",
        ]
        if base:
            link = f"{base}/exams/{exam.exam_id}"
            lines.append(f"Dashboard: {link}")
            event.add("url", link)
        event.add("description", "\n".join(lines))
        event.add("categories", [exam.trial])
        calendar.add_component(event)
    for window in windows:
        event = Event()
        event.add("uid", f"due-{window.key}@{_UID_DOMAIN}")
        event.add("dtstamp", now)
        event.add("dtstart", window.window_start)
        event.add("dtend", window.window_end + timedelta(days=1))  # DTEND of a DATE is exclusive
        event.add("summary", f"Due, not booked: {window.trial} {window.subject} {window.timepoint}")
        event.add("transp", "TRANSPARENT")  # a window is not a busy time
        lines = [
            f"{window.trial} subject {window.subject}, {window.timepoint}: nothing is booked.",
            f"Window {window.window_start.isoformat()} to {window.window_end.isoformat()}, "
            f"due {window.due.isoformat()}.",
        ]
        if base:
            link = f"{base}/trials/{quote(window.trial)}"
            lines.append(f"Dashboard: {link}")
            event.add("url", link)
        event.add("description", "\n".join(lines))
        event.add("categories", [window.trial])
        calendar.add_component(event)
    body: bytes = calendar.to_ical()
    return body


def _not_found() -> Response:
    return Response(status_code=404)


# HEAD too: some calendar clients check the address before subscribing.
@router.api_route("/calendar/{token}.ics", methods=["GET", "HEAD"])
def read_feed(token: str, request: Request) -> Response:
    """The feed of ``token``; 404 with an empty body when the token is unknown or revoked."""
    if not _TOKEN.fullmatch(token):
        return _not_found()
    web = web_of(request)
    now = web.clock()
    zone = ZoneInfo(web.settings.site.timezone)
    today = now.astimezone(zone).date()
    with web.engine.begin() as conn:
        found = token_in_force(conn, token)
        trials = feed_trials(conn, found) if found is not None else None
        if found is None or trials is None:
            return _not_found()
        exams_ = feed_exams(conn, trials, now - LOOK_BACK, now + LOOK_AHEAD)
        windows = due_windows(conn, trials, today - LOOK_BACK, today + LOOK_AHEAD)
        mark_used(conn, found.id, now)
        record_audit(
            conn,
            now,
            f"calendar:{found.label or found.id}"[:120],
            "calendar.read",
            "calendar_token",
            found.id,
            client_address(request),
            detail=f"{found.scope_kind.value} {found.scope_value}: {len(exams_)} exams, {len(windows)} due",
        )
    name = (
        f"hiro-monitor {found.scope_value}"
        if found.scope_kind is CalendarScope.TRIAL
        else (f"hiro-monitor: {found.scope_value}'s trials")
    )
    body = calendar_feed(name, exams_, windows, now, web.settings.notifications.dashboard_base_url)
    return Response(body, media_type="text/calendar; charset=utf-8")
