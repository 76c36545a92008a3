"""Sending a trial's images to its core lab: where, by when, and what the copy carries.

A trial whose images go to a sponsor's core lab says so in its protocol file::

    [core_lab]
    deadline = "48h"                      # after the images arrive; or "5 business days"
    remind_before = "12h"                 # the office hears "due in 12 h" this long before
    sponsor = "Acme Oncology"             # ClinicalTrialSponsorName (0012,0010)
    protocol_name = "ONC-2101 RECIST"     # (0012,0021); protocol id (0012,0020) is the trial id
    site_id = "101"                       # ClinicalTrialSiteID (0012,0030)
    dates = "keep"                        # "keep" the study dates, "remove" them, or "shift" them
    shift_up_to = "365d"                  # with "shift": each subject's dates move back 1 to 365 days
    keep = ["SeriesDescription"]          # attributes the de-identification keeps as they are
    destination = { kind = "dicom", ae_title = "CORELAB", host = "corelab.example.org", port = 11112 }
    # or { kind = "dicomweb", url = "https://corelab.example.org/dicom-web" }
    # or { kind = "manual" }: uploaded by hand to the sponsor's portal

The copy itself is made by the PACS (DICOM PS3.15 basic profile), never by this project;
:mod:`monitor.pacs.core_lab` asks for it, checks it and sends it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

__all__ = [
    "FORM_ATTRIBUTES",
    "CoreLab",
    "Deadline",
    "Destination",
    "SubjectLabels",
    "SubmissionSeen",
    "SubmissionVerdict",
    "is_dicom_keyword",
    "judge_queries",
    "judge_submission",
    "shifted",
    "subject_shift",
    "submission_instants",
]

# What the PACS poll reads of each series of a core-lab trial's exams, for the transmittal form.
FORM_ATTRIBUTES = frozenset(
    {"SliceThickness", "KVP", "ContrastBolusAgent", "Manufacturer", "ManufacturerModelName", "SeriesDate"}
)
_BUSINESS_DAYS = re.compile(r"^(\d+)\s*business\s+days?$")
_KEYWORD = re.compile(r"^[A-Z][A-Za-z0-9]*$")


def is_dicom_keyword(name: str) -> bool:
    """Whether ``name`` looks like a DICOM attribute keyword (``SeriesDescription``); the
    protocol reader checks it against the data dictionary where it loads one."""
    return bool(_KEYWORD.match(name))


@dataclass(frozen=True, slots=True)
class Deadline:
    """How long after the images arrive the copy is due: hours, or business days (the site's
    open days in its zone, Monday to Friday unless told otherwise; the day the images arrived
    is not counted; due at the same time of day)."""

    hours: int = 0
    business_days: int = 0

    @classmethod
    def parse(cls, text: str) -> Deadline:
        """``"48h"``, ``"2d"`` (counted in hours) or ``"5 business days"``; ValueError otherwise."""
        compact = text.strip().lower()
        found = _BUSINESS_DAYS.match(compact)
        if found:
            days = int(found.group(1))
            if days < 1:
                raise ValueError("at least one business day")
            return cls(business_days=days)
        match = re.fullmatch(r"(\d+)\s*(h|d)", compact)
        if match is None:
            raise ValueError('write it like "48h", "3d" or "5 business days"')
        amount = int(match.group(1)) * (24 if match.group(2) == "d" else 1)
        if amount < 1:
            raise ValueError("a deadline must be at least one hour")
        return cls(hours=amount)

    def due(
        self, arrived: datetime, zone: ZoneInfo, closed: Callable[[date], bool] | None = None
    ) -> datetime:
        """When the copy of images that arrived at ``arrived`` (aware) is due, in UTC;
        ``closed`` tells the days that are not business days (default: Saturday and Sunday)."""
        is_closed = closed or (lambda day: day.weekday() >= 5)
        if self.business_days == 0:
            return (arrived + timedelta(hours=self.hours)).astimezone(UTC)
        local = arrived.astimezone(zone)
        day, left = local.date(), self.business_days
        while left:
            day += timedelta(days=1)
            if not is_closed(day):
                left -= 1
        return datetime.combine(day, local.time().replace(tzinfo=None), zone).astimezone(UTC)

    def words(self) -> str:
        if self.business_days:
            return f"{self.business_days} business day{'s' if self.business_days > 1 else ''}"
        return f"{self.hours} h"


@dataclass(frozen=True, slots=True)
class Destination:
    """Where the copy goes: a DICOM node (C-STORE from the PACS), a DICOMweb STOW-RS endpoint
    (from the PACS), or the sponsor's portal by hand (``manual``: the office records it)."""

    kind: Literal["dicom", "dicomweb", "manual"]
    ae_title: str = ""
    host: str = ""
    port: int = 0
    url: str = ""

    def words(self) -> str:
        if self.kind == "dicom":
            return f"DICOM {self.ae_title}@{self.host}:{self.port}"
        if self.kind == "dicomweb":
            return f"STOW-RS {self.url}"
        return "manual upload to the sponsor's portal"


@dataclass(frozen=True, slots=True)
class SubjectLabels:
    """The Clinical Trial Subject, Study and Series attributes (group 0012) the copy carries."""

    sponsor: str
    protocol_id: str
    protocol_name: str
    site_id: str
    site_name: str = ""


@dataclass(frozen=True, slots=True)
class CoreLab:
    """A trial's core-lab submission: deadline, reminder, destination and de-identification."""

    deadline: Deadline
    destination: Destination
    labels: SubjectLabels
    dates: Literal["keep", "remove", "shift"] = "keep"
    shift_up_to: int = 0  # days; with dates = "shift", each subject's own offset is 1 to this many back
    keep: tuple[str, ...] = ()
    remind_before: timedelta = timedelta(hours=12)
    form: str = ""  # the transmittal form's template (templates/), "" for none
    query_reminder_days: int = 2  # the office hears this many days before a query's answer is due


@dataclass(frozen=True, slots=True)
class SubmissionSeen:
    """Where an exam's copy for the core lab stands (the store's ``submissions`` row)."""

    status: str  # due, refused, failed, submitted
    due_at: datetime
    problem: str = ""  # the check's first problem (attribute and count), or the send's error

    @property
    def open(self) -> bool:
        return self.status != "submitted"


@dataclass(frozen=True, slots=True)
class SubmissionVerdict:
    kind: Literal[
        "core_lab_due", "core_lab_overdue", "core_lab_refused", "core_lab_query_due", "core_lab_query_overdue"
    ]
    note: str
    about: str  # what its alerts are about: a new deadline or a new refusal is news again


def judge_submission(
    core_lab: CoreLab, seen: SubmissionSeen, now: datetime, zone: ZoneInfo
) -> SubmissionVerdict | None:
    """What an exam's submission gives rise to at ``now``: a refused copy at once; an open one
    ``remind_before`` its deadline (due) and from its deadline (overdue); nothing once submitted."""
    if not seen.open:
        return None
    by = f"{seen.due_at.astimezone(zone):%a %d %b %H:%M %Z}"
    where = core_lab.destination.words()
    if seen.status == "refused":
        note = (
            f"the de-identified copy for the core lab was refused and not sent ({seen.problem}); due by {by}"
        )
        return SubmissionVerdict("core_lab_refused", note, f"refused:{seen.problem}:{seen.due_at:%Y%m%d%H%M}")
    failed = f"; the last send failed: {seen.problem}" if seen.status == "failed" and seen.problem else ""
    if now >= seen.due_at:
        note = f"the images were due at the core lab ({where}) by {by} and are not submitted{failed}"
        return SubmissionVerdict("core_lab_overdue", note, f"overdue:{seen.due_at:%Y%m%d%H%M}")
    if now >= seen.due_at - core_lab.remind_before:
        within = _hours(core_lab.remind_before)
        note = f"the images are due at the core lab ({where}) within {within}, by {by}{failed}"
        return SubmissionVerdict("core_lab_due", note, f"due:{seen.due_at:%Y%m%d%H%M}")
    return None


def judge_queries(core_lab: CoreLab, answer_dues: tuple[date, ...], today: date) -> SubmissionVerdict | None:
    """What an exam's open core-lab queries (their answer dates) give rise to on the site's
    ``today``: from ``query_reminder_days`` before the earliest answer date, due; after it,
    overdue. Dates only, so a judgement changes at the site's midnight."""
    if not answer_dues:
        return None
    first = min(answer_dues)
    count = f"{len(answer_dues)} core-lab queries are" if len(answer_dues) > 1 else "a core-lab query is"
    if today > first:
        return SubmissionVerdict(
            "core_lab_query_overdue", f"{count} unanswered; the answer was due {first:%a %d %b}", f"q:{first}"
        )
    if today >= first - timedelta(days=core_lab.query_reminder_days):
        return SubmissionVerdict(
            "core_lab_query_due", f"{count} open; the answer is due {first:%a %d %b}", f"q:{first}"
        )
    return None


def submission_instants(core_lab: CoreLab, seen: SubmissionSeen) -> tuple[datetime, ...]:
    """When :func:`judge_submission` may change its answer for ``seen`` (the reminder, the deadline)."""
    return (seen.due_at - core_lab.remind_before, seen.due_at) if seen.open else ()


def _hours(delta: timedelta) -> str:
    minutes = int(delta.total_seconds()) // 60
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"


def subject_shift(key: bytes, trial: str, subject: str, up_to: int) -> int:
    """The days a subject's dates move back (1 to ``up_to``): the same for every visit of the
    subject, so intervals are kept; unguessable without ``key`` (HMAC-SHA256 of trial and
    subject), so the core lab cannot undo it."""
    digest = hmac.new(key, f"{trial}\x1f{subject}".encode(), hashlib.sha256).digest()
    return -(int.from_bytes(digest[:8], "big") % up_to + 1)


def shifted(value: str, days: int) -> str:
    """A DICOM date (``YYYYMMDD``) moved by ``days``; ValueError for what is not one."""
    moved = datetime.strptime(value, "%Y%m%d").date() + timedelta(days=days)
    return moved.strftime("%Y%m%d")
