"""Today (coordinators and admins): what to act on now, each item with its next step.

The lists are :mod:`monitor.store.today`'s; the words of each next step are
:data:`monitor.web.wording.NEXT_STEP`'s. Viewing it is audited like every page that names
subjects.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from markupsafe import Markup
from sqlalchemy import Connection

from monitor.store.accounts import Role, Session, record_audit
from monitor.store.database import autocommit
from monitor.store.today import today_for
from monitor.web.context import require, web_of
from monitor.web.security import client_address
from monitor.web.wording import NEXT_STEP

router = APIRouter(include_in_schema=False)

SOON_HOURS = 72


@router.get("/today")
def today(
    request: Request, session: Annotated[Session, Depends(require(Role.ADMIN, Role.COORDINATOR, Role.VIEWER))]
) -> Response:
    web = web_of(request)
    now = web.clock()
    day = web.site_date(now)
    with autocommit(web.engine) as conn:
        # Kept while nothing it shows changed, exams' times included (monitor/web/cache.py),
        # and for at most [web] page_cache_seconds: "the next 72 hours" moves with the clock.
        scope = (session.user.trial_scope(), session.user.modality_scope())

        def build(conn: Connection) -> Markup:
            lists = today_for(conn, session.user, now, day, hours=SOON_HOURS)
            context = {"today": lists, "day": day, "hours": SOON_HOURS, "next_step": NEXT_STEP}
            return Markup(web.renderer.render("web/today_lists.html", context))  # noqa: S704  (autoescaped)

        lists_html = web.cache.part(conn, ("today", scope, day), build)
        record_audit(conn, now, session.user.username, "view", "today", "", client_address(request))
    return web.page(request, session, "today.html", {"lists_html": lists_html})
