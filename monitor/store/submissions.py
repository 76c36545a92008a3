"""Core-lab submissions: which research exams' images are due at the sponsor's core lab, by
when, and what became of each copy (table ``submissions``, see :mod:`monitor.store.schema`).

A submission is opened when the images of an exam of a trial with a core lab first arrive
(:func:`open_due`, after each PACS poll); its deadline counts from then. It is closed as
``submitted`` when the PACS sent a checked copy, or when the office records the sponsor's
confirmation number for a manual upload. Overdue is not stored: it is an open submission
past its ``due_at`` (:meth:`Submission.state`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, insert, select, update

from monitor.store.schema import exams, occurrences, pacs_studies, submissions
from rules.core_lab import CoreLab, SubmissionSeen

__all__ = [
    "OPEN",
    "Submission",
    "open_due",
    "patient_ids_of",
    "record_accepted",
    "record_copy",
    "record_submitted",
    "save_form",
    "studies_of",
    "submission_for",
    "submissions_list",
    "submissions_seen",
]

OPEN = ("due", "refused", "failed")  # still to be sent (then submitted, then perhaps accepted)


@dataclass(frozen=True, slots=True)
class Submission:
    id: int
    exam_id: int
    trial: str
    subject: str
    timepoint: str
    status: str
    images_at: datetime
    due_at: datetime
    destination: str
    copy_uids: tuple[str, ...]
    instances: int
    problems: tuple[str, ...]
    error: str
    confirmation: str
    submitted_at: datetime | None
    submitted_by: str
    form: dict[str, Any] | None = None  # the completed transmittal form (monitor.web.transmittal)

    def state(self, now: datetime) -> str:
        """``overdue`` for an open submission past its deadline, else the stored status."""
        return "overdue" if self.status in OPEN and now > self.due_at else self.status


def open_due(
    conn: Connection,
    core_labs: Mapping[str, CoreLab],
    zone: ZoneInfo,
    now: datetime,
    closed: Callable[[date], bool] | None = None,
) -> list[int]:
    """Open a submission for each exam of a trial in ``core_labs`` whose images have arrived
    and that has none yet, due the trial's deadline after the images first arrived
    (``closed``: the days that are not business days); the exam ids opened."""
    if not core_labs:
        return []
    arrived = func.min(pacs_studies.c.first_seen_at)
    query = (
        select(
            occurrences.c.exam_id,
            occurrences.c.trial,
            occurrences.c.subject,
            occurrences.c.timepoint,
            arrived.label("images_at"),
        )
        .join(pacs_studies, pacs_studies.c.exam_id == occurrences.c.exam_id)
        .outerjoin(submissions, submissions.c.exam_id == occurrences.c.exam_id)
        .where(occurrences.c.trial.in_(sorted(core_labs)), submissions.c.id.is_(None))
        .group_by(occurrences.c.exam_id, occurrences.c.trial, occurrences.c.subject, occurrences.c.timepoint)
        .order_by(occurrences.c.exam_id, occurrences.c.trial, occurrences.c.timepoint)
    )
    rows: dict[int, dict[str, Any]] = {}
    for row in conn.execute(query):
        if row.exam_id in rows:
            continue  # an exam serves one visit of one trial: the first listed
        core_lab = core_labs[row.trial]
        rows[row.exam_id] = {
            "exam_id": row.exam_id,
            "trial": row.trial,
            "subject": row.subject,
            "timepoint": row.timepoint,
            "status": "due",
            "images_at": row.images_at,
            "due_at": core_lab.deadline.due(row.images_at, zone, closed),
            "destination": core_lab.destination.words()[:300],
            "updated_at": now,
        }
    if rows:
        conn.execute(insert(submissions), list(rows.values()))
    return sorted(rows)


def submission_for(conn: Connection, exam_id: int) -> Submission | None:
    row = conn.execute(select(submissions).where(submissions.c.exam_id == exam_id)).first()
    return None if row is None else _submission(row)


def submissions_list(
    conn: Connection, trials: Collection[str] | None = None, statuses: Collection[str] | None = None
) -> list[Submission]:
    """Submissions of ``trials`` (None: all) in ``statuses`` (None: all), earliest due first."""
    query = select(submissions).order_by(submissions.c.due_at, submissions.c.id)
    if trials is not None:
        query = query.where(submissions.c.trial.in_(sorted(trials)))
    if statuses is not None:
        query = query.where(submissions.c.status.in_(sorted(statuses)))
    return [_submission(row) for row in conn.execute(query)]


def submissions_seen(conn: Connection, exam_ids: Collection[int] | None) -> dict[int, SubmissionSeen]:
    """Where the copies of ``exam_ids`` (every exam when None) stand, for the engine."""
    query = select(submissions.c.exam_id, submissions.c.status, submissions.c.due_at, submissions.c.problems,
                   submissions.c.error)  # fmt: skip
    if exam_ids is not None:
        if not exam_ids:
            return {}
        query = query.where(submissions.c.exam_id.in_(sorted(exam_ids)))
    return {
        row.exam_id: SubmissionSeen(
            row.status, row.due_at, (row.problems or [row.error])[0] if row.problems or row.error else ""
        )
        for row in conn.execute(query)
    }


def studies_of(conn: Connection, exam_id: int) -> list[str]:
    """The UIDs of the studies matched to ``exam_id``, first seen first."""
    query = (
        select(pacs_studies.c.study_uid)
        .where(pacs_studies.c.exam_id == exam_id)
        .order_by(pacs_studies.c.first_seen_at, pacs_studies.c.id)
    )
    return list(conn.scalars(query))


def patient_ids_of(conn: Connection, exam_id: int) -> list[str]:
    """Every id the feed gave the exam's patient (the MRN and PID-3's others): a copy must
    carry none of them."""
    row = conn.execute(select(exams.c.mrn, exams.c.patient_ids).where(exams.c.id == exam_id)).first()
    if row is None:
        return []
    found = [row.mrn] if row.mrn else []
    found += [str(entry[0]) for entry in row.patient_ids or [] if entry and entry[0]]
    return found


def record_copy(
    conn: Connection,
    exam_id: int,
    now: datetime,
    *,
    status: str,
    by: str,
    copy_uids: Sequence[str] = (),
    instances: int = 0,
    problems: Sequence[str] = (),
    error: str = "",
) -> None:
    """What became of the copy the project made (``submitted``, ``refused`` or ``failed``)."""
    values: dict[str, Any] = {
        "status": status,
        "copy_uids": list(copy_uids),
        "instances": instances,
        "problems": list(problems),
        "error": error[:500],
        "updated_at": now,
    }
    if status == "submitted":
        values.update(submitted_at=now, submitted_by=by[:120])
    conn.execute(update(submissions).where(submissions.c.exam_id == exam_id).values(**values))


def record_submitted(conn: Connection, exam_id: int, confirmation: str, by: str, now: datetime) -> bool:
    """The office sent the images (a manual upload) and the sponsor confirmed it; False when the
    exam has no submission."""
    done = conn.execute(
        update(submissions)
        .where(submissions.c.exam_id == exam_id)
        .values(
            status="submitted",
            confirmation=confirmation[:120],
            submitted_at=now,
            submitted_by=by[:120],
            updated_at=now,
        )
    )
    return bool(done.rowcount)


def save_form(conn: Connection, exam_id: int, form: dict[str, Any], now: datetime) -> bool:
    """Keep the completed transmittal form with the exam's submission; False when it has none."""
    done = conn.execute(
        update(submissions).where(submissions.c.exam_id == exam_id).values(form=form, updated_at=now)
    )
    return bool(done.rowcount)


def record_accepted(conn: Connection, exam_id: int, now: datetime) -> bool:
    """The core lab accepted the submitted images; False when the exam has no submitted images."""
    done = conn.execute(
        update(submissions)
        .where(submissions.c.exam_id == exam_id, submissions.c.status == "submitted")
        .values(status="accepted", updated_at=now)
    )
    return bool(done.rowcount)


def _submission(row: Any) -> Submission:
    return Submission(
        id=row.id,
        exam_id=row.exam_id,
        trial=row.trial,
        subject=row.subject,
        timepoint=row.timepoint,
        status=row.status,
        images_at=row.images_at,
        due_at=row.due_at,
        destination=row.destination,
        copy_uids=tuple(row.copy_uids or ()),
        instances=row.instances,
        problems=tuple(row.problems or ()),
        error=row.error,
        confirmation=row.confirmation,
        submitted_at=row.submitted_at,
        submitted_by=row.submitted_by,
        form=row.form,
    )
