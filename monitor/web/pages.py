"""The dashboard's pages: sign-in, Upcoming, Trials, Exam (with its instruction sheet), Feed health.

Every page that shows patient data writes one audit row (who, what, from where) in the
same transaction that reads it. Objects outside the account's scope answer 404.
"""

from __future__ import annotations

import secrets
from datetime import datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy import Connection

from monitor.store.accounts import (
    Role,
    Session,
    check_password,
    end_session,
    open_session,
    record_audit,
)
from monitor.store.core_lab_queries import queries_for, query_rate
from monitor.store.dashboard import (
    exam_history,
    image_flags,
    scoped_enrolments,
    scoped_findings,
    trial_matrix,
    upcoming_exams,
    visible_exam,
    visible_trial,
)
from monitor.store.database import autocommit
from monitor.store.exams.pools import missed_enrolled
from monitor.store.images import unmatched_for_trials
from monitor.store.messages import feed_health
from monitor.store.outbox import RetryResult, outbox_health, outbox_rows, retry_failed
from monitor.store.registry.enrolments import find_entry
from monitor.store.registry.protocols import protocols_in_force
from monitor.store.trial_summary import trial_summaries
from monitor.web.conformance import exam_images
from monitor.web.context import Web, require, signed_in, web_of
from monitor.web.core_lab import visible_submission
from monitor.web.matrix import blank_reasons, matrix_rows
from monitor.web.rescheduling import SubjectSchedule, subject_schedule
from monitor.web.security import (
    LOGIN_COOKIE,
    ObjectId,
    client_address,
    csrf_ok,
    require_csrf,
    set_session_cookie,
)
from monitor.web.sheets import render_exam_sheet, sheet_content
from monitor.web.throttle import FAILED, THROTTLED, sign_in_throttle
from monitor.web.wording import STATUS_TEXT
from notifiers.base import NotifierError

router = APIRouter(include_in_schema=False)

OFFICE = (Role.ADMIN, Role.COORDINATOR, Role.VIEWER)


def _audit(request: Request, session: Session, action: str, kind: str = "", ident: Any = "") -> None:
    web = web_of(request)
    with autocommit(web.engine) as conn:
        record_audit(conn, web.clock(), session.user.username, action, kind, ident, client_address(request))


@router.get("/")
def home(session: Annotated[Session, Depends(signed_in)]) -> Response:
    first = "/messages" if session.user.role is Role.INTEGRATION else "/upcoming"
    return RedirectResponse(first, status_code=303)


@router.get("/login")
def login_form(request: Request, error: str = "") -> Response:
    token = secrets.token_urlsafe(32)
    response = web_of(request).page(request, None, "login.html", {"login_token": token, "error": error})
    response.set_cookie(
        LOGIN_COOKIE, token, httponly=True, samesite="lax", secure=web_of(request).settings.web.cookie_secure
    )
    return response


@router.post("/login")
def login(
    request: Request,
    username: Annotated[str, Form(max_length=120)],
    password: Annotated[str, Form(max_length=1000)],
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    web = web_of(request)
    if not csrf_ok(request.cookies.get(LOGIN_COOKIE, ""), csrf_token):
        raise HTTPException(status_code=403, detail="the sign-in form expired; reload it")
    now = web.clock()
    client = client_address(request)
    with web.engine.begin() as conn:
        throttle = sign_in_throttle(conn, web.settings.web, username, client, now)
        if not throttle.allowed:
            record_audit(conn, now, username[:120], THROTTLED, client=client)
    if not throttle.allowed:
        context = {"login_token": csrf_token, "error": "throttled"}
        refused = web.page(request, None, "login.html", context, 429)
        refused.headers["Retry-After"] = str(throttle.retry_after_seconds)
        return refused
    with web.engine.begin() as conn:
        user = check_password(conn, username, password)
        if user is None:
            record_audit(conn, now, username[:120], FAILED, client=client)
            session = None
        else:
            old = request.cookies.get("hiro_session")
            if old:
                end_session(conn, old)  # a new session id at every sign-in (no fixation)
            session = open_session(conn, user, now)
            record_audit(conn, now, user.username, "sign_in", client=client)
    if session is None:
        return web.page(request, None, "login.html", {"login_token": csrf_token, "error": "wrong"}, 401)
    response = RedirectResponse("/upcoming", status_code=303)
    set_session_cookie(response, session, web.settings.web)
    response.delete_cookie(LOGIN_COOKIE)
    return response


@router.post("/logout")
def logout(
    request: Request,
    session: Annotated[Session, Depends(signed_in)],
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    require_csrf(session, csrf_token)
    web = web_of(request)
    with web.engine.begin() as conn:
        end_session(conn, session.id)
        record_audit(conn, web.clock(), session.user.username, "sign_out", client=client_address(request))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie("hiro_session")
    return response


@router.get("/upcoming")
def upcoming(
    request: Request,
    session: Annotated[Session, Depends(signed_in)],
    days: int = 0,
    trial: str = "",
    modality: str = "",
    room: str = "",
    problems: bool = False,
) -> Response:
    web = web_of(request)
    zone = ZoneInfo(web.settings.site.timezone)
    days = days if 1 <= days <= 366 else web.settings.web.upcoming_days
    today = web.clock().astimezone(zone).date()
    start = datetime.combine(today, time(), zone)
    end = start + timedelta(days=days)
    user = session.user
    technologist = user.role is Role.TECHNOLOGIST
    key = ("upcoming", user.trial_scope(), user.modality_scope(), technologist,
           start, days, trial, modality, room, problems)  # fmt: skip

    def build(conn: Connection) -> tuple[Markup, int]:
        rows = upcoming_exams(
            conn, user, start, end, trial=trial or None, modality=modality or None,
            room=room or None, problems_only=problems,
        )  # fmt: skip
        by_day: dict[Any, list[Any]] = {}
        for row in rows:
            by_day.setdefault(row.start.astimezone(zone).date(), []).append(row)
        context = {"by_day": by_day, "status_text": STATUS_TEXT, "show_exam_link": not technologist}
        html = web.renderer.render("web/upcoming_days.html", context)
        return Markup(html), len(rows)  # noqa: S704  (an autoescaped template's output)

    with autocommit(web.engine) as conn:
        days_html, count = web.cache.part(conn, key, build)
        record_audit(conn, web.clock(), user.username, "view", "upcoming", "", client_address(request))
        scope = user.trial_scope()
        known = [p.trial for p in protocols_in_force(conn) if scope is None or p.trial in scope]
    context = {
        "days_html": days_html,
        "days": days,
        "filters": {"trial": trial, "modality": modality, "room": room, "problems": problems},
        "trials": known,
        "count": count,
    }
    return web.page(request, session, "upcoming.html", context)


@router.get("/trials")
def trials(request: Request, session: Annotated[Session, Depends(require(*OFFICE))]) -> Response:
    web = web_of(request)
    scope = session.user.trial_scope()
    today = web.site_date()
    with autocommit(web.engine) as conn:
        found = [p for p in protocols_in_force(conn) if scope is None or p.trial in scope]
        summaries = trial_summaries(conn, [p.trial for p in found], today)
        record_audit(conn, web.clock(), session.user.username, "view", "trials", "", client_address(request))
    return web.page(request, session, "trials.html", {"protocols": found, "summaries": summaries})


@router.get("/trials/{trial_id}")
def trial(
    request: Request, trial_id: str, session: Annotated[Session, Depends(require(*OFFICE))]
) -> Response:
    web = web_of(request)
    if not visible_trial(session.user, trial_id):
        raise HTTPException(status_code=404)
    with autocommit(web.engine) as conn:
        in_force = protocols_in_force(conn, [trial_id])
        if not in_force:
            raise HTTPException(status_code=404)
        parsed = web.catalogue.trials(conn, [trial_id], in_force=in_force).get(trial_id)

        def build(conn: Connection) -> Markup:
            matrix = trial_matrix(conn, trial_id)
            listed = scoped_enrolments(conn, session.user, trial_id)
            context = {
                "matrix": matrix,
                "matrix_rows": matrix_rows(
                    matrix, blank_reasons(parsed, listed), image_flags(conn, trial_id)
                ),
                "enrolments": listed,
            }
            html = web.renderer.render("web/trial_tables.html", context)
            return Markup(html)  # noqa: S704  (an autoescaped template's output)

        # The same for every office account that may open the trial (technologists may not).
        # The matrix shows occurrences (set by the evaluation), not exam times: feed=False.
        tables_html = web.cache.part(conn, ("trial", trial_id), build, feed=False)
        queries = query_rate(conn, trial_id) if parsed is not None and parsed.core_lab is not None else None
        record_audit(
            conn, web.clock(), session.user.username, "view", "trial", trial_id, client_address(request)
        )
    context = {
        "trial": trial_id,
        "protocol": in_force[0],
        "title": parsed.title if parsed else "",
        "amendments": [v.name for v in parsed.versions] if parsed else [],
        "tables_html": tables_html,
        "status_text": STATUS_TEXT,
        "core_lab": parsed.core_lab if parsed else None,
        "query_rate": queries,
    }
    return web.page(request, session, "trial.html", context)


@router.get("/exams/{exam_id}")
def exam(
    request: Request, exam_id: ObjectId, session: Annotated[Session, Depends(require(*OFFICE))]
) -> Response:
    web = web_of(request)
    with autocommit(web.engine) as conn:
        found = visible_exam(conn, session.user, exam_id)
        if found is None:
            raise HTTPException(status_code=404)
        row, links = found
        history = exam_history(conn, exam_id)
        problems = scoped_findings(conn, session.user, open_only=False, exam_id=exam_id)
        # Messages about this exam of the trials the account sees (a co-enrolled patient's
        # other trial stays hidden); their summaries and bodies are not shown.
        notices = outbox_rows(conn, exam_id=exam_id, trials=session.user.trial_scope())
        schedules = _reschedule_for(web, session, conn, row, problems, links.subjects)
        images = exam_images(conn, web.catalogue, exam_id, row.procedure_code or "")
        submission = visible_submission(conn, session, exam_id)
        queries = queries_for(conn, exam_id) if submission is not None else []
        record_audit(
            conn, web.clock(), session.user.username, "view", "exam", exam_id, client_address(request)
        )
    context = {
        "schedules": schedules,
        "exam": row,
        "links": links,
        "history": history,
        "findings": problems,
        "notifications": notices,
        "show_mrn": session.user.sees_mrn,
        "images": images,
        "submission": submission,
        "submission_state": submission.state(web.clock()) if submission is not None else "",
        "queries": queries,
        "today": web.site_date(),
    }
    return web.page(request, session, "exam.html", context)


def _reschedule_for(
    web: Web, session: Session, conn: Connection, row: Any, problems: list[Any], subjects: Any
) -> list[tuple[str, str, SubjectSchedule]]:
    """The rescheduling assistant for the subjects of an exam that will not serve its visit
    as booked: cancelled, a no-show, or booked outside the window."""
    out_of_window = any(f.kind in ("early", "late") and f.status == "open" for f in problems)
    if row.status not in ("cancelled", "no_show") and not out_of_window:
        return []
    found = []
    for trial_id, subject in subjects:
        entry = find_entry(conn, trial_id, subject) if visible_trial(session.user, trial_id) else None
        trial = web.catalogue.trials(conn, [trial_id]).get(trial_id) if entry is not None else None
        if entry is not None and trial is not None:
            found.append(
                (trial_id, subject, subject_schedule(conn, web.settings, trial, entry.id, web.clock()))
            )
    return found


_PRINT_BAR = (
    "<style>@media print { .no-print { display: none; } }</style>"
    '<nav class="no-print" aria-label="Sheet actions" style="margin:0 0 4mm">'
    '<button type="button" data-print>Print this sheet</button> '
    '<a href="/upcoming">Back to upcoming</a></nav><script src="/static/print.js" defer></script>'
)


_NO_TEMPLATE = "Ask the research imaging office to add the trial's sheet to the site template folder."
# Exams that will not take place: they get no instruction sheet (issue 16).
NO_SHEET = frozenset({"cancelled", "deleted", "no_show"})


@router.get("/exams/{exam_id}/sheet")
def sheet(request: Request, exam_id: ObjectId, session: Annotated[Session, Depends(signed_in)]) -> Response:
    """The printable instruction sheet (technologists too, for their modalities)."""
    web = web_of(request)
    with autocommit(web.engine) as conn:
        found = visible_exam(conn, session.user, exam_id)
        if found is not None and found[0].status in NO_SHEET:
            # A sheet printed for an exam that will not happen could be followed at the scanner.
            problem = f"the exam was {found[0].status.replace('_', ' ')}; it has no instruction sheet"
            advice = "Look for the subject's new booking."
            context = {"problem": problem, "exam_id": exam_id, "advice": advice}
            return web.page(request, session, "sheet_error.html", context, 410)
        content = (
            sheet_content(conn, exam_id, session.user, web.settings, web.renderer, web.catalogue)
            if found is not None
            else None
        )
        if content is None:
            raise HTTPException(status_code=404)
        record_audit(
            conn, web.clock(), session.user.username, "view", "sheet", exam_id, client_address(request)
        )
    try:
        html = render_exam_sheet(web.renderer, content, session.user)
    except NotifierError as exc:  # a protocol names a sheet the site has not provided: say so loudly
        context = {"problem": str(exc), "exam_id": exam_id, "advice": _NO_TEMPLATE}
        return web.page(request, session, "sheet_error.html", context, 500)
    html = html.replace("<body>", "<body>" + _PRINT_BAR, 1) if "<body>" in html else _PRINT_BAR + html
    # The sheets carry their own <style> (they are also sent as email bodies): allow inline style only.
    csp = "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    return HTMLResponse(html, headers={"Content-Security-Policy": csp})


@router.get("/feeds")
def feeds(
    request: Request,
    session: Annotated[Session, Depends(require(*OFFICE, Role.INTEGRATION))],
    retried: int = -1,
    refused: int = 0,
) -> Response:
    web = web_of(request)
    now = web.clock()
    with autocommit(web.engine) as conn:
        health = feed_health(conn, now)
        outbox = outbox_health(conn, now, session.user.trial_scope())
        # Exams of enrolled subjects whose MRN came from another identifier pool (the
        # account's trials only). They name exams and subjects by study id: audited.
        missed = missed_enrolled(conn, now, session.user.trial_scope())
        studies = unmatched_for_trials(conn, session.user.trial_scope())
        if studies:
            record_audit(
                conn, now, session.user.username, "view", "feeds", "", client_address(request),
                f"unmatched PACS studies {len(studies)}",
            )  # fmt: skip
        if missed.exams:
            record_audit(
                conn, now, session.user.username, "view", "feeds", "", client_address(request),
                "unmatched exams " + ", ".join(str(m.id) for m in missed.exams),
            )  # fmt: skip
    context = {
        "health": health, "outbox": outbox, "missed": missed, "retried": retried, "refused": refused,
        "studies": studies,
    }  # fmt: skip
    return web.page(request, session, "feeds.html", context)


def _retry(request: Request, session: Session, csrf_token: str, **which: Any) -> Response:
    """Put failed deliveries back to pending (admins; CSRF-checked; one audit row per row)."""
    require_csrf(session, csrf_token)
    web = web_of(request)
    now = web.clock()
    with web.engine.begin() as conn:
        result: RetryResult = retry_failed(conn, now, **which)
        for row in result.retried:
            record_audit(
                conn, now, session.user.username, "notification.retry", "notification", row.id,
                client_address(request), row.audit_detail(),
            )  # fmt: skip
    answer = f"/feeds?retried={len(result.retried)}&refused={len(result.refused)}#outbox"
    return RedirectResponse(answer, status_code=303)


@router.post("/feeds/outbox/{notification_id}/retry")
def retry_delivery(
    request: Request,
    notification_id: ObjectId,
    session: Annotated[Session, Depends(require(Role.ADMIN))],
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Retry one failed delivery (never one whose exam was cancelled, moved or has passed)."""
    return _retry(request, session, csrf_token, ids=[notification_id])


@router.post("/feeds/outbox/retry")
def retry_channel(
    request: Request,
    session: Annotated[Session, Depends(require(Role.ADMIN))],
    channel: Annotated[str, Form(min_length=1, max_length=16)],
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Retry every failed delivery of one channel (the same refusals as one row)."""
    return _retry(request, session, csrf_token, channel=channel)
