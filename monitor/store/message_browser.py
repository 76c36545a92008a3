"""The integration team's message browser: search stored messages, page through them, read
one with what it did; and the bookkeeping of reprocessing a rejected one.

Pages are keyset pages, newest first, on ``(received_at, id)`` (index
``ix_messages_received_at``): the next page starts after the last row of this one, so a
page costs the same at message 5,000,000 as at message 50, and messages arriving meanwhile
do not shift what the next page shows. A search by accession, appointment id or MRN goes
through the exams the messages wrote events to (a rejected message wrote none: it is found
by control id, type, outcome, feed and time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, literal_column, select, tuple_

from monitor.store.messages import aware
from monitor.store.schema import exam_events, exams, messages

__all__ = [
    "OUTCOMES",
    "MessageFilter",
    "MessagePage",
    "PageMark",
    "Reprocessing",
    "exams_touched",
    "rejected_since",
    "reprocess_source",
    "reprocessing_of",
    "search_messages",
]

# What the browser's outcome filter offers: the stored outcomes, and two marks a message
# carries besides its outcome (resent by its sender; its control id came with another body).
OUTCOMES = ("accepted", "skipped", "rejected", "pending", "duplicate", "key_reused", "reprocessed")
PAGE = 50
_LISTED = (
    messages.c.id, messages.c.feed, messages.c.received_at, messages.c.message_type,
    messages.c.control_id, messages.c.sender_application, messages.c.sender_facility,
    messages.c.peer, messages.c.outcome, messages.c.ack_code, messages.c.error_code,
    messages.c.error, messages.c.duplicates, messages.c.key_reused, messages.c.original_id,
    messages.c.reprocess_of, messages.c.purged_at,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class PageMark:
    """Where a page ended: the next one starts after this message."""

    received_at: datetime
    id: int

    def text(self) -> str:
        return f"{self.id}@{self.received_at.isoformat()}"

    @classmethod
    def parse(cls, text: str) -> PageMark:
        """The mark ``text()`` wrote; ValueError with a plain reason otherwise."""
        number, _, when = text.partition("@")
        try:
            moment = datetime.fromisoformat(when)
            return cls(aware(moment), int(number))
        except ValueError:
            raise ValueError(f"not a page mark: {text[:40]!r}") from None


@dataclass(frozen=True, slots=True)
class MessageFilter:
    """Every field narrows the search; empty ones do not."""

    control_id: str = ""
    accession: str = ""
    appointment: str = ""  # the exam's external id (Epic's CSN, a FHIR Appointment id)
    mrn: str = ""
    message_type: str = ""  # "SIU^S12", or "SIU" for every trigger
    outcome: str = ""  # one of OUTCOMES
    feed: str = ""
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.outcome and self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {self.outcome!r}")

    @property
    def by_patient(self) -> bool:
        """Whether the search looks for a patient (a PHI view: audited)."""
        return bool(self.mrn)


@dataclass(frozen=True, slots=True)
class MessagePage:
    rows: Sequence[Any]  # _LISTED columns, newest first
    next: PageMark | None  # None on the last page


def _conditions(wanted: MessageFilter) -> list[Any]:
    where: list[Any] = []
    if wanted.control_id:
        where.append(messages.c.control_id == wanted.control_id)
    if wanted.feed:
        where.append(messages.c.feed == wanted.feed)
    if wanted.message_type:
        kind = wanted.message_type.upper()
        where.append(
            messages.c.message_type == kind if "^" in kind else messages.c.message_type.like(f"{kind}^%")
        )
    if wanted.outcome == "duplicate":  # written out, as the partial index ix_messages_resent says it
        where.append(messages.c.duplicates > literal_column("0"))
    elif wanted.outcome == "key_reused":  # key_reused = 1 exactly then; this one is indexed
        where.append(messages.c.original_id.is_not(None))
    elif wanted.outcome == "reprocessed":
        where.append(messages.c.reprocess_of.is_not(None))
    elif wanted.outcome:
        where.append(messages.c.outcome == wanted.outcome)
    if wanted.since is not None:
        where.append(messages.c.received_at >= wanted.since)
    if wanted.until is not None:
        where.append(messages.c.received_at < wanted.until)
    exam_filters = [
        column == value
        for column, value in (
            (exams.c.accession, wanted.accession),
            (exams.c.external_id, wanted.appointment),
            (exams.c.mrn, wanted.mrn),
        )
        if value
    ]
    if exam_filters:
        written = (
            select(exam_events.c.message_id)
            .join(exams, exams.c.id == exam_events.c.exam_id)
            .where(*exam_filters, exam_events.c.message_id.is_not(None))
        )
        where.append(messages.c.id.in_(written))
    return where


def search_messages(
    conn: Connection, wanted: MessageFilter, after: PageMark | None = None, limit: int = PAGE
) -> MessagePage:
    """One page of the messages ``wanted`` describes, newest first, starting after ``after``."""
    where = _conditions(wanted)
    if after is not None:
        # A row value (SQLite 3.15+, PostgreSQL): both walk the index from the mark.
        where.append(tuple_(messages.c.received_at, messages.c.id) < tuple_(after.received_at, after.id))
    query = (
        select(*_LISTED)
        .where(*where)
        .order_by(messages.c.received_at.desc(), messages.c.id.desc())
        .limit(limit + 1)
    )
    rows = conn.execute(query).all()
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more else None
    return MessagePage(rows, PageMark(last.received_at, int(last.id)) if last is not None else None)


def exams_touched(conn: Connection, message_id: int) -> list[Any]:
    """The exams ``message_id`` wrote events to: id, external_id, accession, status, kind."""
    query = (
        select(exams.c.id, exams.c.external_id, exams.c.accession, exams.c.status, exam_events.c.kind)
        .join(exams, exams.c.id == exam_events.c.exam_id)
        .where(exam_events.c.message_id == message_id)
        .order_by(exam_events.c.id)
    )
    return list(conn.execute(query).all())


@dataclass(frozen=True, slots=True)
class Reprocessing:
    """A message's place in reprocessing: the rejected original it was made from (if it is
    an attempt) and the attempts made from it (oldest first: id, outcome, received_at)."""

    of: int | None
    attempts: Sequence[Any]

    @property
    def settled(self) -> Any | None:
        """The attempt that was not rejected, if any (it is never reprocessed again)."""
        return next((row for row in self.attempts if row.outcome != "rejected"), None)


def reprocessing_of(conn: Connection, message_id: int) -> Reprocessing:
    of = conn.execute(select(messages.c.reprocess_of).where(messages.c.id == message_id)).scalar()
    attempts = conn.execute(
        select(messages.c.id, messages.c.outcome, messages.c.received_at, messages.c.error)
        .where(messages.c.reprocess_of == message_id)
        .order_by(messages.c.id)
    ).all()
    return Reprocessing(None if of is None else int(of), list(attempts))


def rejected_since(conn: Connection, feed: str, since: datetime) -> list[int]:
    """Rejected messages of ``feed`` received at or after ``since`` that no attempt has
    settled yet (originals only, oldest first): what "reprocess all rejected" takes."""
    settled = select(messages.c.reprocess_of).where(
        messages.c.reprocess_of.is_not(None), messages.c.outcome != "rejected"
    )
    query = (
        select(messages.c.id)
        .where(
            messages.c.feed == feed,
            messages.c.outcome == "rejected",
            messages.c.received_at >= since,
            messages.c.reprocess_of.is_(None),
            messages.c.id.not_in(settled),
        )
        .order_by(messages.c.id)
    )
    return [int(found) for found in conn.execute(query).scalars()]


def reprocess_source(conn: Connection, message_id: int) -> Any | None:
    """A message to reprocess, locked against a concurrent attempt (PostgreSQL): id, feed,
    payload, outcome, reprocess_of, peer, and the sender's ids; None when absent."""
    query = (
        select(
            messages.c.id, messages.c.feed, messages.c.payload, messages.c.outcome,
            messages.c.reprocess_of, messages.c.peer,
        )
        .where(messages.c.id == message_id)
        .with_for_update()
    )  # fmt: skip
    return conn.execute(query).first()
