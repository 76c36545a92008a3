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
``after_off_study``. A booked exam whose time has passed with no completion message still
serves its visit (no ``missed``: feeds that never send completions would otherwise flood the
office with false alarms), is ``booked`` for ``unconfirmed_after_hours`` and then
``unconfirmed``: never done until the feed says so.

One enrolment is evaluated in named steps (:func:`_evaluate_one`): pick its exams
(:func:`_exams_in_scope`), schedule its occurrences (:func:`_schedule_occurrences`), assign
the exams to them (:func:`rules.matching.assign`), hold the findings about exams that serve
nothing (:func:`rules.judging.judge_unplaced_exams`), then judge each occurrence, which also
plans alerts and reminders (:func:`rules.judging.judge_occurrences`). :func:`_combine` then
drops the held findings whose exam serves another enrolment.

Re-evaluating after one exam event: build the MRN index once (:func:`index_exams`), update
it, and call :func:`evaluate_enrolments` with every enrolment sharing the exam's MRN.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from rules.images import ImagesSeen
from rules.judging import EnrolmentContext, Outcome, Run, judge_occurrences, judge_unplaced_exams
from rules.matching import DatedExam, assign
from rules.model import (
    PERFORMED_EXAM,
    Enrolment,
    Evaluation,
    ExamRecord,
    ExamStatus,
    Finding,
    Occurrence,
    PlannedNotification,
)
from rules.protocol import Trial
from rules.windows import Slot, TrialPlan, schedule

__all__ = ["ExamsByMrn", "evaluate", "evaluate_enrolments", "exams_of", "index_exams"]

ExamsByMrn = Mapping[str, Sequence[ExamRecord]]


def index_exams(exams: Iterable[ExamRecord]) -> dict[str, list[ExamRecord]]:
    """Exams by MRN, each list sorted by exam id. Build it once; update one MRN's list per event."""
    by_mrn: dict[str, list[ExamRecord]] = {}
    for exam in exams:
        by_mrn.setdefault(exam.mrn, []).append(exam)
    for exams_of_one in by_mrn.values():
        exams_of_one.sort(key=_exam_id)
    return by_mrn


def exams_of(enrolment: Enrolment, exams_by_mrn: ExamsByMrn) -> Sequence[ExamRecord]:
    """The exams filed under any of the enrolment's MRNs that are this patient's
    (:meth:`Enrolment.holds`), in exam id order, each once."""
    if len(enrolment.mrns) == 1:
        found: Sequence[ExamRecord] = exams_by_mrn.get(enrolment.mrns[0], ())
    else:  # one exam may be filed under two of the patient's MRNs
        merged = {exam.id: exam for mrn in enrolment.mrns for exam in exams_by_mrn.get(mrn, ())}
        found = list(merged.values())
    if enrolment.pools:
        found = [exam for exam in found if enrolment.holds(exam)]
    return sorted(found, key=_exam_id)  # the index may be out of order; assignment needs id order


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
    unconfirmed_after_hours: float = 24.0,
    images: ImagesSeen | None = None,
) -> Evaluation:
    """Evaluate every enrolment against its trial's protocol.

    ``now`` must be timezone-aware; ``site_zone`` turns exam instants into local dates.
    ``due_soon_days``: an unbooked occurrence is ``due_unscheduled`` from this many days before
    its window opens. ``horizon_days``: occurrences are generated up to ``now`` + this (and
    past the last exam). ``alert_lookback_days``: no alerts about facts older than this.
    ``unconfirmed_after_hours``: a booked exam this long past its start with no arrival or
    completion message is ``unconfirmed`` (not done) until the feed says it happened.
    ``images``: the PACS studies matched to the exams (:mod:`rules.images`); None when no
    PACS is watched. Raises ValueError for a naive ``now`` or exam start.
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
        unconfirmed_after_hours=unconfirmed_after_hours,
        images=images,
    )


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
    unconfirmed_after_hours: float = 24.0,
    images: ImagesSeen | None = None,
) -> Evaluation:
    """Evaluate only ``enrolments``, with exams looked up in a prebuilt MRN index.

    Same rules and arguments as :func:`evaluate`. For the re-evaluation after one exam event,
    pass every enrolment that shares the exam's MRN (a patient in two trials). ``images``:
    the PACS studies matched to the exams, when a PACS is watched (:mod:`rules.images`).
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    catalogue = trials if isinstance(trials, Mapping) else {trial.id: trial for trial in trials}
    run = Run(
        now,
        site_zone,
        now.astimezone(site_zone).toordinal(),
        due_soon_days,
        horizon_days,
        alert_lookback_days,
        now.astimezone(UTC),
        timedelta(hours=unconfirmed_after_hours),
    )
    plans: dict[str, TrialPlan] = {}  # each protocol digested once per evaluation
    outcomes: list[Outcome] = []
    unknown: set[str] = set()
    for enrolment in sorted(enrolments, key=lambda e: (e.trial, e.subject, e.id)):
        trial = catalogue.get(enrolment.trial)
        if trial is None:
            unknown.add(enrolment.trial)
            continue
        plan = plans.get(trial.id)
        if plan is None:
            plan = plans[trial.id] = TrialPlan(trial)
        outcomes.append(_evaluate_one(run, plan, enrolment, exams_by_mrn, images))
    return _combine(outcomes, unknown)


def _evaluate_one(
    run: Run, plan: TrialPlan, enrolment: Enrolment, exams_by_mrn: ExamsByMrn, images: ImagesSeen | None
) -> Outcome:
    """Everything one enrolment gives rise to; findings about exams serving nothing are held."""
    exams = _exams_in_scope(run, plan, enrolment, exams_by_mrn)
    slots = _schedule_occurrences(run, plan, enrolment, exams)
    off_study = enrolment.off_study.toordinal() if enrolment.off_study is not None else None
    assignment = assign(plan, slots, exams, off_study)
    # An off-study date bounds the schedule, so the visits before it were expected even when
    # the subject has since left the trial.
    expects_scans = enrolment.status.expects_scans or off_study is not None
    context = EnrolmentContext(run, plan.trial, enrolment, assignment, expects_scans, images)
    outcome = Outcome(served=assignment.served)
    judge_unplaced_exams(context, slots, outcome)
    judge_occurrences(context, slots, outcome)
    return outcome


def _combine(outcomes: list[Outcome], unknown: set[str]) -> Evaluation:
    """The evaluation: each enrolment's occurrences, findings and notifications in turn, with its
    held findings kept only when their exam serves no enrolment evaluated here."""
    served = set().union(*(outcome.served for outcome in outcomes))
    findings: list[Finding] = []
    occurrences: list[Occurrence] = []
    notifications: list[PlannedNotification] = []
    for outcome in outcomes:
        occurrences.extend(outcome.occurrences)
        findings.extend(outcome.findings)
        notifications.extend(outcome.notifications)
        for exam_id, finding, alerts in outcome.held:
            if exam_id not in served:
                findings.append(finding)
                notifications.extend(alerts)
    return Evaluation(tuple(findings), tuple(occurrences), tuple(notifications), tuple(sorted(unknown)))


def _exam_id(exam: ExamRecord) -> int:
    return exam.id


def _exams_in_scope(
    run: Run, plan: TrialPlan, enrolment: Enrolment, exams_by_mrn: ExamsByMrn
) -> list[DatedExam]:
    """The enrolment's exams (any of its MRNs) that concern the trial, by exam id, with local dates.

    Left out: deleted exams, exams with no start time yet, and exams of a modality the trial
    does not use with no orderable it accepts. Raises ValueError for a naive start.
    """
    zone = run.zone
    dated: list[DatedExam] = []
    for exam in exams_of(enrolment, exams_by_mrn):
        start = exam.start
        if start is None or exam.status is ExamStatus.DELETED:
            continue
        if exam.modality not in plan.modalities and exam.procedure_code not in plan.orderables:
            continue
        if start.tzinfo is None:
            raise ValueError(f"exam {exam.id}: start must be timezone-aware")
        dated.append((exam, start.astimezone(zone).toordinal()))
    return dated


def _schedule_occurrences(
    run: Run, plan: TrialPlan, enrolment: Enrolment, exams: Sequence[DatedExam]
) -> list[Slot]:
    """The enrolment's occurrences, sorted by window start, far enough ahead for every exam.

    They run to ``now`` + the horizon, or further when an exam is dated beyond it, so that
    the occurrence it may serve exists. Exams already performed place the visits of series
    counted from the previous exam (:func:`rules.windows.schedule`).
    """
    last_day = max((day for _, day in exams), default=run.today)
    through = max(run.today + run.horizon, last_day + plan.trial.match_within + plan.reach)
    performed: dict[str, list[int]] | None = None
    if plan.needs_performed:
        performed = {}
        for exam, day in exams:
            if exam.status in PERFORMED_EXAM:
                performed.setdefault(exam.procedure_code, []).append(day)
        for days in performed.values():
            days.sort()
    return schedule(plan, enrolment, through=date.fromordinal(through), performed=performed)
