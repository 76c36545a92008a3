"""What every route gets: the app's :class:`Web` and the sign-in dependencies.

Routes (:mod:`monitor.web.pages`, ``review``, ``api``, ``calendar``, ``health``) import this
module; :mod:`monitor.web.app` builds the :class:`Web` and mounts the routes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import Engine

from monitor.config import Settings
from monitor.render import Renderer
from monitor.runtime import Runtime
from monitor.store.accounts import Role, Session
from monitor.store.registry.protocols import ProtocolCatalogue
from monitor.threads import store_probe_pool
from monitor.web.cache import PageCache
from monitor.web.security import Forbidden, Gate

__all__ = ["Web", "require", "signed_in", "web_of"]


@dataclass(frozen=True, slots=True)
class Web:
    """What every route needs: settings, the store, templates, the clock and the identity gate."""

    settings: Settings
    engine: Engine
    renderer: Renderer
    gate: Gate
    clock: Callable[[], datetime]
    catalogue: ProtocolCatalogue  # parsed protocols in force, kept across requests
    runtime: Runtime | None = None  # the hosting daemon's probes and metrics; None: dashboard alone
    cache: PageCache = field(default_factory=lambda: PageCache(0))  # parts of the busiest pages
    probes: Executor = field(default_factory=store_probe_pool)  # /healthz's store probe
    simulated: bool = False  # the clock is not the real time (the demo's --speed): the header says it

    def site_date(self, moment: datetime | None = None) -> date:
        """The site's calendar date at ``moment`` (default: now on the web's clock)."""
        return (moment or self.clock()).astimezone(ZoneInfo(self.settings.site.timezone)).date()

    def page(
        self,
        request: Request,
        session: Session | None,
        name: str,
        context: dict[str, Any],
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        """The template ``web/<name>`` rendered with ``context`` plus the account and CSRF token
        (and, on a simulated clock, its ``now`` for the header)."""
        full = {
            "user": session.user if session else None,
            "csrf_token": session.csrf_token if session else "",
            "path": request.url.path,
            "simulated_now": self.clock() if self.simulated else None,
            **context,
        }
        return HTMLResponse(self.renderer.render(f"web/{name}", full), status_code=status, headers=headers)


def web_of(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


def signed_in(request: Request) -> Session:
    """Dependency: the request's live session. Raises :class:`NotSignedIn`."""
    session, fresh = web_of(request).gate.session_for(request)
    if fresh:
        request.state.new_session = session
    return session


def require(*roles: Role) -> Callable[[Session], Session]:
    """Dependency: a live session whose role is one of ``roles`` (else :class:`Forbidden`)."""

    def check(session: Session = Depends(signed_in)) -> Session:  # noqa: B008
        if session.user.role not in roles:
            raise Forbidden
        return session

    return check
