"""Findings: the office's work queue, its CSV export, and acknowledging or resolving findings.

The engine owns a finding's ``status`` (it opens and resolves findings as the schedule
changes, DESIGN "Finding"); a person's review is kept beside it, in the audit trail:
``finding.acknowledge`` / ``finding.resolve`` rows with the comment, who and when. The
page shows each finding's latest review. A review never changes what the engine concludes.

The list is :mod:`monitor.store.worklist`'s: open findings, most urgent first, filtered in
the URL (so a filtered list can be bookmarked and sent), 100 a page, with counts beside
each filter value. Reviews are ticked rows and one comment (one audit row each, with the
review before and after); the CSV is the filtered list, every page of it.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy import Connection

from monitor.store.accounts import Role, Session, latest_reviews, record_audit
from monitor.store.dashboard import data_version, visible_finding
from monitor.store.database import autocommit
from monitor.store.worklist import STATUSES, FindingFilter, Status, counted, queue_rows
from monitor.web.context import require, web_of
from monitor.web.formats import csv_download, parse_day
from monitor.web.security import ObjectId, client_address, require_csrf

router = APIRouter(include_in_schema=False)

OFFICE = (Role.ADMIN, Role.COORDINATOR, Role.VIEWER)
REVIEW_ACTIONS = {"acknowledge": "finding.acknowledge", "resolve": "finding.resolve"}
PAGE_SIZE = 100
CSV_COLUMNS = ("id", "trial", "subject", "occurrence_label", "kind", "severity", "status", "exam_id",
               "window_start", "window_end", "detail", "opened_at")  # fmt: skip


def finding_filter(request: Request) -> FindingFilter:
    """The filters of the findings list, from its URL (``all=true``: the older link for every
    status). Values outside what the list knows are ignored, not errors: a bookmark keeps working."""
    query = request.query_params
    asked = query.get("status") or ("all" if query.get("all") == "true" else "open")
    status: Status = next((known for known in STATUSES if known == asked), "open")
    return FindingFilter(
        status=status,
        trial=query.get("trial", "")[:64],
        kind=query.get("kind", "")[:32],
        severity=query.get("severity", "")[:16],
        subject=query.get("subject", "").strip()[:64],
        window_from=parse_day(query.get("window_from", "")),
        window_to=parse_day(query.get("window_to", "")),
    )


def filter_query(wanted: FindingFilter, **changes: object) -> str:
    """The URL query of ``wanted`` with ``changes`` applied; empty values are left out."""
    values: dict[str, object] = {
        "status": "" if wanted.status == "open" else wanted.status,
        "trial": wanted.trial,
        "kind": wanted.kind,
        "severity": wanted.severity,
        "subject": wanted.subject,
        "window_from": wanted.window_from.isoformat() if wanted.window_from else "",
        "window_to": wanted.window_to.isoformat() if wanted.window_to else "",
    }
    values.update(changes)
    return urlencode({name: value for name, value in values.items() if value not in ("", None, 1)})


@router.get("/findings")
def findings_page(request: Request, session: Annotated[Session, Depends(require(*OFFICE))]) -> Response:
    """The work queue: open findings, most urgent first, filtered in the URL (module doc)."""
    web = web_of(request)
    wanted = finding_filter(request)
    page = max(1, min(_int(request.query_params.get("page", "1")), 100_000))
    today = web.site_date()
    with autocommit(web.engine) as conn:

        def build(conn: Connection) -> tuple[list[Any], int, dict[str, dict[str, int]]]:
            rows = queue_rows(
                conn, session.user, wanted, today, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
            )
            total, counts = counted(conn, session.user, wanted)
            return rows, total, counts

        # Kept while no finding, occurrence, enrolment or protocol changed (monitor/web/cache.py):
        # the counts read every finding in scope. Reviews are read afresh for the page's rows,
        # whose markup is kept while both the data and those reviews are unchanged.
        scope = (session.user.trial_scope(), session.user.modality_scope())
        key = ("findings", scope, wanted, page, today)
        version = data_version(conn, feed=False) if web.cache.enabled else ()
        rows, total, counts = web.cache.get(key, version, lambda: build(conn))
        reviews = latest_reviews(conn, [row.id for row in rows], list(REVIEW_ACTIONS.values()))
        reviewed = tuple(sorted((finding_id, review.id) for finding_id, review in reviews.items()))
        may_change = session.user.may_change
        rows_html = web.cache.get(
            (*key, "rows", may_change),
            (version, reviewed),
            lambda: Markup(  # noqa: S704  (an autoescaped template's output)
                web.renderer.render(
                    "web/findings_rows.html",
                    {"rows": rows, "reviews": reviews, "today": today, "may_change": may_change},
                )
            ),
        )
        record_audit(
            conn, web.clock(), session.user.username, "view", "findings", wanted.trial,
            client_address(request), filter_query(wanted),
        )  # fmt: skip
    context = {
        "rows": rows,
        "total": total,
        "page": page,
        "pages": max(1, -(-total // PAGE_SIZE)),
        "rows_html": rows_html,
        "wanted": wanted,
        "counts": counts,
        "statuses": STATUSES,
        "today": today,
        "query": filter_query(wanted),
        "link": lambda **changes: "/findings?" + filter_query(wanted, **changes),
    }
    return web.page(request, session, "findings.html", context)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 1


@router.get("/findings.csv")
def findings_csv(request: Request, session: Annotated[Session, Depends(require(*OFFICE))]) -> Response:
    """The list the page shows under the same filters and in the same order, every page of it."""
    web = web_of(request)
    wanted = finding_filter(request)
    today = web.site_date()
    with autocommit(web.engine) as conn:
        rows = queue_rows(conn, session.user, wanted, today, limit=None)
        reviews = latest_reviews(conn, [row.id for row in rows], list(REVIEW_ACTIONS.values()))
        record_audit(
            conn, web.clock(), session.user.username, "export", "findings", wanted.trial,
            client_address(request), filter_query(wanted),
        )  # fmt: skip
    return csv_download(
        "findings.csv",
        [*CSV_COLUMNS, "review", "reviewed_by", "reviewed_at", "comment"],
        (_csv_row(row, reviews.get(row.id)) for row in rows),
    )


def _csv_row(row: Any, review: Any | None) -> list[str]:
    values = ["" if row._mapping[c] is None else str(row._mapping[c]) for c in CSV_COLUMNS]
    if review is None:
        return [*values, "", "", "", ""]
    return [*values, review.action.split(".")[1], review.username, review.at.isoformat(), review.detail]


@router.post("/findings/review")
def review_many(
    request: Request,
    session: Annotated[Session, Depends(require(Role.ADMIN, Role.COORDINATOR))],
    action: Annotated[str, Form(max_length=20)],
    finding: Annotated[list[int], Form()] = [],  # noqa: B006 (FastAPI reads the default, never mutates it)
    comment: Annotated[str, Form(max_length=2000)] = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    back: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Acknowledge or resolve the ticked findings with one comment (CSRF-checked; one audit
    row each, saying what the review was before). A finding outside the account's trials
    is refused whole: nothing is recorded."""
    require_csrf(session, csrf_token)
    if action not in REVIEW_ACTIONS:
        raise HTTPException(status_code=422, detail="action must be acknowledge or resolve")
    chosen = sorted(set(finding))[:PAGE_SIZE]
    if not chosen:
        raise HTTPException(status_code=422, detail="tick at least one finding")
    web = web_of(request)
    with web.engine.begin() as conn:
        if any(visible_finding(conn, session.user, finding_id) is None for finding_id in chosen):
            raise HTTPException(status_code=404)
        before = latest_reviews(conn, chosen, list(REVIEW_ACTIONS.values()))
        for finding_id in chosen:
            _record_review(request, session, conn, finding_id, action, comment, before.get(finding_id))
    target = back if back.startswith("/findings") and "//" not in back and "\\" not in back else "/findings"
    return RedirectResponse(target, status_code=303)


def _record_review(
    request: Request, session: Session, conn: Connection, finding_id: int, action: str, comment: str,
    before: Any | None,
) -> None:  # fmt: skip
    """One review's audit row: the comment is its detail (the page shows it), with the
    finding's review before and after."""
    web = web_of(request)
    was = before.action.split(".")[1] + "d" if before is not None else "none"
    record_audit(
        conn, web.clock(), session.user.username, REVIEW_ACTIONS[action], "finding", finding_id,
        client_address(request), comment.replace("\x00", "").strip(), before=was,
        after=REVIEW_ACTIONS[action].split(".")[1] + "d",
    )  # fmt: skip


@router.post("/findings/{finding_id}/review")
def review(
    request: Request,
    finding_id: ObjectId,
    session: Annotated[Session, Depends(require(Role.ADMIN, Role.COORDINATOR))],
    action: Annotated[str, Form(max_length=20)],
    comment: Annotated[str, Form(max_length=2000)] = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Acknowledge or resolve a finding with a comment (CSRF-checked, audited)."""
    require_csrf(session, csrf_token)
    if action not in REVIEW_ACTIONS:
        raise HTTPException(status_code=422, detail="action must be acknowledge or resolve")
    web = web_of(request)
    with web.engine.begin() as conn:
        if visible_finding(conn, session.user, finding_id) is None:
            raise HTTPException(status_code=404)
        before = latest_reviews(conn, [finding_id], list(REVIEW_ACTIONS.values())).get(finding_id)
        _record_review(request, session, conn, finding_id, action, comment, before)
    return RedirectResponse(f"/findings#finding-{finding_id}", status_code=303)
