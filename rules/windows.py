"""Occurrence generation and window arithmetic: which visits are due for a subject, and when.

Everything here is in calendar DATES in the site's zone. Windows are inclusive at both ends:
an exam at 23:30 local time on the last day of the window is in window, even when that
instant is already the next day in UTC (:func:`local_date` converts). Dates are handled as
proleptic ordinals (``date.toordinal()``) internally, so week arithmetic across month ends
and DST changes is plain integer addition: a DST change moves clocks, never dates.

How a timepoint becomes occurrences (per protocol version, see :mod:`rules.protocol`):

- single visit: due = anchor + offset;
- recurrence counted from the anchor: due_k = anchor + first + (k - 1) * every (no drift);
- recurrence counted from the previous exam: due_k = (date the previous occurrence's exam was
  performed, else its due date) + every;
- ``anchor = "previous"``: the base is the last occurrence of the timepoint listed just
  before (same arm): its performed date, else its due date.

A series ends at ``until`` (offset from the anchor, or an anchor date once it is set), after
``count`` visits, at the subject's off-study date, or at the horizon ``through`` (open-ended
series extend automatically as the horizon moves). Visits anchored to a date the enrolment
does not have yet (progression, end of treatment) produce nothing until it is set.
Each version generates its own full schedule; an occurrence is kept when its due date falls
in that version's effective range. Occurrences of one timepoint id are then numbered 1..n in
date order, which gives ``{n}`` and the occurrence key.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from rules.model import Enrolment, ExamRecord, Occurrence
from rules.protocol import ANCHOR_OFF_STUDY, ANCHOR_PREVIOUS, CountFrom, ProtocolVersion, Timepoint, Trial

__all__ = ["Slot", "TrialPlan", "days_outside", "local_date", "occurrences", "schedule"]

_FAR_PAST = date.min.toordinal()
_FAR_FUTURE = date.max.toordinal()


def local_date(instant: datetime, zone: ZoneInfo) -> date:
    """The calendar date of an aware instant in ``zone``; raises ValueError for a naive datetime."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("exam start times must be timezone-aware (UTC)")
    return instant.astimezone(zone).date()


def days_outside(day: int, opens: int, closes: int) -> int:
    """Days before (negative) or after (positive) an inclusive window; 0 inside it (ordinals)."""
    if day < opens:
        return day - opens
    if day > closes:
        return day - closes
    return 0


@dataclass(frozen=True, slots=True)
class _TimepointPlan:
    timepoint: Timepoint
    position: int
    accepted: frozenset[str]  # orderable codes of its exam types
    modalities: frozenset[str]
    baseline_for: str | None  # timepoint id whose room must be reused, if any exam type asks


class TrialPlan:
    """A trial's protocol digested once per evaluation: version ranges and per-timepoint code sets."""

    def __init__(self, trial: Trial) -> None:
        self.trial = trial
        self.versions: list[tuple[ProtocolVersion, int, int, list[_TimepointPlan]]] = []
        for position, version in enumerate(trial.versions):
            start = version.effective.toordinal() if version.effective and position else _FAR_PAST
            following = trial.versions[position + 1].effective if position + 1 < len(trial.versions) else None
            end = following.toordinal() if following else _FAR_FUTURE
            plans = []
            for order, timepoint in enumerate(version.timepoints):
                types = [version.exams[exam_id] for exam_id in timepoint.exams if exam_id in version.exams]
                baseline = next((t.same_scanner_as for t in types if t.same_scanner_as), None)
                plans.append(
                    _TimepointPlan(
                        timepoint,
                        order,
                        frozenset(code for t in types for code in t.orderables),
                        frozenset(t.modality for t in types),
                        baseline,
                    )
                )
            self.versions.append((version, start, end, plans))
        self.modalities = trial.modalities
        self.orderables = trial.orderables
        # How far before its due date any window opens: occurrences due after
        # ``last exam + match_within + reach`` cannot be a candidate for any exam.
        self.reach = max(
            (max(-plan.timepoint.window.opens, 0) for _, _, _, plans in self.versions for plan in plans),
            default=0,
        )
        self.needs_performed = any(
            plan.timepoint.anchor == ANCHOR_PREVIOUS
            or (
                plan.timepoint.recurrence is not None
                and plan.timepoint.recurrence.count_from is CountFrom.PREVIOUS_EXAM
            )
            for _, _, _, plans in self.versions
            for plan in plans
        )


@dataclass(slots=True, eq=False)
class Slot:
    """One generated occurrence while the engine works on it (dates as ordinals).

    ``exams`` is filled by the engine's matching: the active exams serving this occurrence,
    the first being the one that counts, any further ones duplicates.
    """

    plan: _TimepointPlan
    version: ProtocolVersion
    due: int
    opens: int
    closes: int
    elapsed: int
    index: int = 0
    label: str = ""
    exams: list[ExamRecord] = field(default_factory=list)
    _dates: tuple[date, date, str] | None = None

    @property
    def timepoint(self) -> Timepoint:
        return self.plan.timepoint

    def window(self) -> tuple[date, date, str]:
        """``(first day, last day, "window 2026-04-06..2026-04-20")``, computed once per occurrence."""
        if self._dates is None:
            start, end = date.fromordinal(self.opens), date.fromordinal(self.closes)
            self._dates = (start, end, f"window {start.isoformat()}..{end.isoformat()}")
        return self._dates


def schedule(
    plan: TrialPlan,
    enrolment: Enrolment,
    *,
    through: date,
    match_within: int | None = None,
    performed: Mapping[str, Sequence[int]] | None = None,
) -> list[Slot]:
    """Every occurrence due for ``enrolment`` up to ``through``, sorted by window start.

    ``performed`` maps orderable codes to sorted ordinals of performed exams; it is needed
    only for ``count_from = "previous_exam"`` and ``anchor = "previous"`` timepoints (an exam
    within ``match_within`` days of an occurrence's window counts as its performance).
    """
    trial = plan.trial
    slack = trial.match_within if match_within is None else match_within
    anchors = {name: day.toordinal() for name, day in enrolment.anchors.items()}
    if enrolment.off_study is not None:
        anchors[ANCHOR_OFF_STUDY] = enrolment.off_study.toordinal()
    last_due = min(through.toordinal(), anchors.get(ANCHOR_OFF_STUDY, _FAR_FUTURE))
    done = performed or {}

    def performed_on(slot: Slot) -> int:
        found = [
            _first_in(done.get(code, ()), slot.opens - slack, slot.closes + slack)
            for code in slot.plan.accepted
        ]
        dates = [day for day in found if day is not None]
        return min(dates) if dates else slot.due

    slots: list[Slot] = []
    for version, start, end, plans in plan.versions:
        previous: Slot | None = None
        for tp in plans:
            timepoint = tp.timepoint
            if not timepoint.applies_to(enrolment.arm):
                continue
            if timepoint.anchor == ANCHOR_PREVIOUS:
                base = performed_on(previous) if previous is not None else None
            else:
                base = anchors.get(timepoint.anchor)
            made: list[Slot] = []
            if base is not None:
                made = _series(tp, version, base, anchors, last_due, performed_on)
            slots.extend(slot for slot in made if start <= slot.due < end)
            previous = made[-1] if made else None
    _number(slots, trial)
    slots.sort(key=lambda slot: (slot.opens, slot.due, slot.plan.position, slot.index))
    return slots


def _series(
    tp: _TimepointPlan,
    version: ProtocolVersion,
    base: int,
    anchors: Mapping[str, int],
    last_due: int,
    performed_on: Callable[[Slot], int],
) -> list[Slot]:
    timepoint = tp.timepoint
    opens, closes = timepoint.window.opens, timepoint.window.closes
    recurrence = timepoint.recurrence
    if recurrence is None:
        due = base + timepoint.offset
        return [Slot(tp, version, due, due + opens, due + closes, due - base)] if due <= last_due else []
    limit = last_due
    if recurrence.until_days is not None:
        limit = min(limit, base + recurrence.until_days)
    if recurrence.until_anchor is not None and recurrence.until_anchor in anchors:
        limit = min(limit, anchors[recurrence.until_anchor])
    count = recurrence.count if recurrence.count is not None else _FAR_FUTURE
    drift = recurrence.count_from is CountFrom.PREVIOUS_EXAM
    made: list[Slot] = []
    due = base + recurrence.first
    while due <= limit and len(made) < count:
        slot = Slot(tp, version, due, due + opens, due + closes, due - base)
        made.append(slot)
        due = (performed_on(slot) if drift else due) + recurrence.every
    return made


def _first_in(days: Sequence[int], low: int, high: int) -> int | None:
    """The first ordinal in sorted ``days`` within ``low..high``, or None."""
    position = bisect_left(days, low)
    if position < len(days) and days[position] <= high:
        return days[position]
    return None


def _number(slots: list[Slot], trial: Trial) -> None:
    """Number each timepoint's occurrences 1..n in date order and fill their labels."""
    counters: dict[str, int] = {}
    for slot in sorted(slots, key=lambda s: (s.due, s.plan.position)):
        timepoint = slot.plan.timepoint
        index = counters.get(timepoint.id, 0) + 1
        counters[timepoint.id] = index
        slot.index = index
        label = timepoint.label
        if "{" in label:
            week = (slot.elapsed + 3) // 7  # nearest whole week, halves up
            label = label.format(n=index, week=week, day=trial.study_day(slot.elapsed))
        slot.label = label


def occurrences(trial: Trial, enrolment: Enrolment, *, through: date) -> tuple[Occurrence, ...]:
    """The planned occurrences for one enrolment up to ``through`` (no exams considered).

    A convenience for schedules and tests; the engine uses :func:`schedule` directly.
    """
    return tuple(
        Occurrence(
            key=f"{trial.id}:{enrolment.subject}:{slot.timepoint.id}#{slot.index}",
            trial=trial.id,
            subject=enrolment.subject,
            enrolment_id=enrolment.id,
            timepoint=slot.timepoint.id,
            index=slot.index,
            label=slot.label,
            due=date.fromordinal(slot.due),
            window_start=date.fromordinal(slot.opens),
            window_end=date.fromordinal(slot.closes),
            exam_types=slot.timepoint.exams,
            version=slot.version.name,
        )
        for slot in schedule(TrialPlan(trial), enrolment, through=through)
    )
