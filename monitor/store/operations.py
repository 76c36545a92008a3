"""Operations alerts in the store: what the checks measure, the episodes, their messages.

Measures (each an index walk, cheap enough for a check every minute at millions of rows):
the newest message of a feed within the last week and the AE/AR answers of the last hour
(``ix_messages_received_at``), the outbox rows due long ago and still unsent
(``ix_notifications_status``).

An episode is one row of ``operations_alerts`` per condition and feed. :func:`raise_alert`
opens it and :func:`clear_alert` closes it, each in the transaction that plans its
messages to the operations channels (outbox rows of kind ``operations``, audience
``operations``, no trial); the row's state decides, so a condition is announced once per
episode and its recovery once, whichever replica runs the check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from monitor.store.messages import aware
from monitor.store.outbox.rows import OutboxStatus
from monitor.store.schema import messages, notifications, operations_alerts
from notifiers.base import parse_address

__all__ = [
    "Episode",
    "clear_alert",
    "last_message_at",
    "open_episodes",
    "operations_episode",
    "raise_alert",
    "rejections_since",
    "unsent_due_before",
]

_UNSENT = (OutboxStatus.PENDING.value, OutboxStatus.SENDING.value)


@dataclass(frozen=True, slots=True)
class Episode:
    key: str
    condition: str
    feed: str
    raised_at: datetime
    summary: str
    detail: str
    cleared_at: datetime | None
    recovery: str


def _episode(row: Any) -> Episode:
    return Episode(
        row.key, row.condition, row.feed, row.raised_at, row.summary, row.detail, row.cleared_at, row.recovery
    )


def last_message_at(conn: Connection, feed: str, since: datetime) -> datetime | None:
    """When ``feed``'s newest message arrived, if it did at ``since`` or later (None: not since).

    Bounded by ``since`` (a walk of ``ix_messages_received_at`` back to it): a feed that has
    been silent for weeks must not cost a read of every message at every check."""
    found = conn.execute(
        select(func.max(messages.c.received_at)).where(
            messages.c.received_at >= since, messages.c.feed == feed
        )
    ).scalar()
    return None if found is None else aware(found)


def rejections_since(conn: Connection, since: datetime) -> dict[str, int]:
    """AE and AR answers per feed since ``since``."""
    query = (
        select(messages.c.feed, func.count())
        .where(messages.c.received_at >= since, messages.c.ack_code.in_(("AE", "AR")))
        .group_by(messages.c.feed)
    )
    return {str(feed): int(count) for feed, count in conn.execute(query)}


def unsent_due_before(conn: Connection, moment: datetime) -> int:
    """Outbox messages due before ``moment`` and not sent, failed or given up yet."""
    query = select(func.count()).where(
        notifications.c.status.in_(_UNSENT), notifications.c.next_attempt_at < moment
    )
    return int(conn.execute(query).scalar() or 0)


def open_episodes(conn: Connection) -> dict[str, Episode]:
    rows = conn.execute(select(operations_alerts).where(operations_alerts.c.cleared_at.is_(None)))
    return {row.key: _episode(row) for row in rows}


def operations_episode(conn: Connection, key: str) -> Episode | None:
    row = conn.execute(select(operations_alerts).where(operations_alerts.c.key == key)).first()
    return None if row is None else _episode(row)


def raise_alert(
    conn: Connection, key: str, condition: str, feed: str, summary: str, detail: str,
    now: datetime, channels: Sequence[str],
) -> bool:  # fmt: skip
    """Open an episode of ``key`` unless one is open, and plan its message to ``channels``.
    False when it was open already (or another replica opened it first)."""
    values = {"condition": condition, "feed": feed, "raised_at": now, "summary": summary,
              "detail": detail, "cleared_at": None, "recovery": ""}  # fmt: skip
    reopened = conn.execute(
        update(operations_alerts)
        .where(operations_alerts.c.key == key, operations_alerts.c.cleared_at.is_not(None))
        .values(**values)
    ).rowcount
    if not reopened:
        if operations_episode(conn, key) is not None:
            return False  # open already
        try:
            with conn.begin_nested():
                conn.execute(insert(operations_alerts).values(key=key, **values))
        except IntegrityError:
            return False
    _plan(conn, key, "raised", now, now, channels, summary)
    return True


def clear_alert(conn: Connection, key: str, recovery: str, now: datetime, channels: Sequence[str]) -> bool:
    """Close ``key``'s open episode and plan its recovery message; False when none was open."""
    episode = operations_episode(conn, key)
    if episode is None or episode.cleared_at is not None:
        return False
    closed = conn.execute(
        update(operations_alerts)
        .where(operations_alerts.c.key == key, operations_alerts.c.cleared_at.is_(None))
        .values(cleared_at=now, recovery=recovery)
    ).rowcount
    if not closed:
        return False
    _plan(conn, key, "recovered", episode.raised_at, now, channels, recovery)
    return True


def _plan(
    conn: Connection, key: str, state: str, raised_at: datetime, now: datetime,
    channels: Sequence[str], summary: str,
) -> None:  # fmt: skip
    """One outbox row per channel; the dedupe key names the episode (its start) and the state."""
    episode = raised_at.isoformat(timespec="seconds")
    rows = [
        {
            "dedupe_key": f"operations|{key}|{episode}|{state}|{address}"[:700],
            "audience": "operations",
            "channel": parse_address(address)[0],
            "address": address,
            "kind": "operations",
            "trial": "",
            "finding_key": f"{key}|{state}",
            "finding_kind": key.partition("|")[0],
            "thread_key": f"operations:{key}",
            "due_at": now,
            "status": OutboxStatus.PENDING.value,
            "attempts": 0,
            "next_attempt_at": now,
            "maybe_sent": False,
            "last_error": "",
            "summary": summary[:500],
            "created_at": now,
            "updated_at": now,
        }
        for address in channels
    ]
    if rows:
        conn.execute(insert(notifications), rows)
