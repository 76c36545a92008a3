"""Core-lab queries: what a core lab asked about an exam, by when the answer is due, and the
office's answer (table ``core_lab_queries``). The text is shown in the dashboard only: the
alerts about a query say when it came and when its answer is due, never what it says."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from monitor.store.schema import core_lab_queries, submissions

__all__ = [
    "CoreLabQuery",
    "QueryRate",
    "answer_query",
    "log_query",
    "open_query_dues",
    "queries_for",
    "query_rate",
]


@dataclass(frozen=True, slots=True)
class CoreLabQuery:
    id: int
    exam_id: int
    trial: str
    subject: str
    received_on: date
    text: str
    answer_due: date
    status: str  # open, answered
    answer: str
    answered_at: datetime | None
    answered_by: str
    logged_by: str


@dataclass(frozen=True, slots=True)
class QueryRate:
    """A trial's queries against the exams it submitted: how often the core lab came back."""

    queries: int
    open: int
    submitted: int

    @property
    def percent(self) -> int | None:
        return None if not self.submitted else round(100 * self.queries / self.submitted)


def log_query(
    conn: Connection,
    exam_id: int,
    *,
    received_on: date,
    text: str,
    answer_due: date,
    by: str,
    now: datetime,
) -> int:
    """Log a query about ``exam_id`` (an exam with a core-lab submission); its id. ValueError
    when the exam has none, or the answer would be due before the query came."""
    found = conn.execute(
        select(submissions.c.trial, submissions.c.subject).where(submissions.c.exam_id == exam_id)
    ).first()
    if found is None:
        raise ValueError(f"exam {exam_id} has no core-lab submission to query")
    if answer_due < received_on:
        raise ValueError("the answer cannot be due before the query was received")
    if not text.strip():
        raise ValueError("the query needs its text")
    values = {
        "exam_id": exam_id,
        "trial": found.trial,
        "subject": found.subject,
        "received_on": received_on,
        "text": text.strip()[:2000],
        "answer_due": answer_due,
        "status": "open",
        "logged_at": now,
        "logged_by": by[:120],
    }
    inserted = conn.execute(insert(core_lab_queries).values(**values)).inserted_primary_key
    assert inserted is not None
    return int(inserted[0])


def answer_query(conn: Connection, query_id: int, answer: str, *, by: str, now: datetime) -> int | None:
    """Record the office's answer to an open query; the query's exam id (None: no such open query)."""
    found = conn.execute(
        select(core_lab_queries.c.exam_id).where(
            core_lab_queries.c.id == query_id, core_lab_queries.c.status == "open"
        )
    ).first()
    if found is None:
        return None
    conn.execute(
        update(core_lab_queries)
        .where(core_lab_queries.c.id == query_id)
        .values(status="answered", answer=answer.strip()[:2000], answered_at=now, answered_by=by[:120])
    )
    return int(found.exam_id)


def queries_for(conn: Connection, exam_id: int) -> list[CoreLabQuery]:
    query = (
        select(core_lab_queries)
        .where(core_lab_queries.c.exam_id == exam_id)
        .order_by(core_lab_queries.c.received_on, core_lab_queries.c.id)
    )
    return [_query(row) for row in conn.execute(query)]


def open_query_dues(conn: Connection, exam_ids: Collection[int] | None) -> dict[int, tuple[date, ...]]:
    """The answer dates of the open queries of ``exam_ids`` (every exam when None), earliest first."""
    query = select(core_lab_queries.c.exam_id, core_lab_queries.c.answer_due).where(
        core_lab_queries.c.status == "open"
    )
    if exam_ids is not None:
        if not exam_ids:
            return {}
        query = query.where(core_lab_queries.c.exam_id.in_(sorted(exam_ids)))
    found: dict[int, list[date]] = {}
    for row in conn.execute(query.order_by(core_lab_queries.c.answer_due)):
        found.setdefault(row.exam_id, []).append(row.answer_due)
    return {exam_id: tuple(dues) for exam_id, dues in found.items()}


def query_rate(conn: Connection, trial: str) -> QueryRate:
    counted = conn.execute(
        select(func.count(), func.count().filter(core_lab_queries.c.status == "open")).where(
            core_lab_queries.c.trial == trial
        )
    ).one()
    submitted = conn.execute(
        select(func.count()).where(
            submissions.c.trial == trial, submissions.c.status.in_(("submitted", "accepted"))
        )
    ).scalar_one()
    return QueryRate(int(counted[0]), int(counted[1]), int(submitted))


def _query(row: Any) -> CoreLabQuery:
    return CoreLabQuery(
        id=row.id,
        exam_id=row.exam_id,
        trial=row.trial,
        subject=row.subject,
        received_on=row.received_on,
        text=row.text,
        answer_due=row.answer_due,
        status=row.status,
        answer=row.answer,
        answered_at=row.answered_at,
        answered_by=row.answered_by,
        logged_by=row.logged_by,
    )
