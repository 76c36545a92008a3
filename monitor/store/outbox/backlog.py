"""What waits in the outbox: the backlog per channel and the latest failed deliveries.

Feed health shows both; ``/metrics`` exports the backlog. Rows are described by channel,
kind, trial and error code only (``last_error`` is a code by contract), never by their
summary or body.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, func, select, true

from monitor.store.messages import aware
from monitor.store.outbox.rows import OutboxStatus
from monitor.store.schema import notifications

# The dispatcher claims due rows every few seconds (``dispatch_every_seconds``, 2 s by
# default) and Slack is paced at one message per second per channel: a row still pending
# five minutes after it became claimable is stuck (no dispatcher, a channel down), not queued.
OVERDUE_AFTER = timedelta(minutes=5)
FAILED_SHOWN = 100


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
                aware(oldest) if oldest is not None else None,
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
