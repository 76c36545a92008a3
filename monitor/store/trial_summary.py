"""One line per trial for the Trials page: subjects, open findings by severity, next due visit."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import Connection, func, select

from monitor.store.dashboard import _in_scope
from monitor.store.findings import OPEN
from monitor.store.schema import enrolments, findings, occurrences


@dataclass(slots=True)
class TrialSummary:
    subjects: int = 0
    on_study: int = 0
    open_findings: dict[str, int] = field(default_factory=dict)  # severity -> count
    next_due: date | None = None  # the soonest due date of a visit not yet booked or done


def trial_summaries(conn: Connection, trials: Collection[str], today: date) -> dict[str, TrialSummary]:
    """A summary of each of ``trials`` (three grouped queries, whatever the number of trials)."""
    found = {trial: TrialSummary() for trial in trials}
    scope = _in_scope(enrolments.c.trial, tuple(trials))
    subjects = select(enrolments.c.trial, enrolments.c.status, func.count()).where(scope)
    for trial, status, count in conn.execute(subjects.group_by(enrolments.c.trial, enrolments.c.status)):
        summary = found[trial]
        summary.subjects += int(count)
        if status in ("screening", "on_study", "follow_up"):
            summary.on_study += int(count)
    open_ = (
        select(findings.c.trial, findings.c.severity, func.count())
        .where(
            _in_scope(findings.c.trial, tuple(trials)),
            findings.c.status == OPEN,
            findings.c.kind != "in_window",
        )
        .group_by(findings.c.trial, findings.c.severity)
    )
    for trial, severity, count in conn.execute(open_):
        found[trial].open_findings[severity] = int(count)
    due = (
        select(occurrences.c.trial, func.min(occurrences.c.due))
        .where(
            _in_scope(occurrences.c.trial, tuple(trials)),
            occurrences.c.status.in_(("planned", "due")),
            occurrences.c.due >= today,
        )
        .group_by(occurrences.c.trial)
    )
    for trial, day in conn.execute(due):
        found[trial].next_due = day
    return found
