"""Retention: raw HL7 payloads hold PHI and are kept only for ``raw_retention_days``.

Purging empties the payload and stamps ``purged_at``; the row (control id, outcome, error
code) stays, so duplicate detection and feed-health history keep working.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, update

from monitor.store.schema import messages


def purge_raw_messages(engine: Engine, now: datetime, retention_days: int) -> int:
    """Empty the payload of messages received more than ``retention_days`` before ``now``."""
    cutoff = now - timedelta(days=retention_days)
    with engine.begin() as conn:
        result = conn.execute(
            update(messages)
            .where(and_(messages.c.received_at < cutoff, messages.c.payload.is_not(None)))
            .values(payload=None, purged_at=now)
        )
    return int(result.rowcount)
