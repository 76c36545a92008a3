"""The core lab in the dashboard: what is due where, and the office's two actions.

``/core-lab``: the submissions of the trials the account sees, earliest deadline first
(overdue, refused and failed ones marked). On the exam page (``pages.exam``) the exam's
submission, and for coordinators and admins:

- *Send the copy*: the PACS makes the de-identified copy, it is checked, the PACS sends it
  (:func:`monitor.dispatch.core_lab.send_copy`; a refused copy never leaves);
- *Record an upload*: a manual upload to the sponsor's portal, with its confirmation number;
- *Log a query* the core lab sent (received, text, answer due) and *record its answer*;
- *Accepted*: the core lab accepted the images;
- the *data transmittal form* (:mod:`monitor.web.transmittal`): filled in, then kept.

Each is CSRF-checked, audited with the account and the client (a query's text is not in the
audit detail), and re-evaluates the exam: its due, overdue, refused or query finding
resolves once done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from monitor.dispatch.core_lab import (
    CoreLabError,
    answer_core_lab_query,
    log_core_lab_query,
    record_acceptance,
    record_upload,
    send_copy,
)
from monitor.evaluation import Evaluator
from monitor.store.accounts import Role, Session, record_audit
from monitor.store.core_lab_queries import open_query_dues
from monitor.store.dashboard import visible_exam, visible_trial
from monitor.store.database import autocommit
from monitor.store.submissions import Submission, save_form, submission_for, submissions_list
from monitor.web.context import Web, require, web_of
from monitor.web.formats import parse_day
from monitor.web.security import ObjectId, client_address, require_csrf
from monitor.web.transmittal import FIELD_LIMIT, completed, prefilled

__all__ = ["router", "visible_submission"]

router = APIRouter(include_in_schema=False)
OFFICE = (Role.ADMIN, Role.COORDINATOR, Role.VIEWER)
ACTING = (Role.ADMIN, Role.COORDINATOR)


def visible_submission(conn: Connection, session: Session, exam_id: int) -> Submission | None:
    """The exam's submission, when the account may see its trial."""
    found = submission_for(conn, exam_id)
    return found if found is not None and visible_trial(session.user, found.trial) else None


@router.get("/core-lab")
def core_lab_page(request: Request, session: Annotated[Session, Depends(require(*OFFICE))]) -> Response:
    web = web_of(request)
    with autocommit(web.engine) as conn:
        rows = submissions_list(conn, session.user.trial_scope())
        queried = set(open_query_dues(conn, [row.exam_id for row in rows]))
        record_audit(
            conn, web.clock(), session.user.username, "view", "core_lab", "", client_address(request)
        )
    now = web.clock()
    states = [(row, "query open" if row.exam_id in queried else row.state(now)) for row in rows]
    context: dict[str, Any] = {"submissions": states}
    return web.page(request, session, "core_lab.html", context)


def _acting_on(request: Request, session: Session, exam_id: int, csrf_token: str) -> None:
    require_csrf(session, csrf_token)
    web = web_of(request)
    with autocommit(web.engine) as conn:
        if (
            visible_exam(conn, session.user, exam_id) is None
            or visible_submission(conn, session, exam_id) is None
        ):
            raise HTTPException(status_code=404)


@dataclass(frozen=True, slots=True)
class _Actor:
    """Who acts, from where, on which store: what every office action records."""

    web: Web
    by: str
    client: str

    def evaluator(self) -> Evaluator:
        return Evaluator(self.web.engine, self.web.settings)


def _act(
    request: Request,
    session: Session,
    exam_id: int,
    csrf_token: str,
    action: Callable[[_Actor], object],
    *,
    anchor: str = "core-lab",
    refused: int = 409,
) -> Response:
    """Check the CSRF token and the account's view of the exam, run ``action``, and go back to
    the exam's section; a :class:`CoreLabError` is answered ``refused`` with its sentence."""
    _acting_on(request, session, exam_id, csrf_token)
    try:
        action(_Actor(web_of(request), session.user.username, client_address(request)))
    except CoreLabError as error:
        raise HTTPException(status_code=refused, detail=str(error)) from None
    return RedirectResponse(f"/exams/{exam_id}#{anchor}", status_code=303)


@router.post("/exams/{exam_id}/core-lab/send")
def send(
    request: Request,
    exam_id: ObjectId,
    session: Annotated[Session, Depends(require(*ACTING))],
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    again: Annotated[bool, Form()] = False,
) -> Response:
    """Copy, check and send the exam's images (takes as long as the PACS takes)."""

    def act(a: _Actor) -> object:
        return send_copy(
            a.web.engine, a.web.settings, exam_id, by=a.by, client=a.client, catalogue=a.web.catalogue,
            clock=a.web.clock, again=again, evaluator=a.evaluator(),
        )  # fmt: skip

    return _act(request, session, exam_id, csrf_token, act)


@router.post("/exams/{exam_id}/core-lab/uploaded")
def uploaded(
    request: Request,
    exam_id: ObjectId,
    session: Annotated[Session, Depends(require(*ACTING))],
    confirmation: Annotated[str, Form(min_length=1, max_length=120)],
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Record a manual upload the sponsor confirmed."""

    def act(a: _Actor) -> None:
        record_upload(
            a.web.engine, exam_id, confirmation, by=a.by, client=a.client, now=a.web.clock(),
            evaluator=a.evaluator(),
        )  # fmt: skip

    return _act(request, session, exam_id, csrf_token, act)


@router.post("/exams/{exam_id}/core-lab/queries")
def log_a_query(
    request: Request,
    exam_id: ObjectId,
    session: Annotated[Session, Depends(require(*ACTING))],
    received_on: Annotated[str, Form(max_length=10)],
    answer_due: Annotated[str, Form(max_length=10)],
    text: Annotated[str, Form(min_length=1, max_length=2000)],
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Log a core lab's query about the exam (its text is kept for the dashboard only)."""
    received, due = parse_day(received_on), parse_day(answer_due)
    if received is None or due is None:
        raise HTTPException(status_code=422, detail="give both dates as YYYY-MM-DD")

    def act(a: _Actor) -> object:
        return log_core_lab_query(
            a.web.engine, exam_id, received_on=received, answer_due=due, text=text, by=a.by,
            client=a.client, now=a.web.clock(), evaluator=a.evaluator(),
        )  # fmt: skip

    return _act(request, session, exam_id, csrf_token, act, anchor="core-lab-queries", refused=422)


@router.post("/exams/{exam_id}/core-lab/queries/{query_id}/answer")
def answer_a_query(
    request: Request,
    exam_id: ObjectId,
    query_id: ObjectId,
    session: Annotated[Session, Depends(require(*ACTING))],
    answer: Annotated[str, Form(min_length=1, max_length=2000)],
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    def act(a: _Actor) -> None:
        answer_core_lab_query(
            a.web.engine, exam_id, query_id, answer, by=a.by, client=a.client, now=a.web.clock(),
            evaluator=a.evaluator(),
        )  # fmt: skip

    return _act(request, session, exam_id, csrf_token, act, anchor="core-lab-queries")


@router.post("/exams/{exam_id}/core-lab/accepted")
def accepted(
    request: Request,
    exam_id: ObjectId,
    session: Annotated[Session, Depends(require(*ACTING))],
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    def act(a: _Actor) -> None:
        record_acceptance(a.web.engine, exam_id, by=a.by, client=a.client, now=a.web.clock())

    return _act(request, session, exam_id, csrf_token, act)


@router.get("/exams/{exam_id}/core-lab/form")
def transmittal_form(
    request: Request, exam_id: ObjectId, session: Annotated[Session, Depends(require(*OFFICE))]
) -> Response:
    """The exam's data transmittal form: to fill in (coordinators), or as completed (printable)."""
    web = web_of(request)
    with autocommit(web.engine) as conn:
        found = visible_exam(conn, session.user, exam_id)
        submission = visible_submission(conn, session, exam_id) if found is not None else None
        if found is None or submission is None:
            raise HTTPException(status_code=404)
        trial = web.catalogue.trials(conn, [submission.trial]).get(submission.trial)
        if trial is None or trial.core_lab is None:
            raise HTTPException(status_code=404)
        kept = submission.form
        values = kept["prefilled"] if kept else prefilled(conn, trial, submission, found[0])
        record_audit(
            conn,
            web.clock(),
            session.user.username,
            "view",
            "core_lab_form",
            exam_id,
            client_address(request),
        )
    editable = kept is None and session.user.role in ACTING
    context = {**values, "entered": kept["entered"] if kept else {}, "editable": editable}
    form_html = Markup(web.renderer.render(f"transmittal/{trial.core_lab.form or 'default.html'}", context))  # noqa: S704
    kept_at = datetime.fromisoformat(kept["completed_at"]) if kept else None
    page = {
        "exam_id": exam_id,
        "form_html": form_html,
        "editable": editable,
        "kept": kept,
        "kept_at": kept_at,
    }
    return web.page(request, session, "transmittal.html", page)


@router.post("/exams/{exam_id}/core-lab/form")
async def complete_transmittal_form(
    request: Request, exam_id: ObjectId, session: Annotated[Session, Depends(require(*ACTING))]
) -> Response:
    """Keep the completed form with the submission (once; audited without its entries)."""
    posted = await request.form()
    token = posted.get("csrf_token")
    entered = {
        key.removeprefix("field_"): value.strip()[:500]
        for key, value in posted.items()
        if key.startswith("field_") and isinstance(value, str) and len(key) <= 60
    }
    if len(entered) > FIELD_LIMIT:
        raise HTTPException(status_code=422, detail=f"a form keeps at most {FIELD_LIMIT} fields")
    await run_in_threadpool(_acting_on, request, session, exam_id, token if isinstance(token, str) else "")
    await run_in_threadpool(_complete, request, session, exam_id, entered)
    return RedirectResponse(f"/exams/{exam_id}/core-lab/form", status_code=303)


def _complete(request: Request, session: Session, exam_id: int, entered: dict[str, str]) -> None:
    web = web_of(request)
    now = web.clock()
    with web.engine.begin() as conn:
        submission = submission_for(conn, exam_id)
        exam = visible_exam(conn, session.user, exam_id)
        trial = web.catalogue.trials(conn, [submission.trial]).get(submission.trial) if submission else None
        if submission is None or exam is None or trial is None or trial.core_lab is None:
            raise HTTPException(status_code=404)
        if submission.form is not None:
            raise HTTPException(status_code=409, detail="this form was completed already")
        kept = completed(prefilled(conn, trial, submission, exam[0]), entered, session.user.username, now)
        save_form(conn, exam_id, kept, now)
        detail = f"{sum(1 for value in entered.values() if value)} field(s) filled in"
        record_audit(conn, now, session.user.username, "core_lab_form_completed", "exam", exam_id,
                     client_address(request), detail)  # fmt: skip
