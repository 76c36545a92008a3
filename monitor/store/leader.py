"""Which replica runs the scheduled jobs: a PostgreSQL session advisory lock (DESIGN, "Scale")."""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Connection, Engine, text

log = logging.getLogger("monitor.scheduler")

LEADER_LOCK_KEY = 0x6869726F5F6A6F62  # b"hiro_job": the advisory lock of the replica running the jobs


class LeaderLock:
    """Whether this process runs the scheduled jobs: a PostgreSQL session advisory lock.

    ``pg_try_advisory_lock`` on a dedicated connection (autocommit, so no transaction stays
    open) held for the process's lifetime; the lock goes when the session does (the process
    exits or the connection breaks), and another replica's next :meth:`held` takes it.
    Any other database: always held (one process per SQLite file).
    """

    def __init__(self, engine: Engine, key: int = LEADER_LOCK_KEY) -> None:
        self.engine = engine
        self.key = key
        self._conn: Connection | None = None
        self._mutex = threading.Lock()

    def held(self) -> bool:
        """True if this process holds the lock (taking it if free). Never raises."""
        if self.engine.dialect.name != "postgresql":
            return True
        with self._mutex:
            if self._conn is not None:
                try:
                    self._conn.execute(text("SELECT 1"))
                    return True
                except Exception as exc:  # the session is gone, and the lock with it
                    log.warning("lost the scheduler lock's connection (%s)", type(exc).__name__)
                    self._close()
            try:
                conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            except Exception as exc:
                log.warning("cannot reach the store for the scheduler lock (%s)", type(exc).__name__)
                return False
            try:
                got = bool(
                    conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}).scalar()
                )
            except Exception as exc:
                log.warning("taking the scheduler lock failed (%s)", type(exc).__name__)
                got = False
            if not got:
                conn.close()
                return False
            self._conn = conn
            log.info("this process now runs the scheduled jobs (advisory lock %#x)", self.key)
            return True

    def release(self) -> None:
        with self._mutex:
            if self._conn is not None:
                try:
                    self._conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
                except Exception as exc:
                    log.debug("unlocking failed (%s); closing the session releases it", type(exc).__name__)
                self._close()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:  # the connection is broken already
                log.debug("closing the lock connection failed (%s)", type(exc).__name__)
