"""The JSON API under ``/api/``: the same sign-in, roles and scoping as the pages.

Read-only (GET), so no CSRF token is needed; every answer that carries patient data writes
an audit row. Times are UTC ISO 8601; window dates are the site's local dates. Exams carry
the MRN only for admins and coordinators; findings and enrolments never carry one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlalchemy import Connection

from monitor.store.accounts import Role, Session, User, record_audit
from monitor.store.dashboard import (
    scoped_enrolments,
    scoped_findings,
    trial_matrix,
    upcoming_exams,
    visible_enrolment,
    visible_exam,
    visible_finding,
    visible_trial,
)
from monitor.store.outbox import OutboxStatus, outbox_rows
from monitor.store.registry.protocols import protocols_in_force
from monitor.web.context import require, signed_in, web_of
from monitor.web.security import ObjectId, client_address

router = APIRouter(prefix="/api", tags=["api"])
OFFICE = (Role.ADMIN, Role.COORDINATOR, Role.VIEWER)
Json = dict[str, Any]
T = TypeVar("T")


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def _row(row: Any, drop: tuple[str, ...] = ()) -> Json:
    return {k: _iso(v) for k, v in row._mapping.items() if k not in drop}


def _visible(
    request: Request,
    session: Session,
    kind: str,
    ident: int,
    lookup: Callable[[Connection, User, int], T | None],
) -> T:
    """The object ``lookup`` finds for the account, audited as viewed; 404 when it does not
    exist or is out of the account's scope (the two are never told apart)."""
    web = web_of(request)
    with web.engine.connect() as conn:
        found = lookup(conn, session.user, ident)
    if found is None:
        raise HTTPException(status_code=404)
    _audit(request, session, kind, ident)
    return found


def _audit(request: Request, session: Session, kind: str, ident: Any = "") -> None:
    web = web_of(request)
    with web.engine.begin() as conn:
        record_audit(
            conn, web.clock(), session.user.username, "api.view", kind, ident, client_address(request)
        )


@router.get("/exams", summary="Research exams starting in the next days")
def exams(
    request: Request,
    session: Annotated[Session, Depends(signed_in)],
    days: Annotated[int, Query(ge=1, le=366)] = 14,
    trial: Annotated[str | None, Query(max_length=64)] = None,
    modality: Annotated[str | None, Query(max_length=16)] = None,
) -> list[Json]:
    web = web_of(request)
    start: datetime = web.clock()
    with web.engine.connect() as conn:
        rows = upcoming_exams(
            conn, session.user, start, start + timedelta(days=days), trial=trial, modality=modality
        )
    _audit(request, session, "exams")
    return [{k: _iso(getattr(r, k)) for k in r.__slots__} for r in rows]


@router.get("/exams/{exam_id}", summary="One research exam")
def exam(request: Request, exam_id: ObjectId, session: Annotated[Session, Depends(signed_in)]) -> Json:
    row, links = _visible(request, session, "exam", exam_id, visible_exam)
    drop = ("patient_ids", "extra") if session.user.sees_mrn else ("mrn", "patient_ids", "extra")
    return {**_row(row, drop), "trials": sorted(links.trials)}


@router.get("/exams/{exam_id}/notifications", summary="The notifications about one research exam")
def exam_notifications(
    request: Request, exam_id: ObjectId, session: Annotated[Session, Depends(require(*OFFICE))]
) -> list[Json]:
    """Outbox rows about the exam, of the trials the account sees; no summaries or bodies."""
    web = web_of(request)
    with web.engine.connect() as conn:
        if visible_exam(conn, session.user, exam_id) is None:
            raise HTTPException(status_code=404)
        rows = outbox_rows(conn, exam_id=exam_id, trials=session.user.trial_scope())
    _audit(request, session, "exam_notifications", exam_id)
    hidden = ("summary", "external_ref", "dedupe_key")
    return [{k: v for k, v in row.as_json().items() if k not in hidden} for row in rows]


@router.get("/notifications", summary="Outbox notifications (the newest first by due time)")
def notifications(
    request: Request,
    session: Annotated[Session, Depends(require(*OFFICE))],
    status: Annotated[OutboxStatus | None, Query()] = None,
    trial: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[Json]:
    """Alerts, reminders, sheets and digests of the trials the account sees, with their
    delivery status; no summaries or bodies (the exam page's rule)."""
    scope: Collection[str] | None = session.user.trial_scope()
    if trial is not None:
        if not visible_trial(session.user, trial):
            return []
        scope = (trial,)
    web = web_of(request)
    with web.engine.connect() as conn:
        rows = outbox_rows(conn, status=status.value if status else None, trials=scope, limit=limit)
    _audit(request, session, "notifications", trial or "")
    hidden = ("summary", "external_ref", "dedupe_key")
    return [{k: v for k, v in row.as_json().items() if k not in hidden} for row in reversed(rows)]


@router.get("/findings", summary="Findings (open ones by default)")
def findings(
    request: Request,
    session: Annotated[Session, Depends(signed_in)],
    trial: Annotated[str | None, Query(max_length=64)] = None,
    include_resolved: bool = False,
) -> list[Json]:
    web = web_of(request)
    with web.engine.connect() as conn:
        rows = scoped_findings(conn, session.user, open_only=not include_resolved, trial=trial)
    _audit(request, session, "findings", trial or "")
    return [_row(r) for r in rows]


@router.get("/findings/{finding_id}", summary="One finding")
def finding(request: Request, finding_id: ObjectId, session: Annotated[Session, Depends(signed_in)]) -> Json:
    return _row(_visible(request, session, "finding", finding_id, visible_finding))


@router.get("/trials", summary="Trials and the protocol version in force")
def trials(request: Request, session: Annotated[Session, Depends(require(*OFFICE))]) -> list[Json]:
    web = web_of(request)
    with web.engine.connect() as conn:
        found = [p for p in protocols_in_force(conn) if visible_trial(session.user, p.trial)]
    return [{"trial": p.trial, "version": p.version, "loaded_at": p.loaded_at.isoformat()} for p in found]


@router.get("/trials/{trial_id}", summary="One trial's subject x timepoint schedule")
def trial(request: Request, trial_id: str, session: Annotated[Session, Depends(require(*OFFICE))]) -> Json:
    web = web_of(request)
    if not visible_trial(session.user, trial_id):
        raise HTTPException(status_code=404)
    with web.engine.connect() as conn:
        in_force = protocols_in_force(conn, [trial_id])
        if not in_force:
            raise HTTPException(status_code=404)
        matrix = trial_matrix(conn, trial_id)
    _audit(request, session, "trial", trial_id)
    cells = [
        {
            "subject": s, "timepoint": t, "number": n, "label": c.label, "status": c.status,
            "due": c.due.isoformat(), "window_start": c.window_start.isoformat(),
            "window_end": c.window_end.isoformat(), "exam_id": c.exam_id,
        }
        for (s, t, n), c in sorted(matrix.cells.items())
    ]  # fmt: skip
    return {
        "trial": trial_id,
        "version": in_force[0].version,
        "subjects": matrix.subjects,
        "occurrences": cells,
    }


@router.get("/enrolments", summary="Enrolments (no MRNs)")
def enrolments(
    request: Request,
    session: Annotated[Session, Depends(require(*OFFICE))],
    trial: Annotated[str | None, Query(max_length=64)] = None,
) -> list[Json]:
    web = web_of(request)
    with web.engine.connect() as conn:
        rows = scoped_enrolments(conn, session.user, trial)
    _audit(request, session, "enrolments", trial or "")
    return [_row(r) for r in rows]


@router.get("/enrolments/{enrolment_id}", summary="One enrolment (no MRNs)")
def enrolment(
    request: Request, enrolment_id: ObjectId, session: Annotated[Session, Depends(require(*OFFICE))]
) -> Json:
    return _row(_visible(request, session, "enrolment", enrolment_id, visible_enrolment))
