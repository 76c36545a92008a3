"""What the engine takes (enrolments, exams) and what it returns (occurrences, findings, notifications).

Inputs are plain frozen dataclasses that ``monitor/`` fills from its store; nothing here
knows about the database. Outputs carry stable string keys so the store can open, update and
resolve findings, and the outbox can drop notifications it has already sent:

- ``Occurrence.key``   ``"{trial}:{subject}:{timepoint}#{index}"``
- ``Finding.key``      ``"{occurrence key}:{kind}"`` plus ``":exam{id}"`` when an exam is involved;
  findings about an exam that serves no timepoint use ``"{trial}:{subject}:exam{id}:{kind}"``.
- ``PlannedNotification.dedupe_key`` adds the audience, the address and what the message is
  about (lead time and exam start for reminders; the exam date or window for alerts), so a
  rescheduled exam gets new reminders and an unchanged one never a second copy.

No output carries a patient name, MRN or birth date: subjects appear by their study id.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

__all__ = [
    "Audience",
    "Enrolment",
    "EnrolmentStatus",
    "Evaluation",
    "ExamRecord",
    "ExamStatus",
    "Finding",
    "FindingKind",
    "NotificationKind",
    "Occurrence",
    "OccurrenceStatus",
    "PlannedNotification",
    "Severity",
]


class ExamStatus(enum.StrEnum):
    """An exam's current state, derived from the last feed event that set it (monitor/
    stores these values; ``monitor.events`` re-exports this enum)."""

    ORDERED = "ordered"
    SCHEDULED = "scheduled"
    ARRIVED = "arrived"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"
    DELETED = "deleted"


ACTIVE_EXAM = frozenset({ExamStatus.ORDERED, ExamStatus.SCHEDULED, ExamStatus.ARRIVED, ExamStatus.COMPLETED})
PERFORMED_EXAM = frozenset({ExamStatus.ARRIVED, ExamStatus.COMPLETED})


class EnrolmentStatus(enum.StrEnum):
    """Where a subject stands in the trial; only the first three expect further scans."""

    SCREENING = "screening"
    ON_STUDY = "on_study"
    FOLLOW_UP = "follow_up"
    OFF_STUDY = "off_study"
    SCREEN_FAILED = "screen_failed"
    WITHDRAWN = "withdrawn"

    @property
    def expects_scans(self) -> bool:
        return self in (EnrolmentStatus.SCREENING, EnrolmentStatus.ON_STUDY, EnrolmentStatus.FOLLOW_UP)


@dataclass(frozen=True, slots=True)
class Enrolment:
    """One subject in one trial. ``anchors`` maps anchor names (``c1d1``, ``progression``) to dates.

    ``off_study`` ends the schedule: nothing is due after it, and research exams booked after
    it are reported. ``monitored_from`` is the day the office started watching the subject
    (when it was added or imported, unless the office said otherwise): a visit whose window
    closed before then is ``before_monitoring``, not missed, unless an exam is on record for
    it. ``id`` is the store's id, carried into findings.

    ``pools`` names the identifier pool (assigning authority) of an MRN where the office
    gave one: the same number in another hospital's pool is another patient, so such an MRN
    claims only exams whose MRN came from that pool, or from no named pool (:meth:`holds`).
    """

    trial: str
    subject: str
    mrns: tuple[str, ...]
    anchors: Mapping[str, date]
    arm: str | None = None
    status: EnrolmentStatus = EnrolmentStatus.ON_STUDY
    off_study: date | None = None
    id: int = 0
    monitored_from: date | None = None
    pools: Mapping[str, str] = field(default_factory=dict)  # MRN -> its pool, where given

    def holds(self, exam: ExamRecord) -> bool:
        """Whether ``exam`` (found under one of this subject's MRNs) is this patient's: its
        MRN's pool is the one the office gave for that MRN, or one side names no pool."""
        pool = self.pools.get(exam.mrn, "")
        return not pool or not exam.mrn_pool or pool.casefold() == exam.mrn_pool.casefold()


@dataclass(frozen=True, slots=True)
class ExamRecord:
    """The current state of one imaging exam, as the store knows it.

    ``id`` is the store's id: it grows as exams are first seen, which is what makes
    assignment stable (older exams keep their timepoints). ``start`` must be timezone-aware
    (UTC) or None for an order with no appointment yet (such exams are not matched until
    they get a time).
    """

    id: int
    mrn: str
    procedure_code: str
    procedure_text: str
    modality: str
    start: datetime | None
    status: ExamStatus
    location: str = ""
    accession: str = ""
    updated_at: datetime | None = None
    external_id: str = ""  # the appointment id the office finds in the EHR (Epic's CSN)
    order_number: str = ""
    mrn_pool: str = ""  # the assigning authority of the identifier chosen as MRN ("" unknown)


class OccurrenceStatus(enum.StrEnum):
    """The statuses coordinators expect on a schedule (CTMS practice)."""

    PLANNED = "planned"  # window opens later than the due-soon horizon
    DUE = "due"  # window opens soon or is open, nothing booked
    BOOKED = "booked"  # a research exam is booked for it
    # booked, its start long past, and no arrival or completion came: not counted as done
    UNCONFIRMED = "unconfirmed"
    DONE_IN_WINDOW = "done_in_window"
    DONE_OUT_OF_WINDOW = "done_out_of_window"
    MISSED = "missed"  # window closed, nothing performed
    BEFORE_MONITORING = "before_monitoring"  # window closed before the office watched the subject
    # "Not applicable" needs no status: visits due after the off-study date, or anchored to an
    # event that has not happened, produce no occurrence at all.


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One due visit of one timepoint for one subject, e.g. the "Week 12" restaging CT.

    ``due`` is the nominal date (anchor + offset); the window is ``window_start`` to
    ``window_end``, both inclusive, as local dates in the site's zone. ``exam_id`` is the
    exam serving it, ``required_scanner`` the room of the baseline scan when the exam type
    asks for the same scanner.
    """

    key: str
    trial: str
    subject: str
    enrolment_id: int
    timepoint: str
    index: int
    label: str
    due: date
    window_start: date
    window_end: date
    exam_types: tuple[str, ...]
    version: str
    status: OccurrenceStatus = OccurrenceStatus.PLANNED
    exam_id: int | None = None
    required_scanner: str | None = None


class FindingKind(enum.StrEnum):
    IN_WINDOW = "in_window"
    EARLY = "early"
    LATE = "late"
    WRONG_ORDERABLE = "wrong_orderable"
    DUE_UNSCHEDULED = "due_unscheduled"
    MISSED = "missed"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"
    DUPLICATE = "duplicate"
    UNMATCHED_EXAM = "unmatched_exam"
    AFTER_OFF_STUDY = "after_off_study"
    UNCONFIRMED = "unconfirmed"  # booked exam past its start with no arrival/completion message
    # After the scan, from the PACS (exam types with acquisition rules only):
    IMAGES_MISSING = "images_missing"  # performed, or its start long past, and no study arrived
    PARAMETER_DEVIATION = "parameter_deviation"  # the images break an acquisition rule
    SCANNER_MISMATCH = "scanner_mismatch"  # acquired on another scanner than the baseline
    # To the core lab (trials with [core_lab], once the images arrived):
    CORE_LAB_DUE = "core_lab_due"  # the copy is due within the trial's remind_before
    CORE_LAB_OVERDUE = "core_lab_overdue"  # past its deadline, not submitted
    CORE_LAB_REFUSED = "core_lab_refused"  # the copy failed the de-identification check
    CORE_LAB_QUERY_DUE = "core_lab_query_due"  # a core-lab query's answer is due soon
    CORE_LAB_QUERY_OVERDUE = "core_lab_query_overdue"  # its answer date has passed


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Finding:
    """The engine's verdict on one occurrence (and exam), or on one exam that serves no occurrence.

    ``detail`` is one line for humans, without names or MRNs. ``key`` identifies the finding
    across evaluations (see the module docstring).
    """

    key: str
    kind: FindingKind
    severity: Severity
    trial: str
    subject: str
    enrolment_id: int
    detail: str
    timepoint: str | None = None
    occurrence_key: str | None = None
    occurrence_index: int | None = None
    occurrence_label: str | None = None
    exam_id: int | None = None
    window_start: date | None = None
    window_end: date | None = None


class Audience(enum.StrEnum):
    COORDINATOR = "coordinator"
    TECHNOLOGIST = "technologist"
    OPERATIONS = "operations"  # the integration team's channel: feeds and the outbox, no patients


class NotificationKind(enum.StrEnum):
    REMINDER = "reminder"  # coordinator, lead time before a booked research exam
    INSTRUCTIONS = "instructions"  # technologist instruction sheet, lead time before the exam
    ALERT = "alert"  # coordinator, as soon as a problem finding appears
    BOOKING = "booking"  # coordinator, as soon as a research exam is booked in its window


@dataclass(frozen=True, slots=True)
class PlannedNotification:
    """A message the outbox should hold: to ``address`` at ``due_at`` (aware UTC), once per ``dedupe_key``.

    The planned set is complete for the enrolments evaluated: a pending outbox row whose
    dedupe key no longer appears (exam cancelled, moved, finding resolved) should be dropped.
    """

    audience: Audience
    address: str
    kind: NotificationKind
    due_at: datetime
    finding_key: str
    finding_kind: FindingKind
    dedupe_key: str
    trial: str
    enrolment_id: int
    exam_id: int | None = None
    occurrence_key: str | None = None


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Everything the engine concluded, in a deterministic order (trial, subject, window).

    ``unknown_trials`` names trials that enrolments refer to but no protocol was given for;
    those enrolments are skipped (the caller decides whether that is an error).
    """

    findings: tuple[Finding, ...] = ()
    occurrences: tuple[Occurrence, ...] = ()
    planned_notifications: tuple[PlannedNotification, ...] = ()
    unknown_trials: tuple[str, ...] = ()
