"""A subject's schedule as the engine plans it now, and the rescheduling assistant
(:mod:`rules.rescheduling`) for each visit still to be booked or booked out of its window:
shown on the subject's page and printed for the schedulers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from monitor.config import Settings
from monitor.store.registry.records import load_enrolments, load_exams
from rules.engine import evaluate
from rules.model import FindingKind, Occurrence, OccurrenceStatus
from rules.protocol import Trial
from rules.rescheduling import Rescheduling, reschedule

OUT_OF_WINDOW = frozenset({FindingKind.EARLY, FindingKind.LATE})


@dataclass(frozen=True, slots=True)
class SubjectSchedule:
    occurrences: tuple[Occurrence, ...]  # every visit planned, in window order
    assistant: tuple[Rescheduling, ...]  # the visits due and unbooked, or booked out of window
    out_of_window: frozenset[str]  # occurrence keys whose exam falls outside the window


def subject_schedule(
    conn: Connection, settings: Settings, trial: Trial, enrolment_id: int, now: datetime
) -> SubjectSchedule:
    """What the engine plans for the enrolment at ``now``, with the assistant's answers."""
    zone = ZoneInfo(settings.site.timezone)
    rules = settings.evaluation
    [enrolment] = load_enrolments(conn, [enrolment_id])
    exams = load_exams(conn, enrolment.mrns) if enrolment.mrns else []
    judged = evaluate(
        [trial], [enrolment], exams, now, site_zone=zone, due_soon_days=rules.due_soon_days,
        unconfirmed_after_hours=rules.unconfirmed_after_hours,
    )  # fmt: skip
    late_or_early = frozenset(
        finding.occurrence_key
        for finding in judged.findings
        if finding.kind in OUT_OF_WINDOW and finding.occurrence_key is not None
    )
    targets = [o for o in judged.occurrences if o.status is OccurrenceStatus.DUE or o.key in late_or_early]
    closures = settings.site.closures()
    answers = (
        reschedule(
            trial,
            enrolment,
            exams,
            o.key,
            now,
            site_zone=zone,
            closures=closures,
            due_soon_days=rules.due_soon_days,
        )
        for o in targets
    )
    return SubjectSchedule(judged.occurrences, tuple(a for a in answers if a is not None), late_or_early)
