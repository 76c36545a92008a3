"""Exams as the ``exams`` command lists them (every exam in the feed, research or not)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, func, select

from monitor.store.schema import exams


@dataclass(frozen=True, slots=True)
class ExamView:
    id: int
    source: str
    external_id: str
    status: str
    mrn: str | None
    accession: str | None
    procedure_code: str | None
    procedure_text: str | None
    modality: str | None
    location: str | None
    start: datetime | None
    duration_minutes: int | None
    updated_at: datetime
    replaces_exam_id: int | None

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict; times in UTC, ISO 8601 with offset."""
        return {
            "id": self.id,
            "source": self.source,
            "external_id": self.external_id,
            "status": self.status,
            "mrn": self.mrn,
            "accession": self.accession,
            "procedure_code": self.procedure_code,
            "procedure_text": self.procedure_text,
            "modality": self.modality,
            "location": self.location,
            "start": self.start.isoformat() if self.start else None,
            "duration_minutes": self.duration_minutes,
            "updated_at": self.updated_at.isoformat(),
            "replaces_exam_id": self.replaces_exam_id,
        }


def day_bounds(
    first: date | None, last: date | None, zone: ZoneInfo
) -> tuple[datetime | None, datetime | None]:
    """UTC instants bounding the site-local days ``first`` .. ``last`` (inclusive)."""
    start = datetime.combine(first, time(), zone).astimezone(UTC) if first else None
    end = datetime.combine(last + timedelta(days=1), time(), zone).astimezone(UTC) if last else None
    return start, end


def list_exams(
    engine: Engine, *, start_from: datetime | None = None, start_before: datetime | None = None
) -> list[ExamView]:
    """Exams ordered by start (unscheduled last), optionally within [start_from, start_before)."""
    query = select(
        exams.c.id,
        exams.c.source,
        exams.c.external_id,
        exams.c.status,
        exams.c.mrn,
        exams.c.accession,
        exams.c.procedure_code,
        exams.c.procedure_text,
        exams.c.modality,
        exams.c.location,
        exams.c.start_at.label("start"),
        exams.c.duration_minutes,
        exams.c.updated_at,
        exams.c.replaces_exam_id,
    )
    if start_from is not None:
        query = query.where(exams.c.start_at >= start_from)
    if start_before is not None:
        query = query.where(exams.c.start_at < start_before)
    query = query.order_by(exams.c.start_at.is_(None), exams.c.start_at, exams.c.id)
    with engine.connect() as conn:
        return [ExamView(**row._mapping) for row in conn.execute(query)]


def exam_status_counts(conn: Connection) -> dict[str, int]:
    """How many exams the feeds have brought in, by current status (``scheduled``: 98, ...)."""
    query = select(exams.c.status, func.count()).group_by(exams.c.status).order_by(func.count().desc())
    return {status: int(count) for status, count in conn.execute(query)}
