"""Planned notifications into the outbox, by dedupe key, in the evaluation's own transaction.

:func:`plan_notifications` makes the outbox match what the engine planned for a set of
enrolments (the planned set is complete for them, see ``rules.PlannedNotification``):

- a key never seen becomes a ``pending`` row, claimable from its ``due_at``;
- a ``pending`` row whose due time changed is moved, unless both times have already passed
  (an alert is planned "due now" at every evaluation: re-planning must not keep pushing it
  back, nor undo a retry's backoff);
- a ``cancelled`` row whose key is planned again (an exam moved back to its old time) is
  pending again: it was never delivered;
- a ``pending`` row of those enrolments whose key is no longer planned (exam rescheduled,
  cancelled, finding resolved, the exam time passed) becomes ``cancelled``;
- ``sending``, ``sent``, ``failed`` and ``skipped`` rows are left alone: one key, one delivery.

A quiet first run (``quiet_enrolments``, ``[dispatch] quiet_first_run``): when the outbox
holds no row at all, the store was never planned before (a fresh install pointed at a
schedule that already exists), and the booking notices of that planning announce bookings
made long before the monitor watched them. Those of the quiet enrolments (the evaluation
leaves out the ones whose exams changed while it ran: that is news) are written ``skipped`` instead of
``pending``, so their keys are never planned, nor sent, later either; reminders, sheets and
alerts are planned as always. A booking that arrives afterwards plans its notice as usual.

Alerts first planned late: a visit due with nothing booked is alerted now, when its window
opens and before it closes (``rules.judging.Run.alerts``); when the engine first plans such
alerts after some of their times have passed (the visit was found inside its window), only
the latest already due is sent: the earlier ones are written ``skipped`` (one message, not
three at once), the ones still to come stay pending.

A rescheduled exam plans new keys (its start is part of them), so its pending reminders
are cancelled and new ones written; the new booking notice is sent by the dispatcher as an
update of the message already posted about the exam. A cancelled exam's reminders are
cancelled here and the engine's ``cancelled`` finding plans the coordinator's alert.

:func:`plan_digests` writes the daily digest rows of every trial (one per coordinator
address and day; the dedupe key carries the day, so running it twice changes nothing).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, bindparam, select, update
from sqlalchemy.exc import IntegrityError

from monitor.store.driver import driver_for
from monitor.store.findings import chunks
from monitor.store.outbox import OutboxStatus
from monitor.store.schema import notifications
from notifiers.base import parse_address
from rules import NotificationKind, PlannedNotification, Trial

__all__ = [
    "PlanChanges",
    "digest_day",
    "digest_key",
    "never_planned",
    "plan_digests",
    "plan_notifications",
    "thread_key_for",
]

QUIET_FIRST_RUN_NOTE = "not sent: already booked when the monitor first planned (quiet first run)"
SUPERSEDED_NOTE = "not sent: a later alert about the same finding was already due when both were planned"

_LOAD_ALL_FROM = 2_000  # scopes larger than this read every pending row and filter in Python


@dataclass(slots=True)
class PlanChanges:
    """What one planning changed in the outbox."""

    added: int = 0
    moved: int = 0
    reinstated: int = 0
    cancelled: int = 0
    unchanged: int = 0
    skipped: int = 0  # written ``skipped``: a quiet first run's booking notices, superseded alerts

    @property
    def changed(self) -> bool:
        return bool(self.added or self.moved or self.reinstated or self.cancelled or self.skipped)

    def __str__(self) -> str:
        """For a log line: ``2 added, 1 moved, 3 cancelled`` (``nothing changed`` when so)."""
        counts = [(self.added, "added"), (self.moved, "moved"), (self.reinstated, "planned again"),
                  (self.cancelled, "cancelled"), (self.skipped, "skipped")]  # fmt: skip
        return ", ".join(f"{count} {what}" for count, what in counts if count) or "nothing changed"


def thread_key_for(exam_id: int | None, occurrence_key: str | None, finding_key: str) -> str:
    """Messages about one exam share a thread; alerts without an exam thread per visit."""
    if exam_id is not None:
        return f"exam:{exam_id}"
    if occurrence_key:
        return f"visit:{occurrence_key}"
    return f"finding:{finding_key}"


def _row_values(plan: PlannedNotification, summary: str, now: datetime) -> dict[str, Any]:
    channel, _ = parse_address(plan.address)
    return {
        "dedupe_key": plan.dedupe_key,
        "audience": plan.audience.value,
        "channel": channel,
        "address": plan.address,
        "kind": plan.kind.value,
        "trial": plan.trial,
        "enrolment_id": plan.enrolment_id or None,
        "exam_id": plan.exam_id,
        "finding_key": plan.finding_key,
        "finding_kind": plan.finding_kind.value,
        "thread_key": thread_key_for(plan.exam_id, plan.occurrence_key, plan.finding_key),
        "due_at": plan.due_at,
        "status": OutboxStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": plan.due_at,
        "maybe_sent": False,
        "last_error": "",
        "summary": summary,
        "created_at": now,
        "updated_at": now,
    }


def _existing(conn: Connection, keys: Collection[str]) -> dict[str, Any]:
    query = select(
        notifications.c.id,
        notifications.c.dedupe_key,
        notifications.c.status,
        notifications.c.due_at,
        notifications.c.next_attempt_at,
        notifications.c.attempts,
    )
    found: dict[str, Any] = {}
    for part in chunks(keys):
        for row in conn.execute(query.where(notifications.c.dedupe_key.in_(part))):
            found[row.dedupe_key] = row
    return found


def _pending_in_scope(conn: Connection, scope: Collection[int]) -> list[Any]:
    query = select(notifications.c.id, notifications.c.dedupe_key, notifications.c.enrolment_id).where(
        notifications.c.status == OutboxStatus.PENDING.value, notifications.c.enrolment_id.is_not(None)
    )
    if len(scope) > _LOAD_ALL_FROM:
        wanted = set(scope)
        return [row for row in conn.execute(query) if row.enrolment_id in wanted]
    rows: list[Any] = []
    for part in chunks(scope):
        rows.extend(conn.execute(query.where(notifications.c.enrolment_id.in_(part))))
    return rows


@dataclass(slots=True)
class _Writes:
    """What planning will write: new rows, moved due times, cancelled rows planned again."""

    inserts: list[dict[str, Any]] = field(default_factory=list)
    moves: list[dict[str, Any]] = field(default_factory=list)
    reinstates: list[dict[str, Any]] = field(default_factory=list)


def plan_notifications(
    conn: Connection,
    planned: Iterable[PlannedNotification],
    scope: Collection[int],
    now: datetime,
    summaries: Mapping[str, str] | None = None,
    *,
    quiet_enrolments: Collection[int] = (),
    first_planning: bool | None = None,
) -> PlanChanges:
    """Make the outbox rows of the enrolments in ``scope`` match ``planned`` (see the module doc).

    ``summaries`` maps finding keys to their one-line detail (no PHI), shown until a row is
    sent. An outbox that holds no row yet gets the booking notices of ``quiet_enrolments``
    as ``skipped`` rows (a quiet first run, see the module doc); ``first_planning`` says
    whether this is that first planning when the caller decided it before planning in parts
    (None: ask the outbox). Runs in the caller's transaction; raises
    SQLAlchemy errors (an IntegrityError when a concurrent evaluation inserted the same key
    first: the caller retries).
    """
    wanted: dict[str, PlannedNotification] = {}
    for plan in planned:
        wanted.setdefault(plan.dedupe_key, plan)
    if first_planning is None:
        first_planning = bool(quiet_enrolments) and never_planned(conn)
    quiet = set(quiet_enrolments) if quiet_enrolments and first_planning else set()
    changes = PlanChanges()
    writes = _compare(wanted, _existing(conn, wanted), quiet, summaries or {}, now, changes)
    _write(conn, writes, now)
    changes.cancelled = _cancel_vanished(conn, scope, wanted, now)
    changes.added = len(writes.inserts) - changes.skipped
    changes.moved, changes.reinstated = len(writes.moves), len(writes.reinstates)
    return changes


def _compare(
    wanted: Mapping[str, PlannedNotification],
    existing: Mapping[str, Any],
    quiet: Collection[int],
    summaries: Mapping[str, str],
    now: datetime,
    changes: PlanChanges,
) -> _Writes:
    """Each planned key against its row: new (pending, or skipped on a quiet first run),
    cancelled and planned again (pending, attempts reset), pending but due at another time
    (moved), or as it is (counted in ``changes.unchanged``)."""
    writes = _Writes()
    for key, plan in wanted.items():
        row = existing.get(key)
        if row is None:
            values = _row_values(plan, summaries.get(plan.finding_key, ""), now)
            if plan.kind is NotificationKind.BOOKING and plan.enrolment_id in quiet:
                values.update(status=OutboxStatus.SKIPPED.value, summary=QUIET_FIRST_RUN_NOTE)
                changes.skipped += 1
            writes.inserts.append(values)
        elif row.status == OutboxStatus.CANCELLED:
            writes.reinstates.append({"b_id": row.id, "b_due": plan.due_at})
        elif row.status == OutboxStatus.PENDING and _moved(row.due_at, plan.due_at, now):
            next_attempt = plan.due_at if row.attempts == 0 else max(plan.due_at, row.next_attempt_at)
            writes.moves.append({"b_id": row.id, "b_due": plan.due_at, "b_next": next_attempt})
        else:
            changes.unchanged += 1
    changes.skipped += _skip_superseded(writes.inserts, now)
    return writes


def _skip_superseded(inserts: list[dict[str, Any]], now: datetime) -> int:
    """Of the new pending alerts about one finding to one address already due, keep the latest;
    write the others ``skipped``. Returns how many were skipped."""
    due: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for values in inserts:
        pending = values["status"] == OutboxStatus.PENDING.value
        if pending and values["kind"] == NotificationKind.ALERT.value and values["due_at"] <= now:
            due.setdefault((values["finding_key"], values["address"]), []).append(values)
    skipped = 0
    for alerts in due.values():
        latest = max(alerts, key=lambda values: values["due_at"])
        for values in alerts:
            if values is not latest:
                values.update(status=OutboxStatus.SKIPPED.value, summary=SUPERSEDED_NOTE)
                skipped += 1
    return skipped


def _write(conn: Connection, writes: _Writes, now: datetime) -> None:
    """Bulk statements for what :func:`_compare` decided; a row that changed status since
    (a dispatcher claimed it) is left alone."""
    by_id = notifications.c.id == bindparam("b_id")
    driver_for(conn).insert_many(conn, notifications, writes.inserts)
    if writes.moves:
        conn.execute(
            update(notifications)
            .where(by_id, notifications.c.status == OutboxStatus.PENDING.value)
            .values(due_at=bindparam("b_due"), next_attempt_at=bindparam("b_next"), updated_at=now),
            writes.moves,
        )
    if writes.reinstates:
        conn.execute(
            update(notifications)
            .where(by_id, notifications.c.status == OutboxStatus.CANCELLED.value)
            .values(
                status=OutboxStatus.PENDING.value,
                due_at=bindparam("b_due"),
                next_attempt_at=bindparam("b_due"),
                attempts=0,
                last_error="",
                updated_at=now,
            ),
            writes.reinstates,
        )


def _cancel_vanished(conn: Connection, scope: Collection[int], wanted: Collection[str], now: datetime) -> int:
    """Cancel the pending rows of the enrolments in ``scope`` that are no longer planned."""
    gone = [row.id for row in _pending_in_scope(conn, scope) if row.dedupe_key not in wanted]
    # ``status || ''`` keeps SQLite from reading ``ix_notifications_status``: without
    # statistics it would scan every pending row of the outbox (15 ms at 115,000, the p95 of
    # a booking's re-evaluation, issue 15) instead of looking the ids up by primary key.
    still_pending = notifications.c.status.concat("") == OutboxStatus.PENDING.value
    for part in chunks(gone):
        conn.execute(
            update(notifications)
            .where(notifications.c.id.in_(part), still_pending)
            .values(status=OutboxStatus.CANCELLED.value, updated_at=now)
        )
    return len(gone)


def never_planned(conn: Connection) -> bool:
    """Whether the outbox holds no row at all (of any status, digests included)."""
    return conn.execute(select(notifications.c.id).limit(1)).first() is None


def _moved(current: datetime, planned: datetime, now: datetime) -> bool:
    return current != planned and not (current <= now and planned <= now)


# -- daily digests -------------------------------------------------------------------------


def digest_key(address: str, trial: str, day: str) -> str:
    return f"digest|{address}|{trial}|{day}"


def plan_digests(
    engine: Engine,
    trials: Mapping[str, Trial],
    now: datetime,
    zone: ZoneInfo,
    has_news: Mapping[str, bool] | None = None,
) -> int:
    """Write today's (site zone) digest row for each coordinator address of each trial.

    ``has_news`` maps trial ids to whether the digest would list anything; trials mapped
    to False get no digest (no daily "nothing to report" in a busy channel). Returns the
    number of rows written; rows already there are left as they are.
    """
    day = now.astimezone(zone).date().isoformat()
    due = now.astimezone(UTC)
    written = 0
    for trial in trials.values():
        if has_news is not None and not has_news.get(trial.id, False):
            continue
        for address in trial.routing.coordinators:
            key = digest_key(address, trial.id, day)
            values = {
                "dedupe_key": key,
                "audience": "coordinator",
                "channel": parse_address(address)[0],
                "address": address,
                "kind": "digest",
                "trial": trial.id,
                "finding_key": "",
                "finding_kind": "",
                "thread_key": "",
                "due_at": due,
                "status": OutboxStatus.PENDING.value,
                "attempts": 0,
                "next_attempt_at": due,
                "maybe_sent": False,
                "last_error": "",
                "summary": f"Daily digest of {trial.id} for {day}",
                "created_at": now,
                "updated_at": now,
            }
            try:
                with engine.begin() as conn:
                    found = conn.execute(
                        select(notifications.c.id).where(notifications.c.dedupe_key == key)
                    ).first()
                    if found is None:
                        conn.execute(notifications.insert(), [values])
                        written += 1
            except IntegrityError:  # another replica wrote it first: that is the one
                continue
    return written


def digest_day(due_at: datetime, zone: ZoneInfo) -> str:
    """The site-local day a digest row (due at its planning time) reports on."""
    return due_at.astimezone(zone).date().isoformat()
