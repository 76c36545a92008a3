"""The one internal event every feed produces.

MLLP, HL7 files, FHIR polls and CSV imports all end in a :class:`ScheduleEvent`; the store
and the rules engine never see HL7 or FHIR. A feed that cannot make an event out of its
input returns a :class:`Rejection` instead (the input is still stored, see the intake).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

# The exam states are the engine's own: the store writes what rules/ reads, one definition.
from rules.model import ExamStatus


class EventKind(enum.StrEnum):
    """What happened to an appointment or imaging order."""

    BOOKED = "booked"
    ORDERED = "ordered"  # an imaging order (ORM/OMI) with or without a time yet
    RESCHEDULED = "rescheduled"
    MODIFIED = "modified"
    CANCELLED = "cancelled"
    DELETED = "deleted"
    NO_SHOW = "no_show"
    ARRIVED = "arrived"
    COMPLETED = "completed"


__all__ = [
    "STATUS_AFTER",
    "UNNEEDED_IDENTIFIER_TYPES",
    "EventKind",
    "ExamStatus",
    "PatientIdentifier",
    "Rejection",
    "ScheduleEvent",
]

# Which status an event leaves the exam in; None keeps the current status
# (a modification or reschedule of a cancelled exam does not revive it by itself).
STATUS_AFTER: dict[EventKind, ExamStatus | None] = {
    EventKind.BOOKED: ExamStatus.SCHEDULED,
    EventKind.ORDERED: ExamStatus.ORDERED,
    EventKind.RESCHEDULED: ExamStatus.SCHEDULED,
    EventKind.MODIFIED: None,
    EventKind.CANCELLED: ExamStatus.CANCELLED,
    EventKind.DELETED: ExamStatus.DELETED,
    EventKind.NO_SHOW: ExamStatus.NO_SHOW,
    EventKind.ARRIVED: ExamStatus.ARRIVED,
    EventKind.COMPLETED: ExamStatus.COMPLETED,
}


# Government and insurance numbers the office never needs (minimum necessary): identifier
# types from HL7 table 0203 (social security, social beneficiary, driver's licence,
# passport, national person / health plan ids, Medicaid, Medicare, member and subscriber
# numbers). Feeds drop them; they never reach the store.
UNNEEDED_IDENTIFIER_TYPES = frozenset({"SS", "SB", "DL", "PPN", "NI", "NH", "MA", "MC", "MB", "SN"})


@dataclass(frozen=True, slots=True)
class PatientIdentifier:
    """One PID-3 repetition (or FHIR Patient.identifier): value, assigning authority, type."""

    value: str
    authority: str = ""
    type_code: str = ""


@dataclass(frozen=True, slots=True)
class ScheduleEvent:
    """One scheduling fact from any feed.

    ``start`` is timezone-aware (UTC) or None when the message carries no time.
    ``external_id`` is the appointment's identity at its source (SCH-2 filler id, falling
    back to SCH-1 placer id; the order/accession for orders; the FHIR Appointment id).
    ``mrn`` is the identifier the site configured as the MRN; all identifiers are kept
    in ``patient_ids``. Events carry no patient name or birth date: the office does not
    need them to run a trial schedule, and what is not stored cannot leak.
    """

    source: str
    external_id: str
    kind: EventKind
    trigger: str = ""  # e.g. "SIU^S12", "ORM^O01", "Appointment"
    status_code: str = ""  # the sender's own status (SCH-25, ORC-5, FHIR status)
    patient_ids: tuple[PatientIdentifier, ...] = ()
    mrn: str | None = None
    accession: str | None = None
    order_number: str | None = None
    procedure_code: str | None = None
    procedure_text: str | None = None
    procedure_system: str | None = None
    modality: str | None = None
    start: datetime | None = None
    duration_minutes: int | None = None
    location: str | None = None
    resources: tuple[str, ...] = ()
    comments: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)  # e.g. CTI study id, Z-segment text
    # When the source recorded it (EVN-2, else MSH-7; FHIR meta.lastUpdated): orders the
    # events of one exam however they arrive. None: the time it reached us stands in.
    event_time: datetime | None = None

    def __post_init__(self) -> None:
        if not self.external_id:
            raise ValueError("a ScheduleEvent needs an external id")
        for name in ("start", "event_time"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise ValueError(f"ScheduleEvent.{name} must be timezone-aware")

    @property
    def mrn_pool(self) -> str | None:
        """The assigning authority of the identifier chosen as ``mrn`` ("" when it names
        none); None when the event carries no MRN."""
        if self.mrn is None:
            return None
        return next((p.authority for p in self.patient_ids if p.value == self.mrn), "")


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a feed could not turn its input into an event.

    ``error_code`` follows HL7 table 0357 (message error condition codes) so the MLLP
    listener can put it into ERR-3; ``reason`` is plain language and must carry no PHI.
    ``skipped`` marks input that is valid but not ours to track (a hold or block with no
    patient, a non-scheduling message): it is stored and acknowledged AA, not AE.
    """

    reason: str
    error_code: str = "207"  # 207 = application internal error
    skipped: bool = False
