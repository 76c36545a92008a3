"""Engines and migrations.

SQLite is the embedded default: WAL so that readers (dashboard, CLI) never block the feed's
writer, and ``synchronous=FULL`` so that a committed transaction survives power loss: an
AA acknowledgement is a promise that the message is stored (DESIGN invariant 1).
PostgreSQL is the production store; its defaults (``synchronous_commit=on``) keep the
same promise.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError

MIGRATIONS = Path(__file__).with_name("migrations")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with the store's connection settings applied."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    # A server that does not answer fails a connection in 10 s instead of hanging the
    # writer (which then answers AR) or a page; a URL's own connect_timeout wins.
    if "connect_timeout" not in parsed.query:
        kwargs["connect_args"] = {"connect_timeout": 10, **kwargs.get("connect_args", {})}
    engine = create_engine(url, **kwargs)
    ping_when_idle(engine, PING_AFTER_IDLE_SECONDS)
    return engine


# A pooled PostgreSQL connection idle this long is pinged before use (a server restarted or
# failed over meanwhile is found there, and a new connection taken). One used more recently
# is not: pinging every checkout cost a round trip per statement group, a tenth of a cached
# dashboard page. If the server went away within that second, the one request that meets
# the dead connection fails, and SQLAlchemy then discards every connection of the pool.
PING_AFTER_IDLE_SECONDS = 1.0


def ping_when_idle(engine: Engine, idle_seconds: float) -> None:
    """SQLAlchemy's pre-ping, only for connections returned to the pool ``idle_seconds`` ago
    or more (or never used); a failed ping makes the pool take another connection."""

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get("returned_at")
        if returned is not None and time.monotonic() - returned < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # any failure: the pool retries with a fresh connection
            raise DisconnectionError("the pooled connection did not answer a ping") from error


@contextmanager
def autocommit(engine: Engine) -> Iterator[Connection]:
    """A connection on which each statement commits by itself: for a request that reads and
    appends an audit row or two. No transaction is opened, so none is committed or rolled
    back at the end: two round trips fewer than ``engine.begin()`` on PostgreSQL, whose
    default isolation (read committed) gives each statement its own snapshot either way."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        yield conn


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations up to ``revision`` (idempotent)."""
    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def ping(engine: Engine) -> None:
    """``SELECT 1``: raises SQLAlchemyError when the store does not answer."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def open_store(url: str) -> Engine:
    """The engine for ``url``, migrated to the current schema (what every command opens)."""
    engine = make_engine(url)
    upgrade(engine)
    return engine
