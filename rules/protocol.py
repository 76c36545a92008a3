"""A trial's imaging protocol, as read from its TOML file (see ``examples/trials/``).

These frozen dataclasses are what the engine runs on; :func:`rules.validation.load_protocol`
builds them from a file and reports every problem it finds at once.

Amendments (versions)
---------------------
The top-level ``[exams.*]`` and ``[[timepoints]]`` tables are the schedule of the first
version. Each ``[[versions]]`` entry names an amendment and its ``effective`` date. An entry
may carry its own full ``[versions.exams.*]`` and/or ``[[versions.timepoints]]`` tables: they
REPLACE the whole exam list / timepoint list from the effective date on (no patching of
single keys, so what applies is always readable in one place). An entry without them keeps
the previous version's tables (an amendment that did not touch imaging). The first version
also governs everything before its effective date (screening scans precede the protocol's
paper date often enough).

Which version applies: an occurrence belongs to the version in force on its due date
(``Trial.version_on(due)``); an exam is judged against the version of the occurrence it
serves. Occurrences of one timepoint id are numbered across versions in date order, so the
"Week 24" visit keeps its place when an amendment stretches the interval after it.

Day numbering
-------------
``anchor_is_day`` (required, 0 or 1) states whether the anchor date itself is Day 0 or
Day 1. It matters wherever a study day is written (a timepoint's ``day = 15``, the ``{day}``
label). Durations (``"6w"``) are always elapsed time: "6w after C1D1" is C1D1 + 42 days
under either convention. With ``anchor_is_day = 1`` there is no Day 0: the day before
Day 1 is Day -1, as oncology protocols count.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from rules.acquisition import Acquisition
from rules.core_lab import CoreLab

__all__ = [
    "ANCHOR_OFF_STUDY",
    "ANCHOR_PREVIOUS",
    "CountFrom",
    "ExamType",
    "Problem",
    "ProtocolError",
    "ProtocolVersion",
    "Recurrence",
    "Routing",
    "Timepoint",
    "Trial",
    "Window",
]

ANCHOR_PREVIOUS = "previous"
"""``anchor = "previous"``: the last occurrence of the timepoint listed just before (same arm)."""

ANCHOR_OFF_STUDY = "off_study"
"""Built-in anchor: the enrolment's off-study date (every trial has it without declaring it)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a protocol file: where (key path), what, and how to fix it."""

    path: str
    message: str
    fix: str

    def __str__(self) -> str:
        where = self.path or "(file)"
        return f"{where}: {self.message}. Fix: {self.fix}"


class ProtocolError(ValueError):
    """A protocol file that cannot be used; ``problems`` lists every problem found, in file order."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = "\n".join(f"  {problem}" for problem in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s)\n{lines}")


class CountFrom(enum.StrEnum):
    """What each recurrence is counted from."""

    ANCHOR = "anchor"  # anchor + first + k * every: no drift when a visit is late
    PREVIOUS_EXAM = "previous_exam"  # the previous occurrence's performed exam date + every


@dataclass(frozen=True, slots=True)
class Window:
    """A visit window in days relative to the due date, both ends inclusive (``-7, 7`` is +-7d)."""

    opens: int
    closes: int

    def __str__(self) -> str:
        if self.opens == -self.closes:
            return f"+-{self.closes}d"
        return f"{self.opens:+d}d..{self.closes:+d}d"


@dataclass(frozen=True, slots=True)
class Recurrence:
    """``every`` days, the first ``first`` days after the anchor, up to ``until``/``count``.

    ``until_days`` is an offset from the anchor (the last due date is at most anchor +
    until_days); ``until_anchor`` names an anchor (e.g. ``progression``) whose date ends the
    series once it is set. Neither means open-ended: the engine extends it to its horizon and
    stops at the subject's off-study date.
    """

    every: int
    first: int
    until_days: int | None = None
    until_anchor: str | None = None
    count: int | None = None
    count_from: CountFrom = CountFrom.ANCHOR

    @property
    def open_ended(self) -> bool:
        return self.until_days is None and self.count is None


@dataclass(frozen=True, slots=True)
class ExamType:
    """One kind of research exam: what may be ordered for it and what the technologist must know."""

    id: str
    label: str
    modality: str
    orderables: tuple[str, ...]
    parameters: tuple[str, ...] = ()
    preparation: tuple[str, ...] = ()
    instructions: str | None = None  # per-trial technologist sheet template name
    same_scanner_as: str | None = None  # timepoint id whose scanner must be used again
    acquisition: Acquisition | None = None  # what the images' DICOM headers must show


@dataclass(frozen=True, slots=True)
class Timepoint:
    """One line of the schedule of assessments.

    ``offset`` is the due date's distance from the anchor in days (single visits);
    ``recurrence`` replaces it for repeating visits. ``arms`` empty means every arm.
    ``label`` is a template with ``{n}`` (occurrence number), ``{week}`` and ``{day}``.
    """

    id: str
    label: str
    exams: tuple[str, ...]
    anchor: str
    window: Window
    offset: int = 0
    recurrence: Recurrence | None = None
    arms: tuple[str, ...] = ()
    # Exam id -> acquisition rules that replace the exam type's own at this visit.
    acquisition: Mapping[str, Acquisition] = field(default_factory=dict)

    def applies_to(self, arm: str | None) -> bool:
        return not self.arms or arm in self.arms


@dataclass(frozen=True, slots=True)
class ProtocolVersion:
    """The schedule in force from ``effective`` (None: from the beginning) until the next version."""

    name: str
    effective: date | None
    exams: Mapping[str, ExamType]
    timepoints: tuple[Timepoint, ...]
    orderable_exam: Mapping[str, ExamType] = field(default_factory=dict, compare=False, repr=False)

    def exam_for(self, procedure_code: str) -> ExamType | None:
        """The exam type that accepts this orderable code, if any."""
        return self.orderable_exam.get(procedure_code)


@dataclass(frozen=True, slots=True)
class LeadTime:
    """How long before a booked research exam a reminder or instruction sheet goes out.

    Either a duration before the exam's start (``"72h"``: ``before``), or a day and a time of
    day in the site's zone, the way an office plans its work (``"the day before at 14:00"``,
    ``"2 days before at 09:00"``, ``"the morning of at 07:00"``: ``days_before`` and ``at``).
    The second form is computed on the site's calendar, so it stays 14:00 across a DST change.
    """

    before: timedelta = timedelta(0)
    days_before: int = 0
    at: time | None = None

    def due(self, start: datetime, zone: ZoneInfo) -> datetime:
        """When the message is due for an exam starting at ``start`` (aware), in UTC."""
        if self.at is None:
            return (start - self.before).astimezone(UTC)
        day = start.astimezone(zone).date() - timedelta(days=self.days_before)
        return datetime.combine(day, self.at, zone).astimezone(UTC)

    @property
    def key(self) -> str:
        """Short and stable, for dedupe keys: ``72h``, ``90min``, ``d1@14:00``."""
        if self.at is not None:
            return f"d{self.days_before}@{self.at:%H:%M}"
        minutes = int(self.before.total_seconds()) // 60
        return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}min"

    def words(self) -> str:
        """As the office says it: ``72 hours before``, ``the day before at 14:00``."""
        if self.at is None:
            minutes = int(self.before.total_seconds()) // 60
            amount = f"{minutes // 60} hours" if minutes % 60 == 0 else f"{minutes} minutes"
            return f"{amount} before"
        if self.days_before == 0:
            return (
                f"the morning of at {self.at:%H:%M}"
                if self.at.hour < 12
                else f"the day of at {self.at:%H:%M}"
            )
        if self.days_before == 1:
            return f"the day before at {self.at:%H:%M}"
        return f"{self.days_before} days before at {self.at:%H:%M}"


@dataclass(frozen=True, slots=True)
class Routing:
    """Who hears about what: channel addresses such as ``"email:team@example.org"``, ``"slack:#ct"``.

    Technologists are routed by room (the exam's location) first, then by modality.
    Lead times are how long before a booked research exam each audience is reminded.
    """

    coordinators: tuple[str, ...]
    technologists: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    rooms: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    coordinator_lead_times: tuple[LeadTime, ...] = ()
    technologist_lead_times: tuple[LeadTime, ...] = ()
    # Whom the technologist calls, one line each, e.g. "Dana Lee, coordinator: 555-0100"
    # (printed on the instruction sheet and in the technologists' messages).
    contacts: tuple[str, ...] = ()

    def technologists_for(self, modality: str, location: str) -> tuple[str, ...]:
        """Addresses for an exam in ``location`` (a room such as ``CT3``) of ``modality``."""
        if location and self.rooms:
            key = location.strip().upper()
            if key in self.rooms:
                return self.rooms[key]
            for component in key.replace("^", " ").split():
                if component in self.rooms:
                    return self.rooms[component]
        return self.technologists.get(modality.upper(), ())


@dataclass(frozen=True, slots=True)
class Trial:
    """A trial's protocol: identity, anchors, arms, versions (amendments) and routing.

    ``versions`` are in effective-date order; the first one's ``effective`` may be None.
    ``match_within`` is how many days outside a window an exam may still be taken as
    serving it (then reported early or late) rather than as unrelated imaging.
    """

    id: str
    title: str
    anchor_is_day: int
    required_anchors: tuple[str, ...]
    event_anchors: tuple[str, ...]
    versions: tuple[ProtocolVersion, ...]
    routing: Routing
    arms: tuple[str, ...] = ()
    match_within: int = 28
    nct: str = ""
    irb: str = ""
    source: str = ""
    core_lab: CoreLab | None = None  # where and by when its images go to the sponsor's core lab

    def version_on(self, day: date) -> ProtocolVersion:
        """The version in force on ``day`` (the first version for days before it)."""
        chosen = self.versions[0]
        for version in self.versions[1:]:
            if version.effective is not None and version.effective <= day:
                chosen = version
            else:
                break
        return chosen

    @property
    def anchors(self) -> tuple[str, ...]:
        """Every anchor name a timepoint may use (declared ones plus ``off_study``)."""
        return (*self.required_anchors, *self.event_anchors, ANCHOR_OFF_STUDY)

    @property
    def modalities(self) -> frozenset[str]:
        """Modalities of every exam type in any version (imaging the trial cares about)."""
        return frozenset(e.modality for v in self.versions for e in v.exams.values())

    @property
    def orderables(self) -> frozenset[str]:
        """Orderable codes accepted by any exam type in any version."""
        return frozenset(code for v in self.versions for code in v.orderable_exam)

    def timepoint_label(self, timepoint: str) -> str:
        """The label of ``timepoint`` in the latest version that has it ("" when none does)."""
        for version in reversed(self.versions):
            for plan in version.timepoints:
                if plan.id == timepoint:
                    return plan.label
        return ""

    def study_day(self, elapsed: int) -> int:
        """The study-day number of the date ``elapsed`` days after the anchor."""
        if self.anchor_is_day == 1 and elapsed >= 0:
            return elapsed + 1
        return elapsed

    def elapsed_for_day(self, day: int) -> int:
        """Days after the anchor of study day ``day`` (inverse of :meth:`study_day`)."""
        if self.anchor_is_day == 1 and day > 0:
            return day - 1
        return day
