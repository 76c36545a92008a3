"""Statements on the driver itself, for the few the feed runs for every message.

Executing one statement through SQLAlchemy Core costs about 70 µs of Python (compiled-cache
lookup, parameter processing, result set-up), several times what SQLite takes to run it: at
five statements per message that was 43% of the feed writer's time (cProfile of
``Intake.receive_batch``, 2026-12-03). The hot statements are written once, in SQL both
SQLite 3.35+ and PostgreSQL take, and run on the DBAPI cursor of the same connection, inside
the caller's transaction. Driver errors are raised as SQLAlchemy wraps them
(:class:`sqlalchemy.exc.DBAPIError` and its subclasses; a lost connection is invalidated).
Values are converted here as the Core types convert them
(:class:`monitor.store.schema.UTCDateTime`: naive UTC, in SQLite's text format; JSON:
``json.dumps``), so a row written either way reads back the same.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from functools import cache
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import JSON, Connection, Date, Table
from sqlalchemy.exc import DBAPIError, StatementError

from monitor.store.schema import UTCDateTime

__all__ = ["Driver", "driver_for"]

_NAMED = re.compile(r"(?<![:\w]):(\w+)")
_JSON = re.compile(r"\{json:(\w+)\}")


class Driver:
    """How one dialect takes parameters, times and JSON."""

    __slots__ = ("dialect", "sqlite")

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.sqlite = dialect == "sqlite"

    def time(self, value: datetime | None) -> Any:
        """An aware datetime as the store keeps it: naive UTC (SQLite: SQLAlchemy's text format)."""
        if value is None:
            return None
        if value.tzinfo is not UTC:  # the engine's times are UTC already: skip the conversion
            value = value.astimezone(UTC)
        naive = value.replace(tzinfo=None)
        return naive.isoformat(" ", "microseconds") if self.sqlite else naive

    @staticmethod
    def read_time(value: Any) -> datetime | None:
        """A stored time as an aware UTC datetime, as :class:`monitor.store.schema.UTCDateTime`
        reads it (SQLite gives text, PostgreSQL a naive datetime)."""
        if value is None:
            return None
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        assert isinstance(moment, datetime)
        return moment.replace(tzinfo=UTC)

    @staticmethod
    def json(value: Any) -> str | None:
        return None if value is None else json.dumps(value)

    def insert_many(self, conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """``INSERT`` ``rows`` (each with the same keys) into ``table`` in one ``executemany``,
        values converted as the Core types convert them and the columns' Python-side scalar
        defaults filled in, as ``conn.execute(table.insert(), rows)`` does: Core spends more
        time on each row's parameters than SQLite on storing it (the first evaluation of 10k
        enrolments writes 360k rows; issue 15)."""
        if not rows:
            return
        given = list(rows[0])
        defaults = {
            column.name: cast(Any, column.default).arg
            for column in table.c
            if column.name not in rows[0] and column.default is not None and column.default.is_scalar
        }
        names = [*given, *defaults]
        marks = ", ".join("%s" if self.dialect == "postgresql" else "?" for _ in names)
        sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})"  # noqa: S608 (names are the table's own)
        # Rows as tuples in C (itemgetter), then only the columns that need it converted:
        # per-value Python calls for 10 columns of 360k rows took 7 s under cProfile.
        take = itemgetter(*given)
        # Rows of one evaluation share a handful of instants and days (now, the windows):
        # each is converted once per call (JSON values are not hashable, nor worth it).
        once: dict[Callable[[Any], Any], Callable[[Any], Any]] = {
            self.time: cache(self.time),
            _iso_date: cache(_iso_date),
        }
        tail = [self._converter(table.c[name].type)(value) for name, value in defaults.items()]
        convert = [
            (index, once.get(to, to))
            for index, name in enumerate(given)
            if (to := self._converter(table.c[name].type)) is not _same
        ]
        single = len(given) == 1
        params: list[list[Any]] = []
        for row in rows:
            values = [take(row)] if single else list(take(row))
            for index, to in convert:
                values[index] = to(values[index])
            values.extend(tail)
            params.append(values)
        dbapi_connection = conn.connection.dbapi_connection
        assert dbapi_connection is not None
        cursor = dbapi_connection.cursor()
        try:
            cursor.executemany(sql, params)
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _wrapped(conn, sql, exc, cursor) from exc

    def _converter(self, kind: Any) -> Callable[[Any], Any]:
        """How a Python value of a column of type ``kind`` goes to the driver."""
        if isinstance(kind, UTCDateTime):
            return self.time
        if isinstance(kind, JSON):
            return self.json
        if isinstance(kind, Date) and self.sqlite:
            return _iso_date
        return _same

    def execute(self, conn: Connection, statement: str, params: Mapping[str, Any]) -> Any:
        """Run ``statement`` (``:name`` parameters, ``{json:name}`` for JSON values) on
        ``conn``'s DBAPI connection; the cursor, to fetch from."""
        sql = _in_style(self.dialect, statement)
        dbapi_connection = conn.connection.dbapi_connection
        assert dbapi_connection is not None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(sql, params)
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _wrapped(conn, sql, exc, cursor) from exc
        return cursor


def _same(value: Any) -> Any:
    return value


def _iso_date(value: Any) -> Any:
    """A date as SQLAlchemy's SQLite ``DATE`` stores it (``YYYY-MM-DD``)."""
    return value.isoformat() if isinstance(value, date) else value


def _wrapped(conn: Connection, sql: str, exc: Any, cursor: Any) -> StatementError:
    """``exc`` as SQLAlchemy raises it (so callers catch one family), its parameters hidden
    (they hold PHI); a lost connection is invalidated, as Core does."""
    lost = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)
    if lost:
        conn.invalidate(exc)
    wrapped: StatementError = DBAPIError.instance(
        sql,
        None,
        exc,
        conn.dialect.loaded_dbapi.Error,
        hide_parameters=True,
        connection_invalidated=lost,
        dialect=conn.dialect,
    )
    return wrapped


@cache
def _in_style(dialect: str, statement: str) -> str:
    if dialect == "postgresql":
        return _NAMED.sub(r"%(\1)s", _JSON.sub(r"%(\1)s::json", statement))
    return _JSON.sub(r":\1", statement)


_DRIVERS = {name: Driver(name) for name in ("sqlite", "postgresql")}


def driver_for(conn: Connection) -> Driver:
    """The driver of ``conn``'s dialect (the store runs on SQLite and PostgreSQL only)."""
    try:
        return _DRIVERS[conn.dialect.name]
    except KeyError:
        raise NotImplementedError(
            f"the store runs on SQLite or PostgreSQL, not {conn.dialect.name}"
        ) from None
