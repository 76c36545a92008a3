"""The compliance engine: protocols + enrolments + exams + ``now`` -> findings and planned notifications.

Matching an exam to a subject: by MRN (any of the enrolment's MRNs). Exams of a modality the
trial does not use, with no orderable it accepts, are not its business and are ignored;
deleted exams and exams with no start time yet are ignored too.

How exams are assigned to occurrences (deterministic and stable) is in :mod:`rules.matching`.

Cancelled and no-show exams hold nothing: each is tied to the occurrence it was best
eligible for, and if no active exam serves that occurrence the latest such exam is reported
(``cancelled``/``no_show``: the timepoint is open again) instead of ``due_unscheduled``.
Active exams that are eligible nowhere become ``wrong_orderable`` when an unserved
occurrence of the same modality is within ``match_within`` days, else ``unmatched_exam``
(only from the subject's first window on), unless they serve another enrolment of the same
patient in the same evaluation. A research orderable dated after the off-study date is
``after_off_study``. A booked exam whose time has passed with no completion message counts
as performed for ``missed`` (feeds that never send completions would otherwise flood the
office with false alarms) but is reported as booked, not done.

Re-evaluating after one exam event: build the MRN index once (:func:`index_exams`), update
it, and call :func:`evaluate_enrolments` with every enrolment sharing the exam's MRN.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from rules.findings import exam_finding, occurrence_key, slot_finding
from rules.matching import Nearby, place, rank
from rules.model import (
    ACTIVE_EXAM,
    PERFORMED_EXAM,
    Enrolment,
    Evaluation,
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
from rules.windows import Slot, TrialPlan, days_outside, schedule

__all__ = ["ExamsByMrn", "evaluate", "evaluate_enrolments", "index_exams"]

ExamsByMrn = Mapping[str, Sequence[ExamRecord]]
_BOOKED = frozenset({ExamStatus.ORDERED, ExamStatus.SCHEDULED})


def index_exams(exams: Iterable[ExamRecord]) -> dict[str, list[ExamRecord]]:
    """Exams by MRN, each list sorted by exam id. Build it once; update one MRN's list per event."""
    by_mrn: dict[str, list[ExamRecord]] = {}
    for exam in exams:
        by_mrn.setdefault(exam.mrn, []).append(exam)
    for exams_of_one in by_mrn.values():
        exams_of_one.sort(key=_exam_id)
    return by_mrn


def evaluate(
    trials: Mapping[str, Trial] | Iterable[Trial],
    enrolments: Iterable[Enrolment],
    exams: Iterable[ExamRecord],
    now: datetime,
    *,
    site_zone: ZoneInfo,
    due_soon_days: int = 7,
    horizon_days: int = 182,
    alert_lookback_days: int = 14,
) -> Evaluation:
    """Evaluate every enrolment against its trial's protocol.

    ``now`` must be timezone-aware; ``site_zone`` turns exam instants into local dates.
    ``due_soon_days``: an unbooked occurrence is ``due_unscheduled`` from this many days before
    its window opens. ``horizon_days``: occurrences are generated up to ``now`` + this (and
    past the last exam). ``alert_lookback_days``: no alerts about facts older than this.
    Raises ValueError for a naive ``now`` or exam start.
    """
    return evaluate_enrolments(
        trials,
        enrolments,
        index_exams(exams),
        now,
        site_zone=site_zone,
        due_soon_days=due_soon_days,
        horizon_days=horizon_days,
        alert_lookback_days=alert_lookback_days,
    )


@dataclass(frozen=True, slots=True)
class _Context:
    now: datetime
    zone: ZoneInfo
    today: int
    due_soon: int
    horizon: int
    lookback: int
    due_now: datetime  # ``now`` in UTC: when immediate alerts are due

    def alerts(self, trial: Trial, finding: Finding, fact_day: int) -> list[PlannedNotification]:
        if not worth_alerting(finding.kind, fact_day, self.today, self.lookback):
            return []
        return plan_alerts(trial.routing, finding, date.fromordinal(fact_day), self.due_now)


@dataclass(slots=True)
class _Outcome:
    occurrences: list[Occurrence] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notifications: list[PlannedNotification] = field(default_factory=list)
    assigned: set[int] = field(default_factory=set)
    # findings about an exam that serves nothing here: dropped if it serves another enrolment
    pending: list[tuple[int, Finding, list[PlannedNotification]]] = field(default_factory=list)


def evaluate_enrolments(
    trials: Mapping[str, Trial] | Iterable[Trial],
    enrolments: Iterable[Enrolment],
    exams_by_mrn: ExamsByMrn,
    now: datetime,
    *,
    site_zone: ZoneInfo,
    due_soon_days: int = 7,
    horizon_days: int = 182,
    alert_lookback_days: int = 14,
) -> Evaluation:
    """Evaluate only ``enrolments``, with exams looked up in a prebuilt MRN index.

    Same rules and arguments as :func:`evaluate`. For the re-evaluation after one exam event,
    pass every enrolment that shares the exam's MRN (a patient in two trials).
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    catalogue = trials if isinstance(trials, Mapping) else {trial.id: trial for trial in trials}
    context = _Context(
        now,
        site_zone,
        now.astimezone(site_zone).toordinal(),
        due_soon_days,
        horizon_days,
        alert_lookback_days,
        now.astimezone(UTC),
    )
    plans: dict[str, TrialPlan] = {}
    outcomes: list[_Outcome] = []
    unknown: set[str] = set()
    for enrolment in sorted(enrolments, key=lambda e: (e.trial, e.subject, e.id)):
        trial = catalogue.get(enrolment.trial)
        if trial is None:
            unknown.add(enrolment.trial)
            continue
        plan = plans.get(trial.id)
        if plan is None:
            plan = plans[trial.id] = TrialPlan(trial)
        outcomes.append(_evaluate_one(context, plan, enrolment, exams_by_mrn))
    assigned = set().union(*(outcome.assigned for outcome in outcomes))
    findings: list[Finding] = []
    occurrences: list[Occurrence] = []
    notifications: list[PlannedNotification] = []
    for outcome in outcomes:
        occurrences.extend(outcome.occurrences)
        findings.extend(outcome.findings)
        notifications.extend(outcome.notifications)
        for exam_id, finding, alerts in outcome.pending:
            if exam_id not in assigned:
                findings.append(finding)
                notifications.extend(alerts)
    return Evaluation(tuple(findings), tuple(occurrences), tuple(notifications), tuple(sorted(unknown)))


def _exam_id(exam: ExamRecord) -> int:
    return exam.id


def _exams_of(enrolment: Enrolment, exams_by_mrn: ExamsByMrn) -> Sequence[ExamRecord]:
    if len(enrolment.mrns) == 1:
        return exams_by_mrn.get(enrolment.mrns[0], ())
    merged = {exam.id: exam for mrn in enrolment.mrns for exam in exams_by_mrn.get(mrn, ())}
    return sorted(merged.values(), key=_exam_id)


def _evaluate_one(
    context: _Context, plan: TrialPlan, enrolment: Enrolment, exams_by_mrn: ExamsByMrn
) -> _Outcome:
    trial, zone, today = plan.trial, context.zone, context.today
    slack = trial.match_within
    mine: list[tuple[ExamRecord, int]] = []
    for exam in sorted(_exams_of(enrolment, exams_by_mrn), key=_exam_id):
        start = exam.start
        if start is None or exam.status is ExamStatus.DELETED:
            continue
        if exam.modality not in plan.modalities and exam.procedure_code not in plan.orderables:
            continue
        if start.tzinfo is None:
            raise ValueError(f"exam {exam.id}: start must be timezone-aware")
        mine.append((exam, start.astimezone(zone).toordinal()))
    last_day = max((day for _, day in mine), default=today)
    through = max(today + context.horizon, last_day + slack + plan.reach)
    performed: dict[str, list[int]] | None = None
    if plan.needs_performed:
        performed = {}
        for exam, day in mine:
            if exam.status in PERFORMED_EXAM:
                performed.setdefault(exam.procedure_code, []).append(day)
        for days in performed.values():
            days.sort()
    slots = schedule(plan, enrolment, through=date.fromordinal(through), performed=performed)

    outcome = _Outcome()
    off = enrolment.off_study.toordinal() if enrolment.off_study is not None else None
    by_code = Nearby(slots, lambda slot: slot.plan.accepted)
    day_of: dict[int, int] = {}
    unplaced: list[tuple[ExamRecord, int]] = []
    lapsed: dict[Slot, tuple[ExamRecord, int]] = {}
    for exam, day in mine:
        day_of[exam.id] = day
        if exam.status not in ACTIVE_EXAM:  # cancelled or no-show: tie to its best occurrence
            candidates = by_code.near(exam.procedure_code, day, slack)
            if candidates:
                lapsed[min(candidates, key=rank(day))] = (exam, day)
            continue
        if off is not None and day > off and exam.procedure_code in plan.orderables:
            finding = exam_finding(FindingKind.AFTER_OFF_STUDY, enrolment, exam, day)
            outcome.pending.append((exam.id, finding, context.alerts(trial, finding, day)))
            continue
        candidates = by_code.near(exam.procedure_code, day, slack)
        if not candidates:
            unplaced.append((exam, day))
            continue
        slot, _ = place(candidates, day)
        slot.exams.append(exam)
        outcome.assigned.add(exam.id)

    wrong_near: set[Slot] = set()
    if unplaced:
        by_modality = Nearby(slots, lambda slot: slot.plan.modalities)
        first_window = slots[0].opens - slack if slots else None
        for exam, day in unplaced:
            near = [slot for slot in by_modality.near(exam.modality, day, slack) if not slot.exams]
            if near:
                slot = min(near, key=rank(day))
                wrong_near.add(slot)
                finding = slot_finding(
                    FindingKind.WRONG_ORDERABLE,
                    enrolment,
                    slot,
                    occurrence_key(enrolment, slot),
                    exam=exam,
                    exam_day=day,
                )
                outcome.pending.append((exam.id, finding, context.alerts(trial, finding, day)))
            elif first_window is not None and day >= first_window and (off is None or day <= off):
                finding = exam_finding(FindingKind.UNMATCHED_EXAM, enrolment, exam, day)
                outcome.pending.append((exam.id, finding, context.alerts(trial, finding, day)))

    expects = enrolment.status.expects_scans or off is not None
    first_of: dict[str, Slot] = {}
    for slot in slots:
        first_of.setdefault(slot.plan.timepoint.id, slot)
    for slot in slots:
        key = occurrence_key(enrolment, slot)
        status, exam_id = _judge(
            context, trial, enrolment, slot, key, day_of, lapsed, wrong_near, expects, outcome
        )
        scanner = None
        baseline = first_of.get(slot.plan.baseline_for) if slot.plan.baseline_for else None
        if baseline is not None and baseline.exams and baseline.exams[0].status in PERFORMED_EXAM:
            scanner = baseline.exams[0].location or None
        window_start, window_end, _ = slot.window()
        outcome.occurrences.append(
            Occurrence(
                key=key,
                trial=trial.id,
                subject=enrolment.subject,
                enrolment_id=enrolment.id,
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
        )
    return outcome


def _judge(
    context: _Context,
    trial: Trial,
    enrolment: Enrolment,
    slot: Slot,
    key: str,
    day_of: Mapping[int, int],
    lapsed: Mapping[Slot, tuple[ExamRecord, int]],
    wrong_near: set[Slot],
    expects: bool,
    outcome: _Outcome,
) -> tuple[OccurrenceStatus, int | None]:
    """Add the findings and notifications of one occurrence; return its status and serving exam."""
    today = context.today
    add = outcome.findings.append
    if slot.exams:
        primary = slot.exams[0]
        day = day_of[primary.id]
        done = primary.status in PERFORMED_EXAM
        outside = days_outside(day, slot.opens, slot.closes)
        kind = (
            FindingKind.IN_WINDOW if outside == 0 else FindingKind.EARLY if outside < 0 else FindingKind.LATE
        )
        finding = slot_finding(kind, enrolment, slot, key, exam=primary, exam_day=day, performed=done)
        add(finding)
        outcome.notifications.extend(context.alerts(trial, finding, day))
        if primary.status in _BOOKED:
            exam_type = slot.version.exam_for(primary.procedure_code)
            modality = exam_type.modality if exam_type is not None else primary.modality
            outcome.notifications.extend(
                plan_reminders(trial.routing, enrolment, primary, modality, finding, context.now)
            )
        for extra in slot.exams[1:]:
            duplicate = slot_finding(
                FindingKind.DUPLICATE,
                enrolment,
                slot,
                key,
                exam=extra,
                exam_day=day_of[extra.id],
                other=primary,
            )
            add(duplicate)
            outcome.notifications.extend(context.alerts(trial, duplicate, day_of[extra.id]))
        if not done:
            return OccurrenceStatus.BOOKED, primary.id
        status = OccurrenceStatus.DONE_IN_WINDOW if outside == 0 else OccurrenceStatus.DONE_OUT_OF_WINDOW
        return status, primary.id
    gone = lapsed.get(slot)
    if gone is not None:
        exam, day = gone
        kind = FindingKind.CANCELLED if exam.status is ExamStatus.CANCELLED else FindingKind.NO_SHOW
        finding = slot_finding(kind, enrolment, slot, key, exam=exam, exam_day=day)
        add(finding)
        outcome.notifications.extend(context.alerts(trial, finding, max(day, slot.closes)))
    if slot.closes < today:
        if expects:
            finding = slot_finding(FindingKind.MISSED, enrolment, slot, key)
            add(finding)
            outcome.notifications.extend(context.alerts(trial, finding, slot.closes))
        return OccurrenceStatus.MISSED, None
    if slot.opens - context.due_soon <= today:
        if expects and gone is None and slot not in wrong_near:
            finding = slot_finding(FindingKind.DUE_UNSCHEDULED, enrolment, slot, key)
            add(finding)
            outcome.notifications.extend(context.alerts(trial, finding, slot.closes))
        return OccurrenceStatus.DUE, None
    return OccurrenceStatus.PLANNED, None
