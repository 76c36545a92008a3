"""The app factory uvicorn's worker processes import (``hiro-monitor web --workers N``).

    uvicorn --factory --no-proxy-headers monitor.web.asgi:app

``--no-proxy-headers``: who the peer is is decided by :mod:`monitor.web.peer`, never by uvicorn.

Settings come from ``HIRO_CONFIG`` and the environment (``HIRO_DATABASE_URL``), as for
every other command; the store must already be migrated (``hiro-monitor init``).
"""

from __future__ import annotations

from fastapi import FastAPI

from monitor.config import load_settings
from monitor.store.database import make_engine
from monitor.web.app import create_app


def app() -> FastAPI:
    settings = load_settings()
    return create_app(settings, make_engine(settings.database.url))
