"""Claiming due outbox rows atomically, recording outcomes, taking back rows of dead senders.

Claiming (one short transaction, committed before anything is sent):

- SQLite: read the due ids of one address, then ``UPDATE ... SET status='sending' WHERE
  id=? AND status='pending'`` per id and keep the ids whose row count is 1: a row another
  process claimed in between is simply not ours.
- PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` then one UPDATE of the ids selected:
  replicas claiming at the same moment skip each other's rows instead of waiting.

Every outcome is a conditional UPDATE too (``status='sending' AND claimed_by=<me>``): a
dispatcher whose row was taken back meanwhile cannot overwrite the new owner's record.

A row is left ``sending`` only when its dispatcher died between claim and bookkeeping.
:meth:`Claims.recover` puts such rows back to ``pending`` with ``maybe_sent`` set (the
next attempt asks the channel before re-sending): at once when the owner was a process on
this host that no longer exists, otherwise once ``claimed_at`` is older than the sending
timeout (a sender on another host, or a hung one).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update

from monitor.store.accounts import record_audit
from monitor.store.outbox import OutboxStatus
from monitor.store.schema import notifications
from notifiers.base import Delivery

__all__ = ["Claims", "SentBefore", "make_owner"]

PENDING, SENDING = OutboxStatus.PENDING.value, OutboxStatus.SENDING.value
SENT, FAILED = OutboxStatus.SENT.value, OutboxStatus.FAILED.value


def make_owner() -> str:
    """``host:pid:token``: who holds a ``sending`` row (the token tells two dispatchers apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _process_gone(owner: str) -> bool:
    """Whether ``owner`` names a process on this host that no longer runs."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


@dataclass(frozen=True, slots=True)
class SentBefore:
    """A message already delivered in a thread (one address, one thread key), oldest first."""

    id: int
    kind: str
    finding_kind: str
    exam_start: datetime | None
    delivery: Delivery


@dataclass(frozen=True, slots=True)
class ClaimedRow:
    """An outbox row a dispatcher holds in ``sending``: what it needs to build and send it."""

    id: int
    dedupe_key: str
    address: str
    audience: str
    kind: str
    trial: str
    finding_key: str
    finding_kind: str
    thread_key: str
    due_at: datetime
    attempts: int  # including this one
    maybe_sent: bool  # a crashed sender may have delivered it: look before sending again

    @classmethod
    def of(cls, row: Any) -> ClaimedRow:
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})


class Claims:
    """The outbox operations of one dispatcher (``owner``). Each method is one short transaction."""

    def __init__(self, engine: Engine, owner: str | None = None) -> None:
        self.engine = engine
        self.owner = owner or make_owner()
        self.skip_locked = engine.dialect.name == "postgresql"

    def due_addresses(self, now: datetime, limit: int = 1000) -> list[str]:
        """Addresses with rows claimable at ``now``."""
        query = (
            select(notifications.c.address)
            .where(notifications.c.status == PENDING, notifications.c.next_attempt_at <= now)
            .distinct()
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [str(address) for (address,) in conn.execute(query)]

    def claim(self, address: str, now: datetime, limit: int) -> list[ClaimedRow]:
        """Claim up to ``limit`` due rows of ``address`` (oldest due first); returns the claimed rows."""
        due = (
            select(notifications.c.id)
            .where(
                notifications.c.address == address,
                notifications.c.status == PENDING,
                notifications.c.next_attempt_at <= now,
            )
            .order_by(notifications.c.next_attempt_at, notifications.c.id)
            .limit(limit)
        )
        claim = update(notifications).values(
            status=SENDING,
            attempts=notifications.c.attempts + 1,
            claimed_by=self.owner,
            claimed_at=now,
            updated_at=now,
        )
        candidates: list[int] = []
        if not self.skip_locked:
            # Read outside the write transaction: SQLite cannot upgrade a read snapshot that a
            # concurrent commit made stale (SQLITE_BUSY_SNAPSHOT), but a fresh write waits its turn.
            with self.engine.connect() as conn:
                candidates = [int(row_id) for (row_id,) in conn.execute(due)]
            if not candidates:
                return []
        with self.engine.begin() as conn:
            if self.skip_locked:
                ids = [row.id for row in conn.execute(due.with_for_update(skip_locked=True))]
                if ids:
                    conn.execute(claim.where(notifications.c.id.in_(ids), notifications.c.status == PENDING))
            else:
                ids = []
                for row_id in candidates:
                    result = conn.execute(
                        claim.where(notifications.c.id == row_id, notifications.c.status == PENDING)
                    )
                    if result.rowcount == 1:
                        ids.append(row_id)
            if not ids:
                return []
            rows = conn.execute(
                select(notifications)
                .where(notifications.c.id.in_(ids))
                .order_by(notifications.c.next_attempt_at, notifications.c.id)
            )
            return [ClaimedRow.of(row) for row in rows]

    def _finish(self, row_id: int, now: datetime, **values: Any) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                update(notifications)
                .where(
                    notifications.c.id == row_id,
                    notifications.c.status == SENDING,
                    notifications.c.claimed_by == self.owner,
                )
                .values(updated_at=now, **values)
            )
            done = bool(result.rowcount == 1)
            if done and values.get("status") == SENT:  # the audit trail lists every alert sent
                kind, address = conn.execute(
                    select(notifications.c.kind, notifications.c.address).where(notifications.c.id == row_id)
                ).one()
                record_audit(conn, now, "dispatcher", "alert.sent", "notification", row_id,
                             detail=f"{kind} to {address}", before=SENDING, after=SENT)  # fmt: skip
        return done

    def sent(
        self,
        row_id: int,
        now: datetime,
        delivery: Delivery,
        *,
        summary: str | None = None,
        body: str | None = None,
        exam_start: datetime | None = None,
    ) -> bool:
        """Record a delivery; False when the row is no longer ours (it was taken back)."""
        values: dict[str, Any] = {
            "status": SENT,
            "sent_at": now,
            "external_ref": delivery.as_dict(),
            "last_error": "",
            "maybe_sent": False,
            "exam_start": exam_start,
        }
        if summary is not None:
            values["summary"] = summary
        if body is not None:
            values["body"] = body
        return self._finish(row_id, now, **values)

    def retry(
        self, row_id: int, now: datetime, at: datetime, error: str, *, maybe_sent: bool, count: bool = True
    ) -> bool:
        """Back to ``pending``, claimable from ``at``; ``count=False`` gives the attempt back (rate limit)."""
        values: dict[str, Any] = {
            "status": PENDING,
            "next_attempt_at": at,
            "last_error": error[:200],
            "maybe_sent": maybe_sent,
        }
        if not count:
            values["attempts"] = notifications.c.attempts - 1
        return self._finish(row_id, now, **values)

    def fail(self, row_id: int, now: datetime, error: str) -> bool:
        """``failed``: no further attempt (a permanent error, or attempts exhausted)."""
        return self._finish(row_id, now, status=FAILED, last_error=error[:200])

    def release(self, row_ids: Sequence[int], now: datetime) -> None:
        """Give back claimed rows that were never attempted (shutting down)."""
        for row_id in row_ids:
            self._finish(row_id, now, status=PENDING, attempts=notifications.c.attempts - 1, claimed_by=None)

    def recover(self, now: datetime, timeout: timedelta) -> int:
        """Put rows left ``sending`` by dead dispatchers back to ``pending`` (``maybe_sent``); how many."""
        query = select(notifications.c.id, notifications.c.claimed_by, notifications.c.claimed_at).where(
            notifications.c.status == SENDING
        )
        with self.engine.connect() as conn:
            stuck = list(conn.execute(query))
        recovered = 0
        for row in stuck:
            owner = row.claimed_by or ""
            if owner == self.owner:
                continue
            expired = row.claimed_at is None or row.claimed_at < now - timeout
            if not (expired or _process_gone(owner)):
                continue
            owned_by = (
                notifications.c.claimed_by.is_(None)
                if row.claimed_by is None
                else notifications.c.claimed_by == row.claimed_by
            )
            with self.engine.begin() as conn:
                result = conn.execute(
                    update(notifications)
                    .where(notifications.c.id == row.id, notifications.c.status == SENDING, owned_by)
                    .values(
                        status=PENDING,
                        maybe_sent=True,
                        next_attempt_at=now,
                        claimed_by=None,
                        last_error="sender_lost",
                        updated_at=now,
                    )
                )
            recovered += int(result.rowcount == 1)
        return recovered

    def thread(self, address: str, thread_key: str) -> list[SentBefore]:
        """Messages already delivered to ``address`` in ``thread_key``, oldest first (the root first)."""
        if not thread_key:
            return []
        query = (
            select(
                notifications.c.id,
                notifications.c.kind,
                notifications.c.finding_kind,
                notifications.c.exam_start,
                notifications.c.external_ref,
            )
            .where(
                notifications.c.address == address,
                notifications.c.thread_key == thread_key,
                notifications.c.status == SENT,
                notifications.c.external_ref.is_not(None),
            )
            .order_by(notifications.c.sent_at, notifications.c.id)
        )
        with self.engine.connect() as conn:
            return [
                SentBefore(
                    int(row.id),
                    row.kind,
                    row.finding_kind,
                    row.exam_start,
                    Delivery.from_dict(row.external_ref),
                )
                for row in conn.execute(query)
            ]
