"""The app factory uvicorn's worker processes import (``hiro-monitor web --workers N``).

    uvicorn --factory monitor.web.asgi:app

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
