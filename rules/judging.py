"""Judging one enrolment once its exams are assigned: each occurrence's status, and the findings
and notifications it gives rise to.

An occurrence served by an exam is ``in_window``, ``early`` or ``late`` by the serving exam's
date (``booked``, or ``done`` in or out of window once performed), and every further exam
serving it is a ``duplicate``. A booked exam also plans its booking notice, reminders and
instruction sheets; once its start is ``unconfirmed_after`` past with no arrival or
completion from the EHR it is ``unconfirmed`` (shown, in the digest, not counted as done).
An occurrence nothing serves reports its cancelled or no-show exam, if any; then it is
``missed`` once its window has closed, ``due`` from ``due_soon_days`` before its window
opens (``due_unscheduled``, after a cancellation too, alerted again when the window opens
and before it closes), else ``planned``; a window that closed before the enrolment's
``monitored_from`` is ``before_monitoring`` with no finding at all. Enrolments that expect
no more scans get statuses but no ``missed`` or ``due_unscheduled`` findings.

Exams that serve nothing (after off-study, wrong orderable, unmatched) are *held*: the
engine drops such a finding when the exam serves another enrolment of the same patient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from rules.core_lab import judge_queries, judge_submission
from rules.findings import describe_exam, exam_finding, occurrence_key, slot_finding
from rules.images import ImagesSeen, acquisition_of, judge_images
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
from rules.notifications import (
    plan_alerts,
    plan_core_lab_alerts,
    plan_image_alerts,
    plan_reminders,
    plan_sheets,
    worth_alerting,
)
from rules.protocol import Trial
from rules.windows import Slot, days_outside

__all__ = ["EnrolmentContext", "Outcome", "Run", "judge_occurrences", "judge_unplaced_exams"]

_BOOKED = frozenset({ExamStatus.ORDERED, ExamStatus.SCHEDULED})


# An alert planned for a later day (a visit still unbooked when its window opens, or two
# days before it closes) goes out at this hour, site time: when the office is in.
OFFICE_HOUR = time(8, 0)
CLOSING_DAYS = 2


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
    unconfirmed_after: timedelta = timedelta(hours=24)

    def alerts(
        self,
        trial: Trial,
        finding: Finding,
        fact_day: int,
        slot: Slot | None = None,
        *,
        immediate: bool = True,
    ) -> list[PlannedNotification]:
        """The alerts ``finding`` (about ``fact_day``: exam date or window end) deserves, if any.

        A visit due with nothing booked (``slot`` given) is also alerted when its window opens
        and :data:`CLOSING_DAYS` before it closes, at :data:`OFFICE_HOUR`, while it stays
        unbooked: no visit goes missed without the office having heard while it could act.
        Such a time stays planned through its day once passed (the dispatcher sends a due row
        within seconds, and an evaluation in between must not cancel it; a problem that comes
        back later that day still gets that day's alert), not longer: a visit first found
        days into its window is not also told its window opened. With
        ``immediate`` False (a cancellation or wrong orderable was just alerted about the
        visit) only those later times are planned.
        """
        if not worth_alerting(finding.kind, fact_day, self.today, self.lookback):
            return []
        later: list[tuple[str, datetime]] = []
        if slot is not None:
            days = {"window_open": slot.opens, "closing": max(slot.opens, slot.closes - CLOSING_DAYS)}
            for phase, day in days.items():
                when = datetime.combine(date.fromordinal(day), OFFICE_HOUR, self.zone).astimezone(UTC)
                if day >= self.today and all(when != w for _, w in later):
                    later.append((phase, when))
        fact = date.fromordinal(fact_day)
        return plan_alerts(trial.routing, finding, fact, self.due_now, tuple(later), immediate=immediate)


@dataclass(frozen=True, slots=True)
class EnrolmentContext:
    """What judging one enrolment's occurrences needs, fixed once its exams are assigned.

    ``expects_scans``: whether visits that nothing serves are reported (``missed``,
    ``due_unscheduled``): the enrolment status expects scans, or an off-study date bounds
    the schedule. ``images``: what the PACS holds (:mod:`rules.images`).
    """

    run: Run
    trial: Trial
    enrolment: Enrolment
    assignment: Assignment
    expects_scans: bool
    images: ImagesSeen | None = None  # None: no PACS is watched, images are not judged

    def has_images(self, exam: ExamRecord) -> bool:
        """Whether a study in the PACS is matched to ``exam``: evidence that it was performed."""
        return self.images is not None and exam.id in self.images.studies

    def alerts(
        self, finding: Finding, fact_day: int, slot: Slot | None = None, *, immediate: bool = True
    ) -> list[PlannedNotification]:
        return self.run.alerts(self.trial, finding, fact_day, slot, immediate=immediate)


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
        sheets: list[PlannedNotification] = []
        if near is not None:
            key = occurrence_key(enrolment, near)
            finding = slot_finding(FindingKind.WRONG_ORDERABLE, enrolment, near, key, exam=exam, exam_day=day)
            if exam.status in _BOOKED:  # the technologists hear before the scan, with the warning
                run, routing = context.run, context.trial.routing
                sheets = plan_sheets(routing, enrolment, exam, exam.modality, finding, run.now, run.zone)
        elif first_window is not None and day >= first_window and (off is None or day <= off):
            finding = exam_finding(FindingKind.UNMATCHED_EXAM, enrolment, exam, day)
        else:
            continue
        outcome.held.append((exam.id, finding, [*context.alerts(finding, day), *sheets]))


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
            if context.images is not None:
                _judge_images(context, slot, key, first_of, outcome)
                _judge_submission(context, slot, key, outcome)
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
    done = primary.status in PERFORMED_EXAM or context.has_images(primary)
    outside = days_outside(day, slot.opens, slot.closes)
    kind = FindingKind.IN_WINDOW if outside == 0 else FindingKind.EARLY if outside < 0 else FindingKind.LATE
    finding = slot_finding(kind, context.enrolment, slot, key, exam=primary, exam_day=day, performed=done)
    # A booking outside the window is alerted again when the window opens and before it
    # closes while it stays so: the visit would otherwise go missed in silence.
    still_fixable = not done and kind is not FindingKind.IN_WINDOW
    outcome.report(finding, context.alerts(finding, day, slot if still_fixable else None))
    if still_fixable:
        _report_lapsed(context, slot, key, outcome)  # an in-window exam fell through: news
    if primary.status in _BOOKED and not done:
        outcome.notifications.extend(_booking_notices(context, slot, primary, finding))
        if _unconfirmed(context.run, primary):
            unconfirmed = slot_finding(
                FindingKind.UNCONFIRMED, context.enrolment, slot, key, exam=primary, exam_day=day
            )
            outcome.report(unconfirmed, [])
    for extra in slot.exams[1:]:
        extra_day = context.assignment.exam_day[extra.id]
        duplicate = slot_finding(
            FindingKind.DUPLICATE, context.enrolment, slot, key, exam=extra, exam_day=extra_day, other=primary
        )
        outcome.report(duplicate, context.alerts(duplicate, extra_day))
    if not done:
        if primary.status in _BOOKED and _unconfirmed(context.run, primary):
            return OccurrenceStatus.UNCONFIRMED, primary.id
        return OccurrenceStatus.BOOKED, primary.id
    status = OccurrenceStatus.DONE_IN_WINDOW if outside == 0 else OccurrenceStatus.DONE_OUT_OF_WINDOW
    return status, primary.id


def _judge_images(
    context: EnrolmentContext, slot: Slot, key: str, first_of: dict[str, Slot], outcome: Outcome
) -> None:
    """Report what the images of the exam serving ``slot`` show (:mod:`rules.images`), with
    alerts to the coordinators and the technologists."""
    assert context.images is not None
    exam = slot.exams[0]
    acquisition = acquisition_of(slot, exam)
    if acquisition is None:
        return
    reference = first_of.get(acquisition.baseline) if acquisition.baseline else None
    baseline = reference.exams[0] if reference is not None and reference.exams else None
    run = context.run
    verdict = judge_images(context.images, acquisition, exam, baseline, run.now)
    day = context.assignment.exam_day[exam.id]
    exam_type = slot.version.exam_for(exam.procedure_code)
    modality = exam_type.modality if exam_type is not None else exam.modality
    for found in verdict.findings:
        finding = slot_finding(
            found.kind, context.enrolment, slot, key, exam=exam, exam_day=day, note=found.note
        )
        alerts = []
        if worth_alerting(found.kind, day, run.today, run.lookback):
            alerts = plan_image_alerts(
                context.trial.routing, finding, exam, modality, run.due_now, found.about
            )
        outcome.report(finding, alerts)


def _judge_submission(context: EnrolmentContext, slot: Slot, key: str, outcome: Outcome) -> None:
    """Report where the copy of the serving exam's images for the trial's core lab stands, and
    its open queries (:mod:`rules.core_lab`), with alerts to the coordinators."""
    assert context.images is not None
    core_lab, exam = context.trial.core_lab, slot.exams[0]
    seen = context.images.submissions.get(exam.id)
    if core_lab is None or seen is None:
        return
    run = context.run
    verdicts = (
        judge_submission(core_lab, seen, run.now, run.zone),
        judge_queries(core_lab, context.images.queries.get(exam.id, ()), date.fromordinal(run.today)),
    )
    day = context.assignment.exam_day[exam.id]
    for verdict in verdicts:
        if verdict is None:
            continue
        kind = FindingKind(verdict.kind)
        finding = slot_finding(kind, context.enrolment, slot, key, exam=exam, exam_day=day, note=verdict.note)
        outcome.report(
            finding, plan_core_lab_alerts(context.trial.routing, finding, run.due_now, verdict.about)
        )


def _booking_notices(
    context: EnrolmentContext, slot: Slot, exam: ExamRecord, finding: Finding
) -> list[PlannedNotification]:
    """The booking notice, reminders and instruction sheets for ``exam``, booked for ``slot``.

    Technologists are chosen by the modality of the exam type the orderable belongs to in the
    occurrence's protocol version (the feed's modality when the version does not list it).
    """
    exam_type = slot.version.exam_for(exam.procedure_code)
    modality = exam_type.modality if exam_type is not None else exam.modality
    run = context.run
    return plan_reminders(
        context.trial.routing, context.enrolment, exam, modality, finding, run.now, run.zone
    )


def _judge_unserved(context: EnrolmentContext, slot: Slot, key: str, outcome: Outcome) -> OccurrenceStatus:
    """Report the cancelled or no-show exam tied to ``slot``, then ``missed`` or ``due_unscheduled``
    by where today falls; return the status (``missed``, ``due``, ``planned`` or
    ``before_monitoring`` for a window that closed before the office watched the subject)."""
    today, enrolment = context.run.today, context.enrolment
    started = enrolment.monitored_from
    if started is not None and slot.closes < started.toordinal():
        return OccurrenceStatus.BEFORE_MONITORING  # history nobody was asked to watch: no finding
    before = len(outcome.notifications)
    note = _report_lapsed(context, slot, key, outcome)
    just_alerted = len(outcome.notifications) > before  # the cancellation's alert says it all now
    if not note and slot in context.assignment.misordered:
        note = "the exam booked near it has an orderable this visit does not accept"
    if slot.closes < today:
        if context.expects_scans:
            finding = slot_finding(FindingKind.MISSED, enrolment, slot, key)
            outcome.report(finding, context.alerts(finding, slot.closes))
        return OccurrenceStatus.MISSED
    if slot.opens - context.run.due_soon <= today:
        # Due again after a cancellation or a wrong orderable too: that alert went out when it
        # happened, and the visit must not then go quietly missed (issue: no silent cancellation).
        if context.expects_scans:
            finding = slot_finding(FindingKind.DUE_UNSCHEDULED, enrolment, slot, key, note=note)
            outcome.report(finding, context.alerts(finding, slot.closes, slot, immediate=not just_alerted))
        return OccurrenceStatus.DUE
    return OccurrenceStatus.PLANNED


def _report_lapsed(context: EnrolmentContext, slot: Slot, key: str, outcome: Outcome) -> str:
    """Report the cancelled or no-show exam tied to ``slot``, if any; return what happened to it
    ("... was cancelled"), for the visit's ``due_unscheduled`` detail, or ``""``."""
    lapsed = context.assignment.lapsed.get(slot)
    if lapsed is None:
        return ""
    exam, day = lapsed
    kind = FindingKind.CANCELLED if exam.status is ExamStatus.CANCELLED else FindingKind.NO_SHOW
    finding = slot_finding(kind, context.enrolment, slot, key, exam=exam, exam_day=day)
    outcome.report(finding, context.alerts(finding, max(day, slot.closes)))
    what = "was cancelled" if kind is FindingKind.CANCELLED else "was a no-show"
    return f"{describe_exam(exam)} {what}"


def _unconfirmed(run: Run, exam: ExamRecord) -> bool:
    """A booked exam whose start is ``run.unconfirmed_after`` past with no arrival or completion."""
    return exam.start is not None and exam.start + run.unconfirmed_after <= run.now


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
