"""Messages: every input a feed received, whatever became of it, and what feed health shows.

Writing (the intakes, :mod:`monitor.feeds.hl7.intake` and :mod:`monitor.feeds.fhir.storing`):

- :func:`insert_message` stores one message in one statement on the driver,
  ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` (SQLite 3.35+, PostgreSQL): no row comes
  back when its ``content_key`` (a resend) or its ``dedupe_key`` (the first message of a
  key, taken) is already stored; looking them up first cost a statement per message.
- :func:`stored_answer`, :func:`first_of_key`, :func:`count_resend`: what a resend was
  answered the first time, the first message of a reused key, the resend counter.
- :func:`pending_messages` / :func:`set_outcome`: messages stored before they were processed
  (``ack_mode = "after_storing_raw"``).

Reading: :func:`feed_health`, :func:`reused_keys`, :func:`raw_message` (the payload is PHI:
admins' page only); :func:`purge_payloads` for retention. ``/metrics`` counts the messages
with :mod:`monitor.store.message_tally`. Rejection reasons (``error``) are plain text without PHI by contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, case, func, select, update

from monitor.store.driver import driver_for
from monitor.store.message_tally import message_counts
from monitor.store.schema import exams, feed_polls, messages

__all__ = [
    "FeedHealth",
    "FeedSummary",
    "NewMessage",
    "PendingMessage",
    "StoredAnswer",
    "aware",
    "count_resend",
    "feed_health",
    "first_of_key",
    "insert_message",
    "latest_of_key",
    "malformed_seen",
    "pending_messages",
    "purge_payloads",
    "raw_message",
    "reused_keys",
    "set_outcome",
    "stored_answer",
]


@dataclass(frozen=True, slots=True)
class NewMessage:
    """One message as it is stored. ``dedupe_key`` marks the first message of a key (NULL on
    a reused key); ``content_key`` what makes a later message its resend (None: never)."""

    feed: str
    received_at: datetime
    payload: bytes
    body_digest: str
    outcome: str
    sender_application: str = ""
    sender_facility: str = ""
    control_id: str = ""
    message_type: str = ""
    peer: str = ""
    ack_code: str = ""
    error_code: str = ""
    error: str = ""
    dedupe_key: str | None = None
    content_key: str | None = None
    original_id: int | None = None
    reprocess_of: int | None = None  # a reprocessing of this rejected message (the browser)

    def values(self) -> dict[str, Any]:
        return {
            "feed": self.feed,
            "sender_application": self.sender_application[:180],
            "sender_facility": self.sender_facility[:180],
            "control_id": self.control_id[:199],
            "message_type": self.message_type[:40],
            "received_at": self.received_at,
            "peer": self.peer[:80],
            "payload": self.payload,
            "body_digest": self.body_digest,
            "outcome": self.outcome,
            "ack_code": self.ack_code,
            "error_code": self.error_code,
            "error": self.error[:2000],
            "dedupe_key": self.dedupe_key[:600] if self.dedupe_key else None,
            "content_key": self.content_key,
            "original_id": self.original_id,
            "key_reused": int(self.original_id is not None),
            "reprocess_of": self.reprocess_of,
        }


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """What a stored message was answered: a resend is answered the same."""

    id: int
    outcome: str
    ack_code: str
    error_code: str
    error: str


@dataclass(frozen=True, slots=True)
class PendingMessage:
    id: int
    payload: bytes
    key_reused: bool


_SAME_CONTENT = select(
    messages.c.id, messages.c.outcome, messages.c.ack_code, messages.c.error_code, messages.c.error
).where(messages.c.content_key == bindparam("b_content"))
_SETTLED = (
    select(messages.c.id, messages.c.outcome, messages.c.ack_code, messages.c.error_code, messages.c.error)
    .where(messages.c.reprocess_of == bindparam("b_id"), messages.c.outcome != "rejected")
    .order_by(messages.c.id)
    .limit(1)
)
_FIRST_OF_KEY = select(messages.c.id).where(messages.c.dedupe_key == bindparam("b_key"))
_COUNT_RESEND = (
    update(messages).where(messages.c.id == bindparam("b_id")).values(duplicates=messages.c.duplicates + 1)
)
_SET_OUTCOME = update(messages).where(messages.c.id == bindparam("b_id"))
# On the driver (one statement per message, :mod:`monitor.store.driver`); no target: either
# unique key (content_key, dedupe_key) taken means "seen".
_MESSAGE_COLUMNS = (
    "feed", "sender_application", "sender_facility", "control_id", "message_type", "received_at",
    "peer", "payload", "body_digest", "outcome", "ack_code", "error_code", "error", "dedupe_key",
    "content_key", "original_id", "key_reused", "reprocess_of",
)  # fmt: skip
# Built from the constant column names above; every value is a bound parameter.
_INSERT_UNLESS_SEEN = (
    f"INSERT INTO messages ({', '.join(_MESSAGE_COLUMNS)}, duplicates) VALUES "  # noqa: S608
    f"({', '.join(':' + name for name in _MESSAGE_COLUMNS)}, 0) ON CONFLICT DO NOTHING RETURNING id"
)


def insert_message(conn: Connection, message: NewMessage) -> int | None:
    """Store ``message``; its id, or None when its content or its key is already taken."""
    driver = driver_for(conn)
    values = message.values()
    values["received_at"] = driver.time(values["received_at"])
    row = driver.execute(conn, _INSERT_UNLESS_SEEN, values).fetchone()
    return None if row is None else int(row[0])


def stored_answer(conn: Connection, content_key: str) -> StoredAnswer | None:
    """The stored message with this content, and how it was answered; for a rejected one
    that a reprocessing has since settled, how that reprocessing would have answered (the
    sender who resends it now gets AA, and nothing is applied twice)."""
    row = conn.execute(_SAME_CONTENT, {"b_content": content_key}).first()
    if row is None:
        return None
    answer = row
    if row.outcome == "rejected":
        answer = conn.execute(_SETTLED, {"b_id": row.id}).first() or row
    return StoredAnswer(int(row.id), answer.outcome, answer.ack_code, answer.error_code, answer.error)


def first_of_key(conn: Connection, dedupe_key: str) -> int | None:
    """The first message stored with ``dedupe_key`` (feed|MSH-3|MSH-4|MSH-10)."""
    found = conn.execute(_FIRST_OF_KEY, {"b_key": dedupe_key}).scalar_one_or_none()
    return None if found is None else int(found)


def count_resend(conn: Connection, message_id: int) -> None:
    conn.execute(_COUNT_RESEND, {"b_id": message_id})


def latest_of_key(conn: Connection, dedupe_key: str) -> tuple[int, str] | None:
    """For a polled resource's key: the first message of the key and the body digest of the
    latest message in its chain (the first, or the newest linked to it); None when new."""
    first = first_of_key(conn, dedupe_key)
    if first is None:
        return None
    latest = conn.execute(
        select(messages.c.body_digest)
        .where((messages.c.id == first) | (messages.c.original_id == first))
        .order_by(messages.c.id.desc())
        .limit(1)
    ).scalar_one()
    return first, str(latest)


def malformed_seen(conn: Connection, dedupe_key: str) -> bool:
    """Whether a malformed input with this key (feed|malformed|digest) was stored before."""
    return first_of_key(conn, dedupe_key) is not None


def pending_messages(conn: Connection, feed: str, limit: int) -> list[PendingMessage]:
    """Up to ``limit`` messages of ``feed`` stored but not yet processed, oldest first."""
    rows = conn.execute(
        select(messages.c.id, messages.c.payload, messages.c.key_reused)
        .where(messages.c.feed == feed, messages.c.outcome == "pending")
        .order_by(messages.c.id)
        .limit(limit)
    ).all()
    return [PendingMessage(int(row.id), row.payload, bool(row.key_reused)) for row in rows]


def set_outcome(
    conn: Connection, message_id: int, outcome: str, ack_code: str, error_code: str, error: str
) -> None:
    conn.execute(
        _SET_OUTCOME,
        {"b_id": message_id, "outcome": outcome, "ack_code": ack_code, "error_code": error_code,
         "error": error[:2000]},
    )  # fmt: skip


def purge_payloads(engine: Engine, now: datetime, retention_days: int) -> int:
    """Empty the payload (PHI) of messages received more than ``retention_days`` before
    ``now`` and stamp ``purged_at``; the rows stay, so resends are still recognised."""
    cutoff = now - timedelta(days=retention_days)
    with engine.begin() as conn:
        result = conn.execute(
            update(messages)
            .where(and_(messages.c.received_at < cutoff, messages.c.payload.is_not(None)))
            .values(payload=None, purged_at=now)
        )
    return int(result.rowcount)


# -- feed health ---------------------------------------------------------------------------

_RECENT = timedelta(hours=24)
REJECTED_SHOWN = 50
REUSED_SHOWN = 50


def aware(value: Any) -> datetime:
    """A time read back from an aggregate (SQLite answers max() as naive text) as aware UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


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


def feed_health(conn: Connection, now: datetime) -> FeedHealth:
    """Per-feed counts over the last 24 hours, the latest rejections, the reused keys and
    the last poll of each polling feed."""
    health = FeedHealth()
    since = now - _RECENT
    hour_ago = now - timedelta(hours=1)
    summaries: dict[str, FeedSummary] = {}
    for feed, last in message_counts(conn, now).last_received:  # not a scan of every message
        summaries[feed] = FeedSummary(feed, last)
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
                messages.c.id, messages.c.feed, messages.c.received_at, messages.c.message_type,
                messages.c.ack_code, messages.c.error,
            )
            .where(messages.c.outcome == "rejected")
            .order_by(messages.c.id.desc())
            .limit(REJECTED_SHOWN)
        )
    )  # fmt: skip
    health.reused = reused_keys(conn)
    # The reused keys' first messages (ix_messages_original_id), then their feeds: grouping
    # the messages by feed first read every row (110 ms at a million, none of them reused).
    firsts = select(messages.c.original_id).where(messages.c.original_id.is_not(None)).distinct().subquery()
    for feed, keys in conn.execute(
        select(messages.c.feed, func.count())
        .join_from(firsts, messages, messages.c.id == firsts.c.original_id)
        .group_by(messages.c.feed)
    ):
        summaries.setdefault(feed, FeedSummary(feed)).reused_keys = int(keys)
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
                messages.c.feed, reuses.c.first, messages.c.control_id, messages.c.sender_application,
                messages.c.sender_facility, reuses.c.times, reuses.c.last_seen, reuses.c.latest,
            )
            .join(reuses, reuses.c.first == messages.c.id)
            .order_by(reuses.c.latest.desc())
            .limit(limit)
        )
    )  # fmt: skip


def exam_message_payload(conn: Connection, exam_id: int) -> bytes | None:
    """The raw message (PHI) that last changed the exam; None once purged or when none."""
    query = (
        select(messages.c.payload)
        .join(exams, exams.c.last_message_id == messages.c.id)
        .where(exams.c.id == exam_id)
    )
    payload = conn.execute(query).scalar()
    return bytes(payload) if payload is not None else None


def raw_message(conn: Connection, message_id: int) -> Any | None:
    """One stored message with its payload (PHI), or None when absent."""
    return conn.execute(select(messages).where(messages.c.id == message_id)).first()
