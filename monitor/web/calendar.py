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
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response
from icalendar import Calendar, Event
from sqlalchemy import Connection, select

from monitor.store.calendar import CalendarScope, CalendarToken, mark_used, token_in_force
from monitor.store.findings import OPEN
from monitor.store.schema import exams, findings, occurrences
from monitor.web.accounts import Role, find_user, record_audit
from monitor.web.app import web_of
from monitor.web.data import STATUS_TEXT
from monitor.web.security import client_address
from rules import OccurrenceStatus

__all__ = ["DueWindow", "FeedExam", "calendar_feed", "due_windows", "feed_exams", "feed_trials", "router"]

router = APIRouter(include_in_schema=False)

LOOK_BACK = timedelta(days=30)
LOOK_AHEAD = timedelta(days=90)
# What secrets.token_urlsafe makes (43 characters for 32 bytes); anything else is not a
# token and is refused before the store is asked.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,128}")
_UID_DOMAIN = "hiro-monitor"
_CANCELLED = frozenset({"cancelled", "deleted"})
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


@dataclass(frozen=True, slots=True)
class FeedExam:
    """One research exam as a feed shows it: no patient identifiers."""

    exam_id: int
    trial: str
    subject: str
    timepoint: str
    start: datetime
    duration_minutes: int | None
    exam_status: str
    modality: str
    room: str
    window_start: date | None
    window_end: date | None
    window_status: str
    updated_at: datetime

    @property
    def cancelled(self) -> bool:
        return self.exam_status in _CANCELLED


@dataclass(frozen=True, slots=True)
class DueWindow:
    """A timepoint that is due with nothing booked; dates are the site's local dates."""

    key: str  # the occurrence key: trial, subject study id, timepoint and index
    trial: str
    subject: str
    timepoint: str
    due: date
    window_start: date
    window_end: date


def feed_trials(conn: Connection, token: CalendarToken) -> tuple[str, ...] | None:
    """The trials ``token``'s feed lists; None when its coordinator account is gone or inactive."""
    if token.scope_kind is CalendarScope.TRIAL:
        return (token.scope_value,)
    user = find_user(conn, token.scope_value)
    if user is None or user.role is not Role.COORDINATOR:
        return None
    return user.trials


def _words(status: str) -> str:
    return _STATUS_WORDS.get(status, status.replace("_", " "))


def feed_exams(conn: Connection, trials: Collection[str], start: datetime, end: datetime) -> list[FeedExam]:
    """Research exams of ``trials`` starting in [start, end), cancelled ones included, by start.

    An exam is linked to a trial by the occurrence it serves or by a finding about it (a
    cancelled exam serves nothing any more; its ``cancelled`` finding keeps it in the feed).
    An exam of a subject enrolled in two of the trials appears once per trial.
    """
    if not trials:
        return []
    wanted = sorted(trials)
    exam_columns = (
        exams.c.id,
        exams.c.start_at,
        exams.c.duration_minutes,
        exams.c.status,
        exams.c.modality,
        exams.c.location,
        exams.c.updated_at,
    )
    in_range = (exams.c.start_at >= start, exams.c.start_at < end)
    served = (
        select(
            *exam_columns,
            occurrences.c.trial,
            occurrences.c.subject,
            occurrences.c.label,
            occurrences.c.window_start,
            occurrences.c.window_end,
            occurrences.c.status.label("link_status"),
        )
        .join(occurrences, occurrences.c.exam_id == exams.c.id)
        .where(occurrences.c.trial.in_(wanted), *in_range)
    )
    about = (
        select(
            *exam_columns,
            findings.c.trial,
            findings.c.subject,
            findings.c.occurrence_label.label("label"),
            findings.c.window_start,
            findings.c.window_end,
            findings.c.kind.label("link_status"),
            findings.c.status.label("finding_status"),
        )
        .join(findings, findings.c.exam_id == exams.c.id)
        .where(findings.c.trial.in_(wanted), *in_range)
        .order_by(findings.c.id)
    )
    linked: dict[tuple[int, str], FeedExam] = {}
    for row in conn.execute(served):
        linked[(row.id, row.trial)] = _feed_exam(row, _words(row.link_status))
    kinds: dict[tuple[int, str], set[str]] = {}
    for row in conn.execute(about):
        key = (row.id, row.trial)
        if row.finding_status == OPEN:
            kinds.setdefault(key, set()).add(row.link_status)
        if key not in linked:
            linked[key] = _feed_exam(row, "no open finding")
    feed = []
    for key, exam in linked.items():
        found = kinds.get(key)
        if found:  # the open findings say more than the occurrence status ("late", not "booked")
            exam = replace(exam, window_status=", ".join(_words(kind) for kind in sorted(found)))
        feed.append(exam)
    feed.sort(key=lambda exam: (exam.start, exam.exam_id, exam.trial))
    return feed


def _feed_exam(row: Any, window_status: str) -> FeedExam:
    return FeedExam(
        exam_id=int(row.id),
        trial=row.trial,
        subject=row.subject,
        timepoint=row.label or "",
        start=row.start_at,
        duration_minutes=row.duration_minutes,
        exam_status=row.status,
        modality=row.modality or "",
        room=row.location or "",
        window_start=row.window_start,
        window_end=row.window_end,
        window_status=window_status,
        updated_at=row.updated_at,
    )


def due_windows(conn: Connection, trials: Collection[str], first: date, last: date) -> list[DueWindow]:
    """Windows of ``trials`` that are due with nothing booked and overlap the days ``first``..``last``."""
    if not trials:
        return []
    query = (
        select(
            occurrences.c.key,
            occurrences.c.trial,
            occurrences.c.subject,
            occurrences.c.label,
            occurrences.c.due,
            occurrences.c.window_start,
            occurrences.c.window_end,
        )
        .where(
            occurrences.c.trial.in_(sorted(trials)),
            occurrences.c.status == OccurrenceStatus.DUE.value,
            occurrences.c.exam_id.is_(None),
            occurrences.c.window_end >= first,
            occurrences.c.window_start <= last,
        )
        .order_by(occurrences.c.window_start, occurrences.c.trial, occurrences.c.subject, occurrences.c.key)
    )
    return [
        DueWindow(row.key, row.trial, row.subject, row.label, row.due, row.window_start, row.window_end)
        for row in conn.execute(query)
    ]


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
            f"{_window_text(exam.window_start, exam.window_end).capitalize()}: {exam.window_status}.",
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
