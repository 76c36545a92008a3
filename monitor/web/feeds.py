"""Feed health: what each feed delivered lately, what was refused and why, FHIR poll status.

Rejection reasons (``messages.error``) are plain text without PHI by contract; the raw
payload is PHI and is read only by :func:`raw_message` (the admins' page).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, func, select

from monitor.store.polls import feed_polls
from monitor.store.schema import messages

_RECENT = timedelta(hours=24)


@dataclass(slots=True)
class FeedSummary:
    feed: str
    last_message: datetime | None = None
    last_hour: int = 0
    per_hour_24h: float = 0.0
    ae: int = 0
    ar: int = 0


@dataclass(slots=True)
class FeedHealth:
    feeds: list[FeedSummary] = field(default_factory=list)
    rejected: list[Any] = field(default_factory=list)  # id, feed, received_at, type, ack, error
    polls: list[Any] = field(default_factory=list)  # the last poll of each polling feed


def _aware(value: Any) -> datetime:
    if isinstance(value, str):  # SQLite answers max() as text
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def feed_health(conn: Connection, now: datetime) -> FeedHealth:
    """Per-feed counts over the last 24 hours, the 50 latest rejections and the last poll of each feed."""
    health = FeedHealth()
    since = now - _RECENT
    hour_ago = now - timedelta(hours=1)
    summaries: dict[str, FeedSummary] = {}
    for feed, last in conn.execute(
        select(messages.c.feed, func.max(messages.c.received_at)).group_by(messages.c.feed)
    ):
        summaries[feed] = FeedSummary(feed, _aware(last) if last is not None else None)
    in_last_hour = func.sum(case((messages.c.received_at >= hour_ago, 1), else_=0))
    recent = (
        select(messages.c.feed, messages.c.ack_code, func.count(), in_last_hour)
        .where(messages.c.received_at >= since)
        .group_by(messages.c.feed, messages.c.ack_code)
    )
    for feed, ack, count, last_hour in conn.execute(recent):
        summary = summaries.setdefault(feed, FeedSummary(feed))
        summary.per_hour_24h += count / 24
        summary.last_hour += int(last_hour or 0)
        if ack == "AE":
            summary.ae += count
        elif ack == "AR":
            summary.ar += count
    health.feeds = sorted(summaries.values(), key=lambda s: s.feed)
    health.rejected = list(
        conn.execute(
            select(
                messages.c.id,
                messages.c.feed,
                messages.c.received_at,
                messages.c.message_type,
                messages.c.ack_code,
                messages.c.error,
            )
            .where(messages.c.outcome == "rejected")
            .order_by(messages.c.id.desc())
            .limit(50)
        )
    )
    latest = (
        select(feed_polls.c.feed, func.max(feed_polls.c.id).label("id"))
        .group_by(feed_polls.c.feed)
        .subquery()
    )
    health.polls = list(
        conn.execute(
            select(feed_polls).join(latest, latest.c.id == feed_polls.c.id).order_by(feed_polls.c.feed)
        )
    )
    return health


def raw_message(conn: Connection, message_id: int) -> Any | None:
    """One stored message with its payload decoded for display (None when absent)."""
    return conn.execute(select(messages).where(messages.c.id == message_id)).first()
