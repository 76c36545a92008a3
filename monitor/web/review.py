"""Findings: the open deviations, their CSV export, and acknowledging or resolving one.

The engine owns a finding's ``status`` (it opens and resolves findings as the schedule
changes, DESIGN "Finding"); a person's review is kept beside it, in the audit trail:
``finding.acknowledge`` / ``finding.resolve`` rows with the comment, who and when. The
page shows each finding's latest review. A review never changes what the engine concludes.
"""

from __future__ import annotations

import csv
import io
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from monitor.store.accounts import Role, Session, latest_reviews, record_audit
from monitor.store.dashboard import scoped_findings, visible_finding
from monitor.web.context import require, web_of
from monitor.web.security import ObjectId, client_address, csrf_ok

router = APIRouter(include_in_schema=False)

OFFICE = (Role.ADMIN, Role.COORDINATOR, Role.VIEWER)
REVIEW_ACTIONS = {"acknowledge": "finding.acknowledge", "resolve": "finding.resolve"}
SORTS = ("window", "trial", "severity", "kind", "opened")


@router.get("/findings")
def findings_page(
    request: Request,
    session: Annotated[Session, Depends(require(*OFFICE))],
    sort: str = "window",
    trial: str = "",
    all: bool = False,
) -> Response:
    web = web_of(request)
    sort = sort if sort in SORTS else "window"
    with web.engine.begin() as conn:
        rows = scoped_findings(conn, session.user, open_only=not all, trial=trial or None, sort=sort)
        reviews = latest_reviews(conn, [row.id for row in rows], list(REVIEW_ACTIONS.values()))
        record_audit(
            conn, web.clock(), session.user.username, "view", "findings", trial, client_address(request)
        )
    context = {"rows": rows, "reviews": reviews, "sort": sort, "sorts": SORTS, "trial": trial, "all": all}
    return web.page(request, session, "findings.html", context)


@router.get("/findings.csv")
def findings_csv(
    request: Request,
    session: Annotated[Session, Depends(require(*OFFICE))],
    trial: str = "",
    all: bool = False,
) -> Response:
    web = web_of(request)
    with web.engine.begin() as conn:
        rows = scoped_findings(conn, session.user, open_only=not all, trial=trial or None, sort="trial")
        reviews = latest_reviews(conn, [row.id for row in rows], list(REVIEW_ACTIONS.values()))
        record_audit(
            conn, web.clock(), session.user.username, "export", "findings", trial, client_address(request)
        )
    out = io.StringIO()
    writer = csv.writer(out)
    columns = ["id", "trial", "subject", "occurrence_label", "kind", "severity", "status", "exam_id",
               "window_start", "window_end", "detail", "opened_at"]  # fmt: skip
    writer.writerow([*columns, "review", "reviewed_by", "reviewed_at", "comment"])
    for row in rows:
        review = reviews.get(row.id)
        values = ["" if row._mapping[c] is None else str(row._mapping[c]) for c in columns]
        # A cell starting with = + - @ is a formula to a spreadsheet (CSV injection): quote it.
        values = [
            "'" + v if v[:1] in ("=", "+", "-", "@") and c == "detail" else v
            for v, c in zip(values, columns, strict=True)
        ]
        if review is not None:
            values += [review.action.split(".")[1], review.username, review.at.isoformat(), review.detail]
        else:
            values += ["", "", "", ""]
        writer.writerow(values)
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="findings.csv"'},
    )


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
    if not csrf_ok(session.csrf_token, csrf_token):
        raise HTTPException(status_code=403, detail="missing or wrong CSRF token")
    if action not in REVIEW_ACTIONS:
        raise HTTPException(status_code=422, detail="action must be acknowledge or resolve")
    web = web_of(request)
    with web.engine.begin() as conn:
        if visible_finding(conn, session.user, finding_id) is None:
            raise HTTPException(status_code=404)
        record_audit(
            conn, web.clock(), session.user.username, REVIEW_ACTIONS[action], "finding", finding_id,
            client_address(request), comment.replace("\x00", "").strip(),
        )  # fmt: skip
    return RedirectResponse(f"/findings#finding-{finding_id}", status_code=303)
