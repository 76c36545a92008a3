"""The outbox: one row per message to one address, written before anything is sent.

"The database is the queue" (STYLE.md): planning (:mod:`monitor.store.outbox.planning`) writes
rows, the dispatcher (:mod:`monitor.dispatch.dispatcher`) claims them, sends them and
records the outcome here. A row's life::

    pending ──claim──> sending ──> sent
       ^  │                │
       │  │                ├──> pending   (transient error: next_attempt_at = now + backoff)
       │  │                └──> failed    (permanent error, or attempts exhausted)
       │  └── key no longer planned ──> cancelled ──key planned again──> pending
       └──────── retried by a person (:func:`retry_failed`) <── failed

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
from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    select,
    update,
)

from monitor.store.schema import exams, notifications

__all__ = [
    "OutboxRow",
    "OutboxStatus",
    "Retried",
    "RetryResult",
    "list_outbox",
    "notifications",
    "outbox_rows",
    "retry_failed",
]


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # planned on a quiet first run and deliberately never sent


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


def outbox_rows(
    conn: Connection,
    *,
    status: str | None = None,
    exam_id: int | None = None,
    trials: Collection[str] | None = None,
    limit: int | None = None,
) -> list[OutboxRow]:
    """Outbox rows ordered by due time and id; optionally of one status, one exam, some trials
    (``None``: every trial), the newest ``limit``."""
    names = [field.name for field in fields(OutboxRow)]
    query = select(*(notifications.c[name] for name in names))
    if status is not None:
        query = query.where(notifications.c.status == status)
    if exam_id is not None:
        query = query.where(notifications.c.exam_id == exam_id)
    if trials is not None:
        query = query.where(notifications.c.trial.in_(sorted(trials)))
    if limit:  # the newest ``limit`` read newest first from the store, returned oldest first
        query = query.order_by(notifications.c.due_at.desc(), notifications.c.id.desc()).limit(limit)
        return [OutboxRow(**row._mapping) for row in reversed(conn.execute(query).all())]
    query = query.order_by(notifications.c.due_at, notifications.c.id)
    return [OutboxRow(**row._mapping) for row in conn.execute(query)]


def list_outbox(
    engine: Engine, *, status: str | None = None, exam_id: int | None = None, limit: int | None = None
) -> list[OutboxRow]:
    """:func:`outbox_rows` in a connection of its own."""
    with engine.connect() as conn:
        return outbox_rows(conn, status=status, exam_id=exam_id, limit=limit)


# -- retrying failed deliveries -------------------------------------------------------------

# Messages about an exam that are only worth sending before it, for the time they were planned.
_ABOUT_A_BOOKING = ("booking", "reminder", "instructions")


@dataclass(frozen=True, slots=True)
class Retried:
    """A failed row put back to ``pending``, with what it had before (for the audit trail)."""

    id: int
    channel: str
    kind: str
    trial: str
    attempts: int
    last_error: str

    def audit_detail(self) -> str:
        """One line without PHI: the row's channel, kind, trial and its failure before the retry."""
        error = self.last_error or "no error code"
        return f"{self.channel} {self.kind} {self.trial}: failed after {self.attempts} attempt(s) ({error})"


@dataclass(frozen=True, slots=True)
class RetryResult:
    """What :func:`retry_failed` did: the rows put back, and the rows it would not retry and why."""

    retried: tuple[Retried, ...] = ()
    refused: tuple[tuple[int, str], ...] = ()  # (row id, reason without PHI)


def _start_key(start: datetime) -> str:
    # As rules.notifications builds it into the dedupe key of a booking-related message.
    return start.astimezone(UTC).isoformat(timespec="minutes")


def _why_not(row: Any, now: datetime) -> str:
    """Why a failed row must not be sent any more ("" when it may be retried)."""
    if row.status != OutboxStatus.FAILED:
        return f"not failed (status {row.status})"
    if row.exam_id is None:
        return ""
    if row.exam_status is None:
        return "its exam is no longer in the store"
    if row.exam_status == "cancelled":
        # The coordinator's alert about the cancellation itself is still news.
        if not (row.kind == "alert" and row.finding_kind == "cancelled"):
            return "its exam was cancelled"
        return ""
    if row.kind in _ABOUT_A_BOOKING:
        if row.exam_start is None or row.exam_start <= now:
            return "its exam time has passed"
        if not row.dedupe_key.endswith("|" + _start_key(row.exam_start)):
            return "its exam was moved (the new time has messages of its own)"
    return ""


def retry_failed(
    conn: Connection,
    now: datetime,
    *,
    ids: Sequence[int] | None = None,
    channel: str | None = None,
) -> RetryResult:
    """Put failed outbox rows back to ``pending``, claimable at once; in the caller's transaction.

    ``ids`` names the rows (each must be ``failed``); without ``ids`` every failed row is
    taken, of ``channel`` only when given. A row is never retried when sending it now would
    be wrong: its exam was cancelled (except the coordinator's alert about that
    cancellation), has passed, or was moved (for booking notices, reminders and sheets);
    such rows stay ``failed`` and are listed in :attr:`RetryResult.refused`. A cancelled or
    skipped notification is not ``failed`` and is never touched.

    A retried row gets ``next_attempt_at = now`` and ``attempts = 0``: the dispatcher's
    retry budget (``max_attempts``) and backoff are counted from ``attempts``, so a row
    that failed by exhausting them would otherwise fail again after one more transient
    error, after the longest backoff. The count it had is returned (:class:`Retried`) for
    the audit trail. ``last_error`` stays until the next outcome replaces it, and
    ``maybe_sent`` stays too (the next attempt then asks the channel before resending).
    Each row is put back by a conditional UPDATE (``status = 'failed'``), so a row a
    concurrent retry took already is not counted twice. Raises SQLAlchemy errors.
    """
    query = select(
        notifications.c.id,
        notifications.c.dedupe_key,
        notifications.c.status,
        notifications.c.channel,
        notifications.c.kind,
        notifications.c.finding_kind,
        notifications.c.trial,
        notifications.c.exam_id,
        notifications.c.attempts,
        notifications.c.last_error,
        exams.c.status.label("exam_status"),
        exams.c.start_at.label("exam_start"),
    ).select_from(notifications.outerjoin(exams, exams.c.id == notifications.c.exam_id))
    if ids is not None:
        query = query.where(notifications.c.id.in_(sorted(set(ids))))
    else:
        query = query.where(notifications.c.status == OutboxStatus.FAILED.value)
    if channel is not None:
        query = query.where(notifications.c.channel == channel)
    found = {row.id: row for row in conn.execute(query.order_by(notifications.c.id))}
    retried: list[Retried] = []
    refused: list[tuple[int, str]] = []
    for row_id in sorted(set(ids)) if ids is not None else list(found):
        row = found.get(row_id)
        if row is None:
            refused.append((row_id, "no such notification"))
            continue
        reason = _why_not(row, now)
        if reason:
            refused.append((row_id, reason))
            continue
        result = conn.execute(
            update(notifications)
            .where(notifications.c.id == row_id, notifications.c.status == OutboxStatus.FAILED.value)
            .values(
                status=OutboxStatus.PENDING.value,
                next_attempt_at=now,
                attempts=0,
                claimed_by=None,
                claimed_at=None,
                updated_at=now,
            )
        )
        if result.rowcount != 1:
            refused.append((row_id, "not failed any more"))
            continue
        retried.append(Retried(row.id, row.channel, row.kind, row.trial, row.attempts, row.last_error))
    return RetryResult(tuple(retried), tuple(refused))
