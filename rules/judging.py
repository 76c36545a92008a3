"""Judging one enrolment once its exams are assigned: each occurrence's status, and the findings
and notifications it gives rise to.

An occurrence served by an exam is ``in_window``, ``early`` or ``late`` by the serving exam's
date (``booked``, or ``done`` in or out of window once performed), and every further exam
serving it is a ``duplicate``. A booked exam also plans its booking notice, reminders and
instruction sheets. An occurrence nothing serves reports its cancelled or no-show exam, if
any; then it is ``missed`` once its window has closed, ``due`` from ``due_soon_days`` before
its window opens (``due_unscheduled``, unless a cancellation or a wrong orderable is already
reported for it), else ``planned``. Enrolments that expect no more scans get statuses but no
``missed`` or ``due_unscheduled`` findings.

Exams that serve nothing (after off-study, wrong orderable, unmatched) are *held*: the
engine drops such a finding when the exam serves another enrolment of the same patient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from rules.findings import exam_finding, occurrence_key, slot_finding
from rules.matching import Assignment
from rules.model import (
    PERFORMED_EXAM,
    Enrolment,
    ExamRecord,
    ExamStatus,
    Finding,
    FindingKind,
    Occurrence,
    OccurrenceStatus,
    PlannedNotification,
)
from rules.notifications import plan_alerts, plan_reminders, worth_alerting
from rules.protocol import Trial
from rules.windows import Slot, days_outside

__all__ = ["EnrolmentContext", "Outcome", "Run", "judge_occurrences", "judge_unplaced_exams"]

_BOOKED = frozenset({ExamStatus.ORDERED, ExamStatus.SCHEDULED})


@dataclass(frozen=True, slots=True)
class Run:
    """One evaluation: ``now`` and the settings every enrolment is judged by (dates as ordinals)."""

    now: datetime
    zone: ZoneInfo
    today: int  # ``now``'s local date in the site's zone
    due_soon: int
    horizon: int
    lookback: int
    due_now: datetime  # ``now`` in UTC: when immediate alerts are due

    def alerts(self, trial: Trial, finding: Finding, fact_day: int) -> list[PlannedNotification]:
        """The alerts ``finding`` (about ``fact_day``: exam date or window end) deserves now, if any."""
        if not worth_alerting(finding.kind, fact_day, self.today, self.lookback):
            return []
        return plan_alerts(trial.routing, finding, date.fromordinal(fact_day), self.due_now)


@dataclass(frozen=True, slots=True)
class EnrolmentContext:
    """What judging one enrolment's occurrences needs, fixed once its exams are assigned.

    ``expects_scans``: whether visits that nothing serves are reported (``missed``,
    ``due_unscheduled``): the enrolment status expects scans, or an off-study date bounds
    the schedule.
    """

    run: Run
    trial: Trial
    enrolment: Enrolment
    assignment: Assignment
    expects_scans: bool

    def alerts(self, finding: Finding, fact_day: int) -> list[PlannedNotification]:
        return self.run.alerts(self.trial, finding, fact_day)


@dataclass(slots=True)
class Outcome:
    """What one enrolment's evaluation produced, in output order.

    ``held``: findings (with their alerts) about exams that serve nothing here; the engine
    keeps one only if its exam serves no enrolment of the evaluation (``served`` of each).
    """

    served: set[int]
    occurrences: list[Occurrence] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notifications: list[PlannedNotification] = field(default_factory=list)
    held: list[tuple[int, Finding, list[PlannedNotification]]] = field(default_factory=list)

    def report(self, finding: Finding, alerts: list[PlannedNotification]) -> None:
        self.findings.append(finding)
        self.notifications.extend(alerts)


def judge_unplaced_exams(context: EnrolmentContext, slots: list[Slot], outcome: Outcome) -> None:
    """Hold the findings about exams that serve no occurrence: ``after_off_study``, then, in exam
    order, ``wrong_orderable`` (a free occurrence of the same modality is near) or
    ``unmatched_exam`` (only from the subject's first window on, and not after off-study)."""
    enrolment, assignment = context.enrolment, context.assignment
    for exam, day in assignment.after_off_study:
        finding = exam_finding(FindingKind.AFTER_OFF_STUDY, enrolment, exam, day)
        outcome.held.append((exam.id, finding, context.alerts(finding, day)))
    if not assignment.unplaced:
        return
    first_window = slots[0].opens - context.trial.match_within if slots else None
    off = enrolment.off_study.toordinal() if enrolment.off_study is not None else None
    for exam, day, near in assignment.unplaced:
        if near is not None:
            key = occurrence_key(enrolment, near)
            finding = slot_finding(FindingKind.WRONG_ORDERABLE, enrolment, near, key, exam=exam, exam_day=day)
        elif first_window is not None and day >= first_window and (off is None or day <= off):
            finding = exam_finding(FindingKind.UNMATCHED_EXAM, enrolment, exam, day)
        else:
            continue
        outcome.held.append((exam.id, finding, context.alerts(finding, day)))


def judge_occurrences(context: EnrolmentContext, slots: list[Slot], outcome: Outcome) -> None:
    """Judge every occurrence in ``slots`` (window order): report its findings and notifications
    and add its :class:`Occurrence` record to ``outcome``."""
    first_of: dict[str, Slot] = {}  # each timepoint's first occurrence: the baseline for a scanner
    for slot in slots:
        first_of.setdefault(slot.plan.timepoint.id, slot)
    for slot in slots:
        key = occurrence_key(context.enrolment, slot)
        if slot.exams:
            status, exam_id = _judge_served(context, slot, key, outcome)
        else:
            status, exam_id = _judge_unserved(context, slot, key, outcome), None
        baseline = first_of.get(slot.plan.baseline_for) if slot.plan.baseline_for else None
        outcome.occurrences.append(_record(context, slot, key, status, exam_id, _scanner(baseline)))


def _judge_served(
    context: EnrolmentContext, slot: Slot, key: str, outcome: Outcome
) -> tuple[OccurrenceStatus, int]:
    """Report the timing of the exam serving ``slot`` (the first of ``slot.exams``), its booking
    notices if it is still booked, and the duplicates; return the status and the serving exam."""
    primary = slot.exams[0]
    day = context.assignment.exam_day[primary.id]
    done = primary.status in PERFORMED_EXAM
    outside = days_outside(day, slot.opens, slot.closes)
    kind = FindingKind.IN_WINDOW if outside == 0 else FindingKind.EARLY if outside < 0 else FindingKind.LATE
    finding = slot_finding(kind, context.enrolment, slot, key, exam=primary, exam_day=day, performed=done)
    outcome.report(finding, context.alerts(finding, day))
    if primary.status in _BOOKED:
        outcome.notifications.extend(_booking_notices(context, slot, primary, finding))
    for extra in slot.exams[1:]:
        extra_day = context.assignment.exam_day[extra.id]
        duplicate = slot_finding(
            FindingKind.DUPLICATE, context.enrolment, slot, key, exam=extra, exam_day=extra_day, other=primary
        )
        outcome.report(duplicate, context.alerts(duplicate, extra_day))
    if not done:
        return OccurrenceStatus.BOOKED, primary.id
    status = OccurrenceStatus.DONE_IN_WINDOW if outside == 0 else OccurrenceStatus.DONE_OUT_OF_WINDOW
    return status, primary.id


def _booking_notices(
    context: EnrolmentContext, slot: Slot, exam: ExamRecord, finding: Finding
) -> list[PlannedNotification]:
    """The booking notice, reminders and instruction sheets for ``exam``, booked for ``slot``.

    Technologists are chosen by the modality of the exam type the orderable belongs to in the
    occurrence's protocol version (the feed's modality when the version does not list it).
    """
    exam_type = slot.version.exam_for(exam.procedure_code)
    modality = exam_type.modality if exam_type is not None else exam.modality
    return plan_reminders(context.trial.routing, context.enrolment, exam, modality, finding, context.run.now)


def _judge_unserved(context: EnrolmentContext, slot: Slot, key: str, outcome: Outcome) -> OccurrenceStatus:
    """Report the cancelled or no-show exam tied to ``slot``, then ``missed`` or ``due_unscheduled``
    by where today falls; return the status (``missed``, ``due`` or ``planned``)."""
    today, enrolment = context.run.today, context.enrolment
    lapsed = context.assignment.lapsed.get(slot)
    if lapsed is not None:
        exam, day = lapsed
        kind = FindingKind.CANCELLED if exam.status is ExamStatus.CANCELLED else FindingKind.NO_SHOW
        finding = slot_finding(kind, enrolment, slot, key, exam=exam, exam_day=day)
        outcome.report(finding, context.alerts(finding, max(day, slot.closes)))
    if slot.closes < today:
        if context.expects_scans:
            finding = slot_finding(FindingKind.MISSED, enrolment, slot, key)
            outcome.report(finding, context.alerts(finding, slot.closes))
        return OccurrenceStatus.MISSED
    if slot.opens - context.run.due_soon <= today:
        # A cancellation or a wrong orderable already tells the office the visit needs booking.
        if context.expects_scans and lapsed is None and slot not in context.assignment.misordered:
            finding = slot_finding(FindingKind.DUE_UNSCHEDULED, enrolment, slot, key)
            outcome.report(finding, context.alerts(finding, slot.closes))
        return OccurrenceStatus.DUE
    return OccurrenceStatus.PLANNED


def _scanner(baseline: Slot | None) -> str | None:
    """The room of the performed baseline exam the occurrence must reuse, if there is one."""
    if baseline is not None and baseline.exams and baseline.exams[0].status in PERFORMED_EXAM:
        return baseline.exams[0].location or None
    return None


def _record(
    context: EnrolmentContext,
    slot: Slot,
    key: str,
    status: OccurrenceStatus,
    exam_id: int | None,
    scanner: str | None,
) -> Occurrence:
    """The :class:`Occurrence` the engine returns for ``slot``."""
    window_start, window_end, _ = slot.window()
    return Occurrence(
        key=key,
        trial=context.trial.id,
        subject=context.enrolment.subject,
        enrolment_id=context.enrolment.id,
        timepoint=slot.plan.timepoint.id,
        index=slot.index,
        label=slot.label,
        due=date.fromordinal(slot.due),
        window_start=window_start,
        window_end=window_end,
        exam_types=slot.plan.timepoint.exams,
        version=slot.version.name,
        status=status,
        exam_id=exam_id,
        required_scanner=scanner,
    )
