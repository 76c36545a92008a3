"""The rescheduling assistant: on which days a visit may still be booked, the latest safe
day, and what each choice does to the visits that follow.

For one occurrence of one enrolment: the valid days are the site's open days (no closed
weekday, no closure such as a holiday) in its window, from today on (Day 0/Day 1 is already
in the window, which the protocol's ``anchor_is_day`` placed). The latest safe day is the
last of them. What a choice does is worked out by the engine itself: the same enrolment is
judged with the visit performed on that day, and every later visit whose window moves is
reported (series counted from the previous exam follow it; series counted from an anchor
do not move). The same-scanner rule is a place, not a day: the occurrence names the room.

Pure, like the rest of ``rules``: protocols, the enrolment, its exams and ``now`` in,
plain values out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from rules.engine import evaluate
from rules.model import Enrolment, ExamRecord, ExamStatus, Occurrence
from rules.protocol import Trial

# What the office calls the days of the week, as ``date.weekday()`` numbers them.
WEEKDAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


@dataclass(frozen=True, slots=True)
class Closures:
    """Days the site does not scan research subjects: weekdays (Monday is 0) and dates."""

    weekdays: frozenset[int] = frozenset({5, 6})
    days: frozenset[date] = field(default_factory=frozenset)

    def open(self, day: date) -> bool:
        return day.weekday() not in self.weekdays and day not in self.days


@dataclass(frozen=True, slots=True)
class Shift:
    """A later visit whose window moves when the visit is done on the chosen day."""

    label: str
    before: tuple[date, date]
    after: tuple[date, date]


@dataclass(frozen=True, slots=True)
class Choice:
    day: date
    shifts: tuple[Shift, ...] = ()


@dataclass(frozen=True, slots=True)
class Rescheduling:
    occurrence: Occurrence
    valid_days: tuple[date, ...]
    choices: tuple[Choice, ...]  # the earliest and the latest valid day (one when they agree)

    @property
    def latest_safe(self) -> date | None:
        return self.valid_days[-1] if self.valid_days else None


def latest_open_day(first: date, last: date, closures: Closures) -> date | None:
    """The last day from ``first`` to ``last`` the site is open (None: none is)."""
    day = last
    while day >= first:
        if closures.open(day):
            return day
        day -= timedelta(days=1)
    return None


def valid_days(occurrence: Occurrence, today: date, closures: Closures) -> tuple[date, ...]:
    """Open days of the occurrence's window from ``today`` on (empty: the window has closed)."""
    first = max(occurrence.window_start, today)
    days = (first + timedelta(days=n) for n in range((occurrence.window_end - first).days + 1))
    return tuple(day for day in days if closures.open(day))


def reschedule(
    trial: Trial,
    enrolment: Enrolment,
    exams: Sequence[ExamRecord],
    occurrence_key: str,
    now: datetime,
    *,
    site_zone: ZoneInfo,
    closures: Closures,
    due_soon_days: int = 7,
) -> Rescheduling | None:
    """The assistant's answer for the occurrence ``occurrence_key`` of ``enrolment`` (None:
    the engine plans no such occurrence at ``now``)."""
    baseline = _occurrences(trial, enrolment, exams, now, site_zone, due_soon_days)
    target = baseline.get(occurrence_key)
    if target is None:
        return None
    days = valid_days(target, now.astimezone(site_zone).date(), closures)
    candidates = sorted({days[0], days[-1]}) if days else []
    choices = []
    for day in candidates:
        done = _performed(trial, target, enrolment, exams, day, site_zone)
        after = _occurrences(trial, enrolment, [*exams, done], now, site_zone, due_soon_days)
        choices.append(Choice(day, _shifts(baseline, after, target)))
    return Rescheduling(target, days, tuple(choices))


def _occurrences(
    trial: Trial,
    enrolment: Enrolment,
    exams: Sequence[ExamRecord],
    now: datetime,
    zone: ZoneInfo,
    due_soon_days: int,
) -> dict[str, Occurrence]:
    judged = evaluate([trial], [enrolment], exams, now, site_zone=zone, due_soon_days=due_soon_days)
    return {occurrence.key: occurrence for occurrence in judged.occurrences}


def _performed(
    trial: Trial,
    target: Occurrence,
    enrolment: Enrolment,
    exams: Sequence[ExamRecord],
    day: date,
    zone: ZoneInfo,
) -> ExamRecord:
    """The visit done on ``day`` (at nine, site time) with an orderable its exam type accepts."""
    version = trial.version_on(target.due)
    exam_type = version.exams[target.exam_types[0]]
    start = datetime.combine(day, time(9), zone).astimezone(UTC)
    after_every_exam = max((exam.id for exam in exams), default=0) + 1_000_000_000
    return ExamRecord(
        id=after_every_exam,
        mrn=enrolment.mrns[0] if enrolment.mrns else "",
        procedure_code=exam_type.orderables[0] if exam_type.orderables else "",
        procedure_text=exam_type.label,
        modality=exam_type.modality,
        start=start,
        status=ExamStatus.COMPLETED,
    )


def _shifts(
    before: dict[str, Occurrence], after: dict[str, Occurrence], target: Occurrence
) -> tuple[Shift, ...]:
    moved = []
    for key, was in before.items():
        now_ = after.get(key)
        if key == target.key or now_ is None or was.window_start < target.window_start:
            continue
        if (was.window_start, was.window_end) != (now_.window_start, now_.window_end):
            moved.append(
                Shift(was.label, (was.window_start, was.window_end), (now_.window_start, now_.window_end))
            )
    return tuple(sorted(moved, key=lambda shift: shift.before))
