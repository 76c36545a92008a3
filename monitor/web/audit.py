"""The audit trail (admins): every view of patient data, sign-in, review, retry and export,
filtered by user, object, action and the site's days, and exported as CSV.

The export is itself audited (``export``/``audit``). Dates are the site's days: "from
2026-03-08 to 2026-03-08" is that whole local day, whatever its length (DST).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from monitor.store.accounts import Role, Session, audit_trail, record_audit
from monitor.store.database import autocommit
from monitor.web.context import Web, require, web_of
from monitor.web.formats import csv_download, parse_day
from monitor.web.security import client_address

router = APIRouter(include_in_schema=False)

PAGE_ROWS = 100
CSV_ROWS = 100_000
COLUMNS = ("at", "username", "action", "object_type", "object_id", "client", "detail", "before", "after")


def _filters(web: Web, query: Any) -> tuple[dict[str, str], dict[str, Any]]:
    """The form's values as typed, and ``audit_trail``'s arguments (local days -> UTC)."""
    names = ("username", "object_type", "action", "from", "to")
    shown = {name: str(query.get(name, ""))[:120] for name in names}
    zone = ZoneInfo(web.settings.site.timezone)
    first, last = parse_day(shown["from"]), parse_day(shown["to"])
    since = datetime.combine(first, time(), zone) if first else None
    until = datetime.combine(last + timedelta(days=1), time(), zone) if last else None
    return shown, {
        "username": shown["username"],
        "object_type": shown["object_type"],
        "action": shown["action"],
        "since": since,
        "until": until,
    }


@router.get("/audit")
def audit(request: Request, session: Annotated[Session, Depends(require(Role.ADMIN))]) -> Response:
    web = web_of(request)
    shown, wanted = _filters(web, request.query_params)
    older = request.query_params.get("older_than", "")
    with autocommit(web.engine) as conn:
        rows = audit_trail(
            conn, **wanted, older_than=int(older[:18]) if older.isdigit() else None, limit=PAGE_ROWS
        )  # read first: the page does not list its own viewing
        record_audit(conn, web.clock(), session.user.username, "view", "audit", "", client_address(request),
                     urlencode({k: v for k, v in shown.items() if v}))  # fmt: skip
    context = {
        "rows": rows,
        "filters": shown,
        "limit": PAGE_ROWS,
        "csv_query": urlencode({k: v for k, v in shown.items() if v}),
        "older": f"/audit?{urlencode({**{k: v for k, v in shown.items() if v}, 'older_than': rows[-1].id})}"
        if len(rows) == PAGE_ROWS
        else "",
    }
    return web.page(request, session, "audit.html", context)


@router.get("/audit.csv")
def audit_csv(request: Request, session: Annotated[Session, Depends(require(Role.ADMIN))]) -> Response:
    """The filtered trail, newest first, up to ``CSV_ROWS`` rows."""
    web = web_of(request)
    _, wanted = _filters(web, request.query_params)
    with autocommit(web.engine) as conn:
        rows = audit_trail(conn, **wanted, limit=CSV_ROWS)
        record_audit(conn, web.clock(), session.user.username, "export", "audit", "", client_address(request))
    values = ([row.at.isoformat(), *(str(row._mapping[name] or "") for name in COLUMNS[1:])] for row in rows)
    return csv_download("audit.csv", COLUMNS, values)
