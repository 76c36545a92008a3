"""The dashboard's FastAPI application: :func:`create_app` and :func:`serve`.

    app = create_app(settings, engine)          # an ASGI app; the caller owns the engine
    await serve(app, settings.web)               # uvicorn on the running asyncio loop

The store must be migrated (``monitor.store.database.upgrade``) before the first request.
Pages are server-rendered (templates under ``templates/web/``, the site folder first) and
readable without JavaScript; ``/api/`` answers JSON with the same sign-in and scoping.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from monitor.clock import SYSTEM_CLOCK
from monitor.config import Settings, WebSettings
from monitor.render import Renderer
from monitor.runtime import Runtime
from monitor.store.registry.protocols import ProtocolCatalogue
from monitor.threads import page_threads
from monitor.web import (
    accounts,
    api,
    audit,
    calendar,
    core_lab,
    health,
    messages,
    pages,
    protocols,
    registry,
    review,
    today,
)
from monitor.web.cache import PageCache
from monitor.web.context import Web, web_of
from monitor.web.security import Forbidden, Gate, NotSignedIn, SecurityHeaders

if TYPE_CHECKING:
    import uvicorn

__all__ = ["EmbeddedWeb", "create_app", "serve", "uvicorn_config"]


def _static_dir() -> Path:
    return Path(str(resources.files("templates").joinpath("web/static")))


def create_app(
    settings: Settings,
    engine: Engine,
    *,
    clock: Callable[[], datetime] | None = None,
    runtime: Runtime | None = None,
) -> FastAPI:
    """The dashboard and API for ``settings`` over ``engine``; ``clock`` is for tests and the demo.

    A clock that runs faster than real time (a ``speed`` other than 1: the demo's
    ``--speed``) is shown in every page's header as the simulated time.
    ``runtime`` is the hosting daemon's (``hiro-monitor run``): ``/healthz`` then checks its
    listener, writer and scheduler, and ``/metrics`` adds its ACK latency and job counters.
    """
    now = clock or SYSTEM_CLOCK
    app = FastAPI(
        title="hiro-monitor",
        description="Research imaging compliance: exams, findings, trials and enrolments.",
        version="1",
        docs_url=None,  # the Swagger page loads scripts from a CDN, which the CSP forbids
        redoc_url=None,
    )
    app.state.web = Web(
        settings=settings,
        engine=engine,
        renderer=Renderer.from_settings(settings),
        gate=Gate(engine, settings.web, now),
        clock=now,
        catalogue=ProtocolCatalogue(),
        runtime=runtime,
        cache=PageCache(settings.web.page_cache_seconds),
        simulated=getattr(now, "speed", 1.0) != 1,
    )
    app.add_middleware(PageThreads, threads=settings.web.threads)
    app.add_middleware(SecurityHeaders, settings=settings.web)

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, exc: NotSignedIn) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "sign in first"}, status_code=401)
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "not allowed for this role"}, status_code=403)
        return error_response(request, 403, "not allowed for your role", None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(request, exc.status_code, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # What failed validation is not echoed: it is the sender's input, which can be PHI.
        return error_response(request, 422, "some of what was sent is not valid", None)

    app.mount("/static", StaticFiles(directory=_static_dir()), name="static")
    for module in (
        health,
        pages,
        today,
        review,
        registry,
        protocols,
        audit,
        accounts,
        api,
        calendar,
        core_lab,
        messages,
    ):
        app.include_router(module.router)
    return app


class PageThreads:
    """ASGI middleware: holds the running loop to ``[web] threads`` page threads
    (:func:`monitor.threads.page_threads`; a no-op once set on that loop)."""

    def __init__(self, app: ASGIApp, threads: int) -> None:
        self.app = app
        self.threads = threads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        page_threads(self.threads)
        await self.app(scope, receive, send)


_ERRORS = {
    400: ("That request could not be read", "The request was not understood."),
    403: ("Not allowed", "This is not allowed for your account."),
    404: ("Not found", "There is no such page, or it is not one of your trials."),
    405: ("Not allowed here", "That page cannot be used that way."),
    409: ("Not done", "That could not be done now."),
    422: ("Not accepted", "Some of what was sent is not valid."),
    429: ("Too many attempts", "Too many attempts: wait a little and try again."),
}


def error_response(
    request: Request, status: int, detail: object, headers: Mapping[str, str] | None
) -> Response:
    """An error as the asker reads it: JSON for the API and the health check, an HTML page
    (in the dashboard's frame, with the project's own words) for everything a person opens.
    A ``detail`` is shown only when it is a sentence of ours (a string); headers such as
    ``Retry-After`` are kept."""
    path = request.url.path
    if path.startswith("/api/") or path in ("/healthz", "/metrics"):
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)
    title, message = _ERRORS.get(status, ("Something went wrong", "The request could not be completed."))
    if isinstance(detail, str) and status in (400, 403, 409, 422) and detail:
        message = detail[:1].upper() + detail[1:] + "."
    web = web_of(request)
    return web.page(request, None, "error.html", {"title": title, "message": message}, status, headers)


async def serve(app: FastAPI, settings: WebSettings) -> None:
    """Serve ``app`` with uvicorn on the running loop until cancelled (``hiro-monitor run`` embeds this)."""
    import uvicorn

    server = uvicorn.Server(uvicorn_config(app, settings))
    await server.serve()


def uvicorn_config(app: FastAPI, settings: WebSettings) -> uvicorn.Config:
    """How the project runs uvicorn, in one place.

    ``proxy_headers=False``: uvicorn would otherwise replace the client address with the
    last ``X-Forwarded-For`` entry of any request from 127.0.0.1 (its default
    ``forwarded_allow_ips``), before :mod:`monitor.web.peer` can check that the peer is a
    trusted proxy: a forged header then signed a caller in as anyone.
    """
    import uvicorn

    return uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="warning", access_log=False,
        lifespan="off", proxy_headers=False,
    )  # fmt: skip


class EmbeddedWeb:
    """The dashboard inside ``hiro-monitor run``: uvicorn on the daemon's own event loop.

    uvicorn's ``Server.serve`` installs its own SIGINT/SIGTERM handlers, which would take
    the daemon's graceful shutdown away from it; here the daemon keeps the signals and
    stops the web server itself (:meth:`stop`).
    """

    def __init__(self, app: FastAPI, settings: WebSettings) -> None:
        import uvicorn

        class _Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        self.server = _Server(uvicorn_config(app, settings))
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0); RuntimeError before :meth:`start`."""
        if not self.server.started or not self.server.servers:
            raise RuntimeError("the web server has not started")
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    async def start(self, timeout: float = 10.0) -> None:
        """Bind and start serving; raises RuntimeError when it does not come up (port taken)."""
        self._task = asyncio.create_task(self.server.serve(), name="web")
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.server.started:
            if self._task.done() or asyncio.get_running_loop().time() > deadline:
                raise RuntimeError("the web server did not start (is the port in use?)")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Finish open requests and close (uvicorn's own graceful shutdown)."""
        if self._task is not None:
            self.server.should_exit = True
            await asyncio.gather(self._task, return_exceptions=True)
