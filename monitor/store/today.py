"""A coordinator's Today: what to act on now, in the account's trials.

Four lists, each read in one query:
- visits due with nothing booked, the window closing soonest first;
- open problems about exams that start within the next ``hours`` (a wrong orderable, a
  booking outside the window, a duplicate): still fixable before the patient arrives;
- exams booked for a visit whose time passed with no arrival or completion (unconfirmed);
- visits missed since ``since`` (the deviation to report).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from monitor.store.accounts import User
from monitor.store.dashboard import _in_scope
from monitor.store.findings import OPEN
from monitor.store.schema import exams, findings, occurrences

_VISIT = tuple(
    occurrences.c[name]
    for name in ("id", "trial", "subject", "label", "due", "window_start", "window_end", "exam_id")
)


@dataclass(frozen=True, slots=True)
class Today:
    due_unbooked: list[Any]  # occurrences: trial, subject, label, due, window
    problems_soon: list[Any]  # open findings about exams starting soon, with the exam's start
    unconfirmed: list[Any]  # occurrences whose booked exam passed unconfirmed, with its start
    missed_lately: list[Any]  # occurrences missed, their window closed since ``since``

    @property
    def count(self) -> int:
        return (
            len(self.due_unbooked) + len(self.problems_soon) + len(self.unconfirmed) + len(self.missed_lately)
        )


def today_for(conn: Connection, user: User, now: datetime, today: date, *, hours: int = 72,
              missed_days: int = 14) -> Today:  # fmt: skip
    """What ``user`` should act on at ``now`` (``today`` is the site's date). Technologists
    have no Today: theirs is Upcoming."""
    if user.modality_scope() is not None:
        return Today([], [], [], [])
    trials = user.trial_scope()
    visits = select(*_VISIT).where(_in_scope(occurrences.c.trial, trials))
    due = visits.where(occurrences.c.status == "due").order_by(
        occurrences.c.window_end, occurrences.c.trial, occurrences.c.subject
    )
    unconfirmed = (
        select(*_VISIT, exams.c.start_at, exams.c.procedure_text)
        .join(exams, exams.c.id == occurrences.c.exam_id)
        .where(_in_scope(occurrences.c.trial, trials), occurrences.c.status == "unconfirmed")
        .order_by(exams.c.start_at)
    )
    missed = visits.where(
        occurrences.c.status == "missed", occurrences.c.window_end >= today - timedelta(days=missed_days)
    ).order_by(occurrences.c.window_end.desc())
    soon = (
        select(findings, exams.c.start_at, exams.c.procedure_text)
        .join(exams, exams.c.id == findings.c.exam_id)
        .where(
            _in_scope(findings.c.trial, trials),
            findings.c.status == OPEN,
            findings.c.kind != "in_window",
            exams.c.start_at >= now,
            exams.c.start_at < now + timedelta(hours=hours),
        )
        .order_by(exams.c.start_at, findings.c.id)
    )
    return Today(
        due_unbooked=list(conn.execute(due)),
        problems_soon=list(conn.execute(soon)),
        unconfirmed=list(conn.execute(unconfirmed)),
        missed_lately=list(conn.execute(missed)),
    )
