"""Feed polls: one row per poll of a pulling feed (FHIR), for the dashboard's feed-health page.

``ok`` says whether the poll ran to its end; ``resources``, ``accepted`` and ``rejected``
count what it saw; ``error`` says why it failed, or what it warns about when it did not
(a server that answered STU3, OperationOutcome issues). Never PHI: no MRN, name or URL
query in ``error``. The last successful poll of a feed is where the next incremental
(``_lastUpdated``) search starts.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Connection,
    func,
    select,
    update,
)

from monitor.store.schema import feed_polls


def poll_started(conn: Connection, feed: str, started_at: datetime) -> int:
    """Record the start of a poll; returns its row id (finish it with :func:`poll_finished`)."""
    result = conn.execute(feed_polls.insert().values(feed=feed, started_at=started_at, ok=False))
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def poll_finished(
    conn: Connection,
    poll_id: int,
    *,
    finished_at: datetime,
    ok: bool,
    resources: int,
    accepted: int,
    rejected: int,
    error: str,
) -> None:
    conn.execute(
        update(feed_polls)
        .where(feed_polls.c.id == poll_id)
        .values(
            finished_at=finished_at,
            ok=ok,
            resources=resources,
            accepted=accepted,
            rejected=rejected,
            error=error[:4000],
        )
    )


def last_success(conn: Connection, feed: str) -> datetime | None:
    """When the last poll of ``feed`` that ran to its end started, or None."""
    found = conn.execute(
        select(func.max(feed_polls.c.started_at)).where(feed_polls.c.feed == feed, feed_polls.c.ok.is_(True))
    ).scalar()
    return found if isinstance(found, datetime) else None  # max() keeps the column's UTC type


def first_success(conn: Connection, feed: str) -> datetime | None:
    """When the first poll of ``feed`` that ran to its end started (since when it is watched)."""
    found = conn.execute(
        select(func.min(feed_polls.c.started_at)).where(feed_polls.c.feed == feed, feed_polls.c.ok.is_(True))
    ).scalar()
    return found if isinstance(found, datetime) else None
