"""Feed health: what each feed delivered lately, what was refused and why, FHIR poll status,
and the outbox: what waits to be sent, per channel, and which deliveries failed.

Rejection reasons (``messages.error``) are plain text without PHI by contract; the raw
payload is PHI and is read only by :func:`raw_message` (the admins' page). Outbox rows are
shown by channel, kind, trial and error code only (``last_error`` is a code by contract),
never by their summary or body.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, func, select, true

from monitor.store.outbox import OutboxStatus
from monitor.store.schema import feed_polls, messages, notifications

_RECENT = timedelta(hours=24)
# The dispatcher claims due rows every few seconds (``dispatch_every_seconds``, 2 s by
# default) and Slack is paced at one message per second per channel: a row still pending
# five minutes after it became claimable is stuck (no dispatcher, a channel down), not queued.
OVERDUE_AFTER = timedelta(minutes=5)
FAILED_SHOWN = 100


@dataclass(slots=True)
class FeedSummary:
    feed: str
    last_message: datetime | None = None
    last_hour: int = 0
    per_hour_24h: float = 0.0
    ae: int = 0
    ar: int = 0
    reused_keys: int = 0  # control ids (MSH-3/4/10) that came again with another body, ever


@dataclass(slots=True)
class FeedHealth:
    feeds: list[FeedSummary] = field(default_factory=list)
    rejected: list[Any] = field(default_factory=list)  # id, feed, received_at, type, ack, error
    polls: list[Any] = field(default_factory=list)  # the last poll of each polling feed
    # Reused keys, the latest first: feed, first (message id), control_id, sender, times
    # (messages with that key after the first), last_seen, latest (message id).
    reused: list[Any] = field(default_factory=list)


REUSED_SHOWN = 50


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
    health.reused = reused_keys(conn)
    for row in conn.execute(
        select(messages.c.feed, func.count(func.distinct(messages.c.original_id)))
        .where(messages.c.original_id.is_not(None))
        .group_by(messages.c.feed)
    ):
        summaries.setdefault(row[0], FeedSummary(row[0])).reused_keys = int(row[1])
    health.feeds = sorted(summaries.values(), key=lambda s: s.feed)
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


def reused_keys(conn: Connection, limit: int = REUSED_SHOWN) -> list[Any]:
    """Control ids a sender used again for another message, the latest reuse first: the
    first message of the key, how many came after it and the latest of them. A restarted
    counter on the sender's side shows here before it can hide a real update."""
    reuses = (
        select(
            messages.c.original_id.label("first"),
            func.count().label("times"),
            func.max(messages.c.received_at).label("last_seen"),
            func.max(messages.c.id).label("latest"),
        )
        .where(messages.c.original_id.is_not(None))  # ix_messages_original_id
        .group_by(messages.c.original_id)
        .subquery()
    )
    return list(
        conn.execute(
            select(
                messages.c.feed,
                reuses.c.first,
                messages.c.control_id,
                messages.c.sender_application,
                messages.c.sender_facility,
                reuses.c.times,
                reuses.c.last_seen,
                reuses.c.latest,
            )
            .join(reuses, reuses.c.first == messages.c.id)
            .order_by(reuses.c.latest.desc())
            .limit(limit)
        )
    )


@dataclass(slots=True)
class ChannelBacklog:
    """What waits to be sent on one channel (slack, email, webhook, console)."""

    channel: str
    pending: int = 0
    due: int = 0  # pending rows claimable now
    overdue: int = 0  # claimable for longer than OVERDUE_AFTER
    oldest_due: datetime | None = None  # the earliest due time among the claimable ones
    sending: int = 0
    failed: int = 0


@dataclass(slots=True)
class OutboxHealth:
    backlog: list[ChannelBacklog] = field(default_factory=list)
    failed: list[Any] = field(
        default_factory=list
    )  # id, channel, kind, trial, exam_id, failed_at, attempts, last_error
    failed_total: int = 0


def outbox_backlog(
    conn: Connection, now: datetime, trials: Collection[str] | None = None
) -> list[ChannelBacklog]:
    """What waits on each channel, of ``trials`` (None: all): ``pending`` rows (and, of those,
    the ones claimable now and the overdue ones), ``sending`` and ``failed`` rows. Feed
    health shows it; ``/metrics`` exports it."""
    backlog = []
    in_scope = _in_scope(trials)
    pending = notifications.c.status == OutboxStatus.PENDING.value
    claimable = pending & (notifications.c.next_attempt_at <= now)
    counts = (
        select(
            notifications.c.channel,
            func.sum(case((pending, 1), else_=0)),
            func.sum(case((claimable, 1), else_=0)),
            func.sum(case((claimable & (notifications.c.next_attempt_at < now - OVERDUE_AFTER), 1), else_=0)),
            func.min(case((claimable, notifications.c.due_at), else_=None)),
            func.sum(case((notifications.c.status == OutboxStatus.SENDING.value, 1), else_=0)),
            func.sum(case((notifications.c.status == OutboxStatus.FAILED.value, 1), else_=0)),
        )
        .where(
            in_scope,
            notifications.c.status.in_(
                [OutboxStatus.PENDING.value, OutboxStatus.SENDING.value, OutboxStatus.FAILED.value]
            ),
        )
        .group_by(notifications.c.channel)
        .order_by(notifications.c.channel)
    )
    for channel, waiting, due, overdue, oldest, sending, failed in conn.execute(counts):
        backlog.append(
            ChannelBacklog(
                channel,
                int(waiting or 0),
                int(due or 0),
                int(overdue or 0),
                _aware(oldest) if oldest is not None else None,
                int(sending or 0),
                int(failed or 0),
            )
        )
    return backlog


def _in_scope(trials: Collection[str] | None) -> Any:
    return true() if trials is None else notifications.c.trial.in_(sorted(trials))


def outbox_health(conn: Connection, now: datetime, trials: Collection[str] | None = None) -> OutboxHealth:
    """The backlog per channel (:func:`outbox_backlog`) and the latest failed deliveries, of
    ``trials`` (None: all): the newest :data:`FAILED_SHOWN` failures, by when they failed
    (``updated_at``)."""
    health = OutboxHealth(backlog=outbox_backlog(conn, now, trials))
    health.failed_total = sum(row.failed for row in health.backlog)
    in_scope = _in_scope(trials)
    health.failed = list(
        conn.execute(
            select(
                notifications.c.id,
                notifications.c.channel,
                notifications.c.kind,
                notifications.c.trial,
                notifications.c.exam_id,
                notifications.c.updated_at.label("failed_at"),
                notifications.c.attempts,
                notifications.c.last_error,
            )
            .where(in_scope, notifications.c.status == OutboxStatus.FAILED.value)
            .order_by(notifications.c.updated_at.desc(), notifications.c.id.desc())
            .limit(FAILED_SHOWN)
        )
    )
    return health


def raw_message(conn: Connection, message_id: int) -> Any | None:
    """One stored message with its payload decoded for display (None when absent)."""
    return conn.execute(select(messages).where(messages.c.id == message_id)).first()
