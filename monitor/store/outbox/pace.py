"""Sending slots per address shared by replicas (table ``channel_pace``).

A dispatcher about to send to an address takes the next slot in one statement: the stored
time moves to ``max(stored, now) + interval`` and the slot's start comes back; the sender
waits until then. Replicas on one PostgreSQL so post to one Slack channel at the channel's
pace together, as a single dispatcher would (issue 19: three replicas posted three messages
in one second to one channel). Times are wall-clock Unix seconds: replicas' clocks are
assumed NTP-synchronised (a skew of milliseconds shifts a slot by as much).
"""

from __future__ import annotations

from sqlalchemy import Engine

from monitor.store.driver import driver_for

__all__ = ["take_slot"]

# One statement, the same on SQLite 3.35+ and PostgreSQL: the row's next time moves on and
# the slot this sender got comes back.
_TAKE = (
    "INSERT INTO channel_pace (address, next_at) VALUES (:address, :now + :interval) "
    "ON CONFLICT (address) DO UPDATE SET next_at = "
    "(CASE WHEN channel_pace.next_at > :now THEN channel_pace.next_at ELSE :now END) + :interval "
    "RETURNING next_at - :interval"
)


def take_slot(engine: Engine, address: str, interval: float, now: float) -> float:
    """The wall-clock time (Unix seconds) at which this sender may send to ``address``,
    ``interval`` seconds after the slot taken before it (``now`` when the address is idle)."""
    with engine.begin() as conn:
        row = (
            driver_for(conn)
            .execute(conn, _TAKE, {"address": address[:300], "now": now, "interval": interval})
            .fetchone()
        )
    return float(row[0]) if row is not None else now
