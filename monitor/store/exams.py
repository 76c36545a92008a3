"""Applying a ScheduleEvent to the exam table: the current state plus its history.

Idempotence is the caller's duty at the message level (a duplicate message never gets
here); applying the same event twice would add a second history row but leave the exam's
state the same.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, select

from monitor.events import STATUS_AFTER, EventKind, ExamStatus, ScheduleEvent
from monitor.store.schema import exam_events, exams

# A cancelled exam is taken as the predecessor of a new booking for the same patient and
# procedure when their times lie this close (Epic often rebooks under a new CSN).
REBOOK_WINDOW = timedelta(days=30)
_REBOOKING = frozenset({EventKind.BOOKED, EventKind.RESCHEDULED, EventKind.ORDERED})
_FIRST_STATUS = {EventKind.MODIFIED: ExamStatus.SCHEDULED}


def _clip(value: str | None, length: int) -> str | None:
    return value if value is None or len(value) <= length else value[:length]


def _fields(event: ScheduleEvent) -> dict[str, Any]:
    """Columns an event sets when it carries them (None means 'not in this message')."""
    candidates: dict[str, Any] = {
        "mrn": _clip(event.mrn, 80),
        "accession": _clip(event.accession, 80),
        "order_number": _clip(event.order_number, 80),
        "procedure_code": _clip(event.procedure_code, 80),
        "procedure_text": _clip(event.procedure_text, 250),
        "procedure_system": _clip(event.procedure_system, 80),
        "modality": _clip(event.modality, 16),
        "location": _clip(event.location, 250),
        "start_at": event.start,
        "duration_minutes": event.duration_minutes,
    }
    values = {key: value for key, value in candidates.items() if value is not None}
    if event.patient_ids:
        values["patient_ids"] = [[p.value, p.authority, p.type_code] for p in event.patient_ids]
    if event.resources:
        values["resources"] = list(event.resources)
    if event.comments:
        values["comments"] = list(event.comments)
    if event.extra:
        values["extra"] = dict(event.extra)
    return values


# Statements built once: building Core statements per message costs more than running them.
_successor = exams.alias("successor")
_PREDECESSORS = (
    select(exams.c.id, exams.c.start_at)
    .outerjoin(_successor, _successor.c.replaces_exam_id == exams.c.id)
    .where(
        and_(
            exams.c.mrn == bindparam("mrn"),
            exams.c.procedure_code == bindparam("procedure_code"),
            exams.c.status == ExamStatus.CANCELLED.value,
            exams.c.start_at.between(bindparam("earliest"), bindparam("latest")),
            _successor.c.id.is_(None),
        )
    )
)
_FIND_EXAM = select(exams.c.id, exams.c.status).where(
    exams.c.source == bindparam("b_source"), exams.c.external_id == bindparam("b_external_id")
)
_UPDATE_EXAM = exams.update().where(exams.c.id == bindparam("b_exam_id"))
_INSERT_EXAM = exams.insert()
_INSERT_EVENT = exam_events.insert()


def find_predecessor(conn: Connection, event: ScheduleEvent) -> int | None:
    """The cancelled exam this new booking replaces, if one is plainly the same exam."""
    if event.kind not in _REBOOKING or not event.mrn or not event.procedure_code or event.start is None:
        return None
    start = event.start
    rows = conn.execute(
        _PREDECESSORS,
        {
            "mrn": event.mrn,
            "procedure_code": event.procedure_code,
            "earliest": start - REBOOK_WINDOW,
            "latest": start + REBOOK_WINDOW,
        },
    ).all()
    if not rows:
        return None
    best = min(rows, key=lambda row: (abs(row.start_at - start), row.id))
    return int(best.id)


def apply_event(conn: Connection, event: ScheduleEvent, message_id: int | None, now: datetime) -> int:
    """Upsert the exam ``event`` speaks of and append the event to its history; returns the exam id."""
    found = conn.execute(_FIND_EXAM, {"b_source": event.source, "b_external_id": event.external_id}).first()
    values = _fields(event)
    values.update(
        last_event=event.kind.value,
        status_code=_clip(event.status_code, 80) or "",
        last_message_id=message_id,
        updated_at=now,
    )
    status = STATUS_AFTER[event.kind]
    if found is None:
        first_status = status or _FIRST_STATUS.get(event.kind, ExamStatus.SCHEDULED)
        values.update(
            source=event.source,
            external_id=_clip(event.external_id, 199),
            status=first_status.value,
            replaces_exam_id=find_predecessor(conn, event),
            created_at=now,
        )
        inserted = conn.execute(_INSERT_EXAM, values).inserted_primary_key
        assert inserted is not None
        exam_id = inserted[0]
    else:
        exam_id = found.id
        values["status"] = status.value if status else found.status
        conn.execute(_UPDATE_EXAM, {"b_exam_id": exam_id, **values})
    conn.execute(
        _INSERT_EVENT,
        {
            "exam_id": exam_id,
            "message_id": message_id,
            "kind": event.kind.value,
            "trigger": _clip(event.trigger, 40) or "",
            "status_code": values["status_code"],
            "start_at": event.start,
            "location": values.get("location"),
            "procedure_code": values.get("procedure_code"),
            "recorded_at": now,
        },
    )
    return int(exam_id)
