"""Read-side queries shared by the CLI (and later the dashboard and API)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from monitor.store.findings import OPEN
from monitor.store.schema import exams, findings


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


@dataclass(frozen=True, slots=True)
class FindingView:
    """A stored finding. Carries the subject's study id, never an MRN or name."""

    id: int
    key: str
    trial: str
    subject: str
    enrolment_id: int
    timepoint: str | None
    occurrence_key: str | None
    occurrence: str | None  # the occurrence's label, e.g. "Week 12 restaging"
    kind: str
    severity: str
    exam_id: int | None
    window_start: date | None
    window_end: date | None
    detail: str
    status: str
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict; window dates are the site's local dates, instants UTC ISO 8601."""
        return {
            "id": self.id,
            "key": self.key,
            "trial": self.trial,
            "subject": self.subject,
            "enrolment_id": self.enrolment_id,
            "timepoint": self.timepoint,
            "occurrence": self.occurrence,
            "occurrence_key": self.occurrence_key,
            "kind": self.kind,
            "severity": self.severity,
            "exam_id": self.exam_id,
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "window_end": self.window_end.isoformat() if self.window_end else None,
            "detail": self.detail,
            "status": self.status,
            "opened_at": self.opened_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
        }


def list_findings(
    engine: Engine,
    *,
    trial: str | None = None,
    subject: str | None = None,
    open_only: bool = False,
) -> list[FindingView]:
    """Findings ordered by trial, subject, window and id; optionally one trial/subject, open ones only."""
    query = select(
        findings.c.id,
        findings.c.key,
        findings.c.trial,
        findings.c.subject,
        findings.c.enrolment_id,
        findings.c.timepoint,
        findings.c.occurrence_key,
        findings.c.occurrence_label.label("occurrence"),
        findings.c.kind,
        findings.c.severity,
        findings.c.exam_id,
        findings.c.window_start,
        findings.c.window_end,
        findings.c.detail,
        findings.c.status,
        findings.c.opened_at,
        findings.c.updated_at,
        findings.c.resolved_at,
    )
    if trial is not None:
        query = query.where(findings.c.trial == trial)
    if subject is not None:
        query = query.where(findings.c.subject == subject)
    if open_only:
        query = query.where(findings.c.status == OPEN)
    query = query.order_by(
        findings.c.trial,
        findings.c.subject,
        findings.c.window_start.is_(None),
        findings.c.window_start,
        findings.c.id,
    )
    with engine.connect() as conn:
        return [FindingView(**row._mapping) for row in conn.execute(query)]
