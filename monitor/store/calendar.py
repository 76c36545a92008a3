"""Calendar feed tokens: who may read which iCalendar feed without signing in.

- ``calendar_tokens``: one secret feed address. The token itself (``secrets.token_urlsafe``)
  is shown once, when it is made; only its SHA-256 (hex) is stored, so a copy of the
  database does not open any feed. ``scope_kind`` is ``trial`` (``scope_value`` a trial id)
  or ``coordinator`` (``scope_value`` a user name: the trials assigned to that account when
  the feed is read). ``label`` says whose calendar it is ("Dana's phone"), for the audit
  trail. A revoked token (``revoked_at``) answers 404 like an unknown one; ``last_used_at``
  tells the office which feeds are still read.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, insert, select, update

from monitor.store.accounts import Role, find_user
from monitor.store.dashboard import research_exam_fields
from monitor.store.findings import OPEN
from monitor.store.schema import calendar_tokens, exams, findings, occurrences
from rules import OccurrenceStatus


class CalendarScope(StrEnum):
    """Whose exams a feed lists: one trial's, or those of the trials assigned to a coordinator."""

    TRIAL = "trial"
    COORDINATOR = "coordinator"


@dataclass(frozen=True, slots=True)
class CalendarToken:
    """A stored feed address (never the token itself: that is shown once and not kept)."""

    id: int
    scope_kind: CalendarScope
    scope_value: str
    label: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    last_used_at: datetime | None


def token_digest(token: str) -> str:
    """The stored form of ``token``: its SHA-256 in hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _token(row: Any) -> CalendarToken:
    return CalendarToken(
        id=int(row.id),
        scope_kind=CalendarScope(row.scope_kind),
        scope_value=row.scope_value,
        label=row.label,
        created_at=row.created_at,
        created_by=row.created_by,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


def issue_token(
    conn: Connection, scope: CalendarScope, value: str, label: str, created_by: str, now: datetime
) -> tuple[int, str]:
    """A new feed token for ``scope``/``value``: (row id, the token). Only its hash is stored.

    Checks nothing about ``value``: the caller decides whether the trial or account exists.
    """
    token = secrets.token_urlsafe(32)
    result = conn.execute(
        insert(calendar_tokens).values(
            token_sha256=token_digest(token),
            scope_kind=scope.value,
            scope_value=value,
            label=label,
            created_at=now,
            created_by=created_by,
        )
    )
    return int(result.inserted_primary_key[0]), token  # type: ignore[index]


def token_in_force(conn: Connection, token: str) -> CalendarToken | None:
    """The unrevoked token ``token``, or None (unknown and revoked look the same)."""
    row = conn.execute(
        select(calendar_tokens).where(
            calendar_tokens.c.token_sha256 == token_digest(token), calendar_tokens.c.revoked_at.is_(None)
        )
    ).first()
    return _token(row) if row is not None else None


def mark_used(conn: Connection, token_id: int, now: datetime) -> None:
    conn.execute(update(calendar_tokens).where(calendar_tokens.c.id == token_id).values(last_used_at=now))


def list_tokens(conn: Connection) -> list[CalendarToken]:
    """Every token ever issued, oldest first (revoked ones included)."""
    return [_token(row) for row in conn.execute(select(calendar_tokens).order_by(calendar_tokens.c.id))]


def revoke_token(conn: Connection, token_id: int, now: datetime) -> bool:
    """Revoke token ``token_id``; False when there is no such token or it was already revoked."""
    result = conn.execute(
        update(calendar_tokens)
        .where(calendar_tokens.c.id == token_id, calendar_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return result.rowcount == 1


# -- what a feed lists ------------------------------------------------------------------------

_CANCELLED = frozenset({"cancelled", "deleted"})


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
    link_status: str  # the occurrence's status, or "" when only findings link the exam
    open_kinds: tuple[str, ...]  # kinds of open findings about it in that trial, sorted
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
        linked[(row.id, row.trial)] = _feed_exam(row, row.link_status)
    kinds: dict[tuple[int, str], set[str]] = {}
    for row in conn.execute(about):
        key = (row.id, row.trial)
        if row.finding_status == OPEN:
            kinds.setdefault(key, set()).add(row.link_status)
        if key not in linked:
            linked[key] = _feed_exam(row, "")
    feed = []
    for key, exam in linked.items():
        found = kinds.get(key)
        if found:
            exam = replace(exam, open_kinds=tuple(sorted(found)))
        feed.append(exam)
    feed.sort(key=lambda exam: (exam.start, exam.exam_id, exam.trial))
    return feed


def _feed_exam(row: Any, link_status: str) -> FeedExam:
    return FeedExam(
        **research_exam_fields(row),
        duration_minutes=row.duration_minutes,
        exam_status=row.status,
        link_status=link_status,
        open_kinds=(),
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
