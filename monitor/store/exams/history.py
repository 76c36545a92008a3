"""Applying a ScheduleEvent to the exam table: the current state plus its history.

An exam's state is its events folded in the order of their own time (``event_time``: EVN-2,
else MSH-7, FHIR ``meta.lastUpdated``; the time it reached us when a message carries none),
ties in arrival order. So an exam never moves backwards:

- an event as new as the exam's newest (the usual case) is applied on top of the state;
- an older one (a replay, a sender's resend queue, two feeds out of step) is kept in the
  history and the state is folded again from the history: its fields count only where no
  newer event set them, and its kind only if no newer event changed the status. Replaying a
  day's feed in any order therefore ends in the state of the feed in time order.

Idempotence is the caller's duty at the message level (a duplicate message never gets
here); applying the same event twice would add a second history row but leave the exam's
state the same.

A new booking replaces (``replaces_exam_id``: Epic often rebooks under a new CSN) the
exam of the same patient and procedure, starting within :data:`REBOOK_WINDOW`, that was
cancelled when the booking was made, by the events' own times: the closest in start time
that no earlier booking already replaced. The links of a patient's exams of one procedure
are worked out again from their histories whenever an exam is created, cancelled or gets
an older event, so they too end the same whatever order the messages came in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, select

from monitor.events import STATUS_AFTER, EventKind, ExamStatus, ScheduleEvent
from monitor.store.driver import Driver, driver_for
from monitor.store.exams.hot import (
    as_params,
    cancelled_in_group,
    insert_event,
    rebooking_group,
    upsert_exam,
)
from monitor.store.schema import exam_events, exams

# A cancelled exam is taken as the predecessor of a new booking for the same patient and
# procedure when their times lie this close (Epic often rebooks under a new CSN).
REBOOK_WINDOW = timedelta(days=30)
_REBOOKING = frozenset({EventKind.BOOKED, EventKind.RESCHEDULED, EventKind.ORDERED})
_CANCELLING = frozenset(kind for kind, status in STATUS_AFTER.items() if status is ExamStatus.CANCELLED)
_FIRST_STATUS = {EventKind.MODIFIED: ExamStatus.SCHEDULED}
_TIMES = ("start_at",)  # event fields stored as ISO text in exam_events.fields


def _clip(value: str | None, length: int) -> str | None:
    return value if value is None or len(value) <= length else value[:length]


def _fields(event: ScheduleEvent) -> dict[str, Any]:
    """Columns an event sets when it carries them (None means 'not in this message')."""
    candidates: dict[str, Any] = {
        "mrn": _clip(event.mrn, 80),
        "mrn_pool": _clip(event.mrn_pool, 80),
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


def _as_json(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: value.isoformat() if key in _TIMES else value for key, value in fields.items()}


def _from_json(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: datetime.fromisoformat(value) if key in _TIMES else value for key, value in fields.items()}


def _next_status(kind: EventKind, current: str | None) -> str:
    status = STATUS_AFTER[kind]
    if status is not None:
        return status.value
    return current or _FIRST_STATUS.get(kind, ExamStatus.SCHEDULED).value


# Statements built once: building Core statements per message costs more than running them.
_FIND_EXAM = select(exams.c.id, exams.c.status, exams.c.last_event_time).where(
    exams.c.source == bindparam("b_source"), exams.c.external_id == bindparam("b_external_id")
)
_HISTORY = (
    select(
        exam_events.c.kind,
        exam_events.c.status_code,
        exam_events.c.message_id,
        exam_events.c.event_time,
        exam_events.c.fields,
    )
    .where(exam_events.c.exam_id == bindparam("b_exam_id"))
    .order_by(exam_events.c.event_time, exam_events.c.id)
)
_UPDATE_EXAM = exams.update().where(exams.c.id == bindparam("b_exam_id"))


@dataclass(slots=True)
class _Timeline:
    """One exam of a rebooking group: its status changes and starts, in event time order."""

    exam_id: int
    external_id: str
    start_now: datetime | None
    events: list[tuple[datetime, EventKind, datetime | None]] = field(default_factory=list)

    def as_of(self, moment: datetime) -> tuple[str | None, datetime | None]:
        """Status and start after the events up to ``moment`` (None, None: not yet booked)."""
        status: str | None = None
        start: datetime | None = None
        for when, kind, moved_to in self.events:
            if when > moment:
                break
            status = _next_status(kind, status)
            start = moved_to or start
        return status, start


def _relink(conn: Connection, driver: Driver, mrn: str, procedure: str) -> None:
    """Work out which exam each booking of this patient and procedure replaces (module doc)."""
    group, history = rebooking_group(conn, driver, mrn, procedure)
    timelines: dict[int, _Timeline] = {}
    linked_now: dict[int, int | None] = {}
    for exam_id, external_id, replaces, start_now in group:
        timelines[exam_id] = _Timeline(int(exam_id), external_id, start_now)
        linked_now[exam_id] = replaces
    for exam_id, kind, event_time, moved_to in history:
        timelines[exam_id].events.append(
            (event_time, EventKind(kind), datetime.fromisoformat(moved_to) if moved_to else None)
        )
    bookings = sorted(
        (t for t in timelines.values() if t.events and t.events[0][1] in _REBOOKING),
        key=lambda t: (t.events[0][0], t.external_id),
    )
    # Only an exam that was cancelled at some point can be replaced: a patient with hundreds
    # of bookings of one procedure has few of those, so each booking looks at a few exams.
    cancelled = [t for t in timelines.values() if any(kind in _CANCELLING for _, kind, _ in t.events)]
    replaced: dict[int, int] = {}  # booking -> the exam it replaces
    taken: set[int] = set()
    for booking in bookings:
        booked_at, _, booked_start = booking.events[0]
        booked_start = booked_start or booking.start_now
        if booked_start is None:
            continue
        candidates = []
        for other in cancelled:
            if other is booking or other.exam_id in taken:
                continue
            status, start = other.as_of(booked_at)
            start = start or other.start_now
            if status == ExamStatus.CANCELLED.value and start is not None:
                gap = abs(start - booked_start)
                if gap <= REBOOK_WINDOW:
                    candidates.append((gap, other.events[0][0], other.external_id, other.exam_id))
        if candidates:
            replaced[booking.exam_id] = choice = min(candidates)[3]
            taken.add(choice)
    for exam_id, before in linked_now.items():
        after = replaced.get(exam_id)
        if after != before:
            conn.execute(_UPDATE_EXAM, {"b_exam_id": exam_id, "replaces_exam_id": after})


def _maybe_relink(
    conn: Connection, driver: Driver, mrn: str | None, procedure: str | None, cancelled: bool | None = None
) -> None:
    """Relink the group when it has a cancellation (``cancelled``: known already; None: ask)."""
    if not (mrn and procedure):
        return
    if cancelled if cancelled is not None else cancelled_in_group(conn, driver, mrn, procedure):
        _relink(conn, driver, mrn, procedure)


def apply_event(conn: Connection, event: ScheduleEvent, message_id: int | None, now: datetime) -> int:
    """Record ``event`` in its exam's history and bring the exam's state up to date (see the
    module docstring for the order); returns the exam id.

    The usual case is two statements on the driver (:mod:`.hot`; one on PostgreSQL): the
    upsert that applies an in-order event, and the history row. An older event costs a few more (the fold)."""
    driver = driver_for(conn)
    when = event.event_time or now
    fields = _fields(event)
    kind = event.kind
    status_after = STATUS_AFTER[kind]
    params = as_params(
        driver,
        fields,
        source=event.source,
        external_id=_clip(event.external_id, 199),
        first_status=_next_status(kind, None),
        status_after=None if status_after is None else status_after.value,
        last_event=kind.value,
        kind=kind.value,
        trigger=_clip(event.trigger, 40) or "",
        status_code=_clip(event.status_code, 80) or "",
        message_id=message_id,
        event_time=when,
        now=now,
        fields=driver.json(_as_json(fields)),
    )
    applied = upsert_exam(conn, driver, params)
    if applied is not None:
        params["exam_id"] = applied.exam_id
        if not applied.event_stored:
            insert_event(conn, driver, params)
        if applied.created or kind is EventKind.CANCELLED:
            _maybe_relink(conn, driver, applied.mrn, applied.procedure_code, applied.cancelled_in_group)
        return applied.exam_id
    # The exam has a newer event: keep this one in the history and fold it in.
    found = conn.execute(_FIND_EXAM, {"b_source": event.source, "b_external_id": params["external_id"]}).one()
    params["exam_id"] = exam_id = int(found.id)
    insert_event(conn, driver, params)
    _fold_history(conn, exam_id, now)
    _maybe_relink(conn, driver, *_group_of(conn, exam_id))
    return exam_id


def _group_of(conn: Connection, exam_id: int) -> tuple[str | None, str | None]:
    row = conn.execute(select(exams.c.mrn, exams.c.procedure_code).where(exams.c.id == exam_id)).one()
    return row.mrn, row.procedure_code


def _fold_history(conn: Connection, exam_id: int, now: datetime) -> None:
    """Set the exam's state from its whole history in time order. An exam whose history
    holds events stored before their fields were kept (migration 0008) keeps its state."""
    history = conn.execute(_HISTORY, {"b_exam_id": exam_id}).all()
    if any(row.fields is None for row in history):
        return
    state: dict[str, Any] = {}
    status: str | None = None
    for row in history:
        state.update(_from_json(row.fields))
        status = _next_status(EventKind(row.kind), status)
    last = history[-1]
    state.update(
        status=status,
        last_event=last.kind,
        status_code=last.status_code,
        last_message_id=last.message_id,
        first_event_time=history[0].event_time,
        last_event_time=last.event_time,
        updated_at=now,
    )
    conn.execute(_UPDATE_EXAM, {"b_exam_id": exam_id, **state})


def exam_start(conn: Connection, source: str, external_id: str) -> datetime | None:
    """When the exam ``external_id`` of ``source`` starts now (None: unknown exam or no time)."""
    found = conn.execute(
        select(exams.c.start_at).where(exams.c.source == source, exams.c.external_id == external_id)
    ).first()
    return None if found is None else found.start_at


def exam_row(conn: Connection, exam_id: int) -> Any | None:
    """The exam row (all columns), or None."""
    return conn.execute(select(exams).where(exams.c.id == exam_id)).first()
