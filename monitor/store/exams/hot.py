"""The statements every feed event runs, on the driver (:mod:`monitor.store.driver`).

One upsert brings the exam up to date when the event is as new as the exam's newest (the
usual case): ``INSERT ... ON CONFLICT (source, external_id) DO UPDATE ... WHERE`` the exam's
newest event is not newer, ``RETURNING`` the exam. A column the event does not carry is NULL
in the statement and keeps the stored value (``COALESCE``). No row back means the exam
exists with a newer event: the caller keeps the event as history and folds (:mod:`.history`).
Then one insert appends the event to the history. On PostgreSQL, where a round trip to
the server (150-250 µs through psycopg on loopback) costs more than the statement, the
upsert, the history row and the question the rebooking links ask next (:func:`cancelled_in_group`)
go in one statement (``WITH ... INSERT ... RETURNING``); SQLite has no data-modifying
``WITH``, and a statement there costs no round trip.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection

from monitor.store.driver import Driver

# Columns an event sets when it carries them (NULL: keep what is stored).
SCALARS = ("mrn", "mrn_pool", "accession", "order_number", "procedure_code", "procedure_text",
           "procedure_system", "modality", "location", "start_at", "duration_minutes")  # fmt: skip
LISTS = ("patient_ids", "resources", "comments", "extra")  # JSON, NOT NULL
_EMPTY = {"patient_ids": "'[]'", "resources": "'[]'", "comments": "'[]'", "extra": "'{}'"}

# Built from the constant column names above; every value is a bound parameter.
_UPSERT = (
    "INSERT INTO exams (source, external_id, status, last_event, status_code, "  # noqa: S608
    + ", ".join(SCALARS + LISTS)
    + ", last_message_id, first_event_time, last_event_time, created_at, updated_at) VALUES "
    "(:source, :external_id, :first_status, :last_event, :status_code, "
    + ", ".join(f":{name}" for name in SCALARS) + ", "
    + ", ".join(f"COALESCE({{json:{name}}}, {_EMPTY[name]})" for name in LISTS)
    + ", :message_id, :event_time, :event_time, :now, :now) "
    "ON CONFLICT (source, external_id) DO UPDATE SET "
    "status = COALESCE(:status_after, exams.status), last_event = excluded.last_event, "
    "status_code = excluded.status_code, "
    + ", ".join(f"{name} = COALESCE(:{name}, exams.{name})" for name in SCALARS) + ", "
    + ", ".join(f"{name} = COALESCE({{json:{name}}}, exams.{name})" for name in LISTS)
    + ", last_message_id = excluded.last_message_id, last_event_time = excluded.last_event_time, "
    "updated_at = excluded.updated_at "
    "WHERE exams.last_event_time IS NULL OR exams.last_event_time <= excluded.last_event_time "
    "RETURNING id, created_at, mrn, procedure_code"
)  # fmt: skip
# The history row of an event: its exam, then these values (one list for both statements).
_EVENT_INTO = (
    "INSERT INTO exam_events (exam_id, message_id, kind, trigger, status_code, start_at, location, "
    "procedure_code, recorded_at, event_time, fields) "
)
_EVENT_VALUES = (
    ":message_id, :kind, :trigger, :status_code, :start_at, :location, :procedure_code, :now, "
    ":event_time, {json:fields}"
)
_EVENT = _EVENT_INTO + "VALUES (:exam_id, " + _EVENT_VALUES + ")"
_CANCELLED = (
    "SELECT 1 FROM exams JOIN exam_events ON exam_events.exam_id = exams.id WHERE exams.mrn = :mrn "
    "AND exams.procedure_code = :procedure AND exam_events.kind = 'cancelled' LIMIT 1"
)


# PostgreSQL: _UPSERT, then _EVENT for the exam it returned, then _CANCELLED for its group,
# in one statement. The sub-statements share one snapshot, which holds neither this event nor
# this exam's new patient and procedure: so the group's cancellations are those of the other
# exams now in it, this exam's own earlier ones, and this event if it is one.
_UPSERT_AND_EVENT = (
    "WITH up AS (" + _UPSERT + "), "  # noqa: S608
    "ev AS (" + _EVENT_INTO + "SELECT up.id, " + _EVENT_VALUES + " FROM up) "
    "SELECT up.id, up.created_at, up.mrn, up.procedure_code, "
    "(:kind = 'cancelled' "
    "OR EXISTS (SELECT 1 FROM exam_events WHERE exam_events.exam_id = up.id "
    "AND exam_events.kind = 'cancelled') "
    "OR EXISTS (SELECT 1 FROM exams JOIN exam_events ON exam_events.exam_id = exams.id "
    "WHERE exams.mrn = up.mrn AND exams.procedure_code = up.procedure_code "
    "AND exam_events.kind = 'cancelled')) FROM up"
)


class Upserted(NamedTuple):
    """The exam an in-order event was applied to."""

    exam_id: int
    created: bool  # True also for a later event of an exam created at the same instant
    mrn: str | None
    procedure_code: str | None
    event_stored: bool = False  # the event's history row is written too (PostgreSQL)
    cancelled_in_group: bool | None = None  # known already (PostgreSQL): cancelled_in_group()


def upsert_exam(conn: Connection, driver: Driver, params: dict[str, Any]) -> Upserted | None:
    """Apply an in-order event; None when the exam's newest event is newer (nothing written).
    ``params`` holds every name of :data:`_UPSERT` and :data:`_EVENT`, times and JSON already
    converted. On PostgreSQL the history row is written in the same statement."""
    if driver.sqlite:
        row = driver.execute(conn, _UPSERT, params).fetchone()
        if row is None:
            return None
        return Upserted(int(row[0]), str(row[1]) == params["now"], row[2], row[3])
    row = driver.execute(conn, _UPSERT_AND_EVENT, params).fetchone()
    if row is None:
        return None
    return Upserted(int(row[0]), row[1] == params["now"], row[2], row[3], True, bool(row[4]))


def insert_event(conn: Connection, driver: Driver, params: dict[str, Any]) -> None:
    """Append the event to ``params["exam_id"]``'s history (same conversions as the upsert)."""
    driver.execute(conn, _EVENT, params)


# One patient's exams of one procedure (a rebooking group), then their events in time order
# with the start each one moved the exam to, read in SQL (not the whole JSON of the fields).
_GROUP = (
    "SELECT id, external_id, replaces_exam_id, start_at FROM exams "
    "WHERE mrn = :mrn AND procedure_code = :procedure"
)
_GROUP_HISTORY = (
    "SELECT exam_events.exam_id, exam_events.kind, exam_events.event_time, {start} "
    "FROM exam_events JOIN exams ON exam_events.exam_id = exams.id "
    "WHERE exams.mrn = :mrn AND exams.procedure_code = :procedure "
    "ORDER BY exam_events.event_time, exam_events.id"
)
_START_IN_FIELDS = {
    "sqlite": "json_extract(exam_events.fields, '$.start_at')",
    "postgresql": "exam_events.fields ->> 'start_at'",
}


def rebooking_group(
    conn: Connection, driver: Driver, mrn: str, procedure: str
) -> tuple[list[Any], list[Any]]:
    """The exams of a rebooking group ``(id, external_id, replaces_exam_id, start_at)`` and
    their events ``(exam_id, kind, event_time, moved_to)`` in time order; times aware UTC,
    ``moved_to`` the ISO text the event stored (None: the event did not move the exam).

    On the driver because every new booking in a group with a cancellation reads it: with
    Core and the fields' JSON decoded it was 43% of an ingest of 100,000 messages (500
    patients, 18 exams per patient and procedure on average; bench_mllp ingest, 2026-12-04)."""
    key = {"mrn": mrn, "procedure": procedure}
    group = driver.execute(conn, _GROUP, key).fetchall()
    history = driver.execute(
        conn, _GROUP_HISTORY.format(start=_START_IN_FIELDS[driver.dialect]), key
    ).fetchall()
    read = driver.read_time
    return (
        [(exam_id, external_id, replaces, read(start)) for exam_id, external_id, replaces, start in group],
        [(exam_id, kind, read(when), moved_to) for exam_id, kind, when, moved_to in history],
    )


def cancelled_in_group(conn: Connection, driver: Driver, mrn: str, procedure: str) -> bool:
    """Whether any exam of this patient and procedure was ever cancelled (rebooking links)."""
    return driver.execute(conn, _CANCELLED, {"mrn": mrn, "procedure": procedure}).fetchone() is not None


def as_params(driver: Driver, carried: dict[str, Any], **more: Any) -> dict[str, Any]:
    """Statement parameters for the columns an event ``carried`` (absent: NULL) and ``more``."""
    params: dict[str, Any] = {name: carried.get(name) for name in SCALARS}
    params["start_at"] = driver.time(params["start_at"])
    for name in LISTS:
        params[name] = driver.json(carried.get(name))
    for name, value in more.items():
        params[name] = driver.time(value) if isinstance(value, datetime) else value
    return params
