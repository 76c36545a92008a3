"""The outbox: one row per message to one address, written before anything is sent.

"The database is the queue" (STYLE.md): planning (:mod:`monitor.dispatch.planning`) writes
rows, the dispatcher (:mod:`monitor.dispatch.dispatcher`) claims them, sends them and
records the outcome here. A row's life::

    pending ──claim──> sending ──> sent
       ^  │                │
       │  │                ├──> pending   (transient error: next_attempt_at = now + backoff)
       │  │                └──> failed    (permanent error, or attempts exhausted)
       │  └── key no longer planned ──> cancelled ──key planned again──> pending

    (planned) ──quiet first run──> skipped   (a booking notice never to be sent)

- ``dedupe_key`` is unique: one key, one row, one delivered message (DESIGN.md, invariant 4).
- ``next_attempt_at`` is when the row may next be claimed (``due_at`` at first, later the
  backoff); ``due_at`` stays what the plan said.
- ``claimed_by``/``claimed_at`` name the dispatcher holding a ``sending`` row. A row left in
  ``sending`` by a dispatcher that died is put back to ``pending`` with ``maybe_sent`` set,
  so the next attempt first asks the channel whether the message already arrived.
- ``external_ref`` is :meth:`notifiers.Delivery.as_dict` (Slack channel id + ts, SMTP
  Message-ID, webhook delivery id): the thread root and the message an update edits.
- ``last_error`` holds an error type or provider code only (``channel_not_found``,
  ``ratelimited``, ``KeyError``), never a message text that could quote PHI.
- ``summary`` and ``body`` are for the dashboard and ``hiro-monitor notifications``, never for
  sending: content is rebuilt from the store at send time (it is then current), and what was
  sent is recorded rendered under the ``none`` PHI policy, so the outbox holds no identifiers.
  ``summary`` is the finding's one-line detail until the row is sent, then the headline.
- ``exam_start`` is the exam time the sent message showed: a later message about the same
  exam compares it to say "moved from ... to ...".
- ``skipped`` rows are booking notices the first planning found already booked (``[dispatch]
  quiet_first_run``): kept so that their key is never planned, and sent, again.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Engine,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    select,
)

from monitor.store.schema import UTCDateTime, metadata

__all__ = ["OutboxRow", "OutboxStatus", "list_outbox", "notifications"]


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # planned on a quiet first run and deliberately never sent


notifications = Table(
    "notifications",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("dedupe_key", String(700), nullable=False, unique=True),
    Column("audience", String(16), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("address", String(300), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("trial", String(64), nullable=False, default=""),
    Column("enrolment_id", ForeignKey("enrolments.id"), nullable=True),
    Column("exam_id", ForeignKey("exams.id"), nullable=True),
    Column("finding_key", String(400), nullable=False, default=""),
    Column("finding_kind", String(32), nullable=False, default=""),
    Column("thread_key", String(400), nullable=False, default=""),
    Column("due_at", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("maybe_sent", Boolean(), nullable=False, default=False),
    Column("claimed_by", String(200), nullable=True),
    Column("claimed_at", UTCDateTime(), nullable=True),
    Column("last_error", String(200), nullable=False, default=""),
    Column("external_ref", JSON, nullable=True),
    Column("exam_start", UTCDateTime(), nullable=True),
    Column("summary", Text, nullable=False, default=""),
    Column("body", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime(), nullable=True),
)
# The dispatcher's claim: pending rows by the time they may be sent, per address (lane).
Index("ix_notifications_status", notifications.c.status, notifications.c.next_attempt_at)
Index(
    "ix_notifications_address",
    notifications.c.address,
    notifications.c.status,
    notifications.c.next_attempt_at,
)
# Thread roots and the message an update edits: sent rows of one exam on one address.
Index("ix_notifications_thread_key", notifications.c.thread_key, notifications.c.address)
Index("ix_notifications_enrolment_id", notifications.c.enrolment_id, notifications.c.status)
Index("ix_notifications_exam_id", notifications.c.exam_id)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One row as ``hiro-monitor notifications`` and the dashboard show it (no PHI in any field)."""

    id: int
    dedupe_key: str
    exam_id: int | None
    trial: str
    audience: str
    channel: str
    address: str
    kind: str
    finding_kind: str
    due_at: datetime
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str
    summary: str
    sent_at: datetime | None
    external_ref: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict; instants UTC ISO 8601."""
        return {
            "id": self.id,
            "exam_id": self.exam_id,
            "trial": self.trial,
            "audience": self.audience,
            "channel": self.channel,
            "address": self.address,
            "kind": self.kind,
            "finding_kind": self.finding_kind,
            "due_at": self.due_at.isoformat(),
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at.isoformat(),
            "last_error": self.last_error,
            "summary": self.summary,
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "external_ref": self.external_ref,
            "dedupe_key": self.dedupe_key,
        }


def list_outbox(
    engine: Engine, *, status: str | None = None, exam_id: int | None = None, limit: int | None = None
) -> list[OutboxRow]:
    """Outbox rows ordered by due time and id; optionally of one status or exam, newest ``limit``."""
    names = [field.name for field in fields(OutboxRow)]
    query = select(*(notifications.c[name] for name in names))
    if status is not None:
        query = query.where(notifications.c.status == status)
    if exam_id is not None:
        query = query.where(notifications.c.exam_id == exam_id)
    query = query.order_by(notifications.c.due_at, notifications.c.id)
    with engine.connect() as conn:
        rows = [OutboxRow(**row._mapping) for row in conn.execute(query)]
    return rows[-limit:] if limit else rows
