"""Who is asking: session cookies, the trusted proxy's header, CSRF tokens, security headers.

Identity comes from one of two places, checked in this order:

1. the configured SSO header (``[web] sso_header``), believed only when the TCP peer is one
   of ``[web] trusted_proxies``: anyone else who sends it is ignored, exactly as if the
   header were absent (a forged header sent straight to the app port signs nobody in);
2. the session cookie, which carries only a random session id (the session lives in the
   ``web_sessions`` table).

A proxy-authenticated request without a live session for that account opens one (a new id),
so forms carry a CSRF token either way.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import unquote_plus

from fastapi import HTTPException, Path, Request
from sqlalchemy import Engine
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitor.config import WebSettings
from monitor.store.accounts import (
    Session,
    SessionPolicy,
    find_user,
    open_session,
    record_audit,
    resume_session,
)
from monitor.store.database import autocommit
from monitor.web.cache import CHANGED_COOKIE, READ_YOUR_CHANGES
from monitor.web.peer import Network, Peer, parse_networks, resolve_peer

# A store row id in a URL: bounded so no integer reaches the database unrepresentable (a 500).
ObjectId = Annotated[int, Path(ge=0, le=2**63 - 1)]

COOKIE = "hiro_session"
LOGIN_COOKIE = "hiro_login_csrf"  # double-submit token of the sign-in form (no session yet)

# default-src 'self' and no inline script: the pages work without JavaScript; the one
# script (print button) is a static file.
CSP = "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
# Answers that carry no PHI may be cached; everything else is no-store.
_CACHEABLE = ("/healthz", "/metrics", "/static/")


class NotSignedIn(Exception):
    """The request carries no live session (pages redirect to the sign-in form, the API says 401)."""


class Forbidden(Exception):
    """The account's role may not use this page at all (403); objects out of scope are 404."""


_READING = ("GET", "HEAD", "OPTIONS")


def _carries_changed_cookie(scope: Scope) -> bool:
    """Whether the request carries :data:`CHANGED_COOKIE` (it changed something lately)."""
    wanted = CHANGED_COOKIE.encode() + b"="
    return any(name == b"cookie" and wanted in value for name, value in scope.get("headers", ()))


class SecurityHeaders:
    """ASGI middleware, outermost: refuses a NUL in the path or query (400: no text field
    holds one, and PostgreSQL refuses one even in a query parameter), sets the cookie of a
    session opened during the request (:meth:`Gate.session_for`, via ``request.state``),
    the security headers on every response and no-store on PHI pages; after a POST (or any
    other change) the short :data:`~monitor.web.cache.CHANGED_COOKIE`, and while a request
    carries it, :data:`~monitor.web.cache.READ_YOUR_CHANGES`.

    Plain ASGI, not ``BaseHTTPMiddleware``: that wraps every request in a task group and a
    stream, and cost about a tenth of a cached page's CPU."""

    def __init__(self, app: ASGIApp, settings: WebSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        if "\x00" in path or "\x00" in unquote_plus(scope.get("query_string", b"").decode("latin-1")):
            refusal = JSONResponse({"detail": "NUL characters are not allowed"}, status_code=400)
            await refusal(scope, receive, self._with_headers(send, scope, cacheable=False))
            return
        scope.setdefault("state", {})  # shared with request.state below, read back at the response
        changed = READ_YOUR_CHANGES.set(_carries_changed_cookie(scope))
        try:
            await self.app(scope, receive, self._with_headers(send, scope, path.startswith(_CACHEABLE)))
        finally:
            READ_YOUR_CHANGES.reset(changed)

    def _with_headers(self, send: Send, scope: Scope, cacheable: bool) -> Send:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                present = {k.lower() for k, _ in headers}  # a route may set a stricter/looser CSP
                headers.extend((k, v) for k, v in _HEADERS if k not in present)
                headers.append((b"cache-control", b"no-cache" if cacheable else b"no-store"))
                carrier = Response()
                session = scope.get("state", {}).get("new_session")
                if isinstance(session, Session):
                    set_session_cookie(carrier, session, self.settings)
                if scope.get("method") not in _READING and self.settings.page_cache_seconds > 0:
                    carrier.set_cookie(
                        CHANGED_COOKIE, "1", max_age=max(1, math.ceil(self.settings.page_cache_seconds)),
                        httponly=True, secure=self.settings.cookie_secure, samesite="lax", path="/",
                    )  # fmt: skip
                headers.extend((k, v) for k, v in carrier.raw_headers if k == b"set-cookie")
                message["headers"] = headers
            await send(message)

        return send_with_headers


@dataclass(frozen=True, slots=True)
class Gate:
    """Everything the identity checks need, built once per app."""

    engine: Engine
    settings: WebSettings
    clock: Callable[[], datetime]
    proxies: tuple[Network, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "proxies", parse_networks(self.settings.trusted_proxies))

    @property
    def policy(self) -> SessionPolicy:
        return SessionPolicy(
            idle=timedelta(minutes=self.settings.idle_timeout_minutes),
            lifetime=timedelta(hours=self.settings.session_lifetime_hours),
        )

    def peer(self, request: Request) -> Peer:
        """Who sent ``request`` (:mod:`monitor.web.peer`)."""
        connection = request.client.host if request.client else ""
        return resolve_peer(connection, request.headers.getlist("x-forwarded-for"), self.proxies)

    def session_for(self, request: Request) -> tuple[Session, bool]:
        """The request's session and whether it was opened just now (the caller sets the cookie).

        Raises :class:`NotSignedIn`.
        """
        now = self.clock()
        cookie = request.cookies.get(COOKIE, "")
        # Every request passes here: the session is read (and, twice a minute, touched) in
        # autocommit, one round trip; opening a session for the proxy's user is a transaction.
        with autocommit(self.engine) as conn:
            session = resume_session(conn, cookie, now, self.policy) if cookie else None
        header = self.settings.sso_header
        peer = self.peer(request)
        if header and peer.via_trusted_proxy:
            name = request.headers.get(header, "").strip()
            if name:
                if session is not None and session.user.username == name:
                    return session, False
                with self.engine.begin() as conn:
                    user = find_user(conn, name)
                    if user is None:
                        raise NotSignedIn
                    fresh = open_session(conn, user, now)
                    record_audit(conn, now, user.username, "sign_in.sso", client=peer.client)
                return fresh, True
        if session is None:
            raise NotSignedIn
        return session, False


def client_address(request: Request) -> str:
    """Where the request came from, for the audit trail and throttling (:mod:`monitor.web.peer`):
    the TCP peer, or, behind trusted proxies, the client they name."""
    gate: Gate | None = getattr(getattr(request.app.state, "web", None), "gate", None)
    if gate is None:
        return request.client.host if request.client else ""
    return gate.peer(request).client


def set_session_cookie(response: Response, session: Session, settings: WebSettings) -> None:
    response.set_cookie(
        COOKIE,
        session.id,
        max_age=settings.session_lifetime_hours * 3600,
        httponly=True,
        secure=settings.cookie_secure,
        samesite="lax",
        path="/",
    )


def csrf_ok(expected: str, given: Any) -> bool:
    return isinstance(given, str) and bool(expected) and secrets.compare_digest(expected, given)


def require_csrf(session: Session, given: Any) -> None:
    """Refuse (403) a form whose CSRF token is not the session's: every state-changing POST."""
    if not csrf_ok(session.csrf_token, given):
        raise HTTPException(status_code=403, detail="missing or wrong CSRF token")
