"""How many messages each feed stored, kept up to date without counting them all again.

``/metrics`` is scraped every 15 seconds or so, and the feed health page shows when each
feed last delivered. Counting the whole messages table for that took 1.5 s at a million
messages on SQLite (0.6 s for the feed health's newest message per feed), linear in the
table: a year of a busy feed is several million, past Prometheus' scrape timeout. Rows are
never deleted, and a row's feed, type, time and reuse never change; its outcome changes
once, from ``pending``, when it is processed (``ack_mode = "after_storing_raw"``). So the
counts of the rows up to a mark are kept (one :class:`MessageTally` per engine, in this
process), and each call counts only the rows after the mark, by primary key.

The mark stops before the first ``pending`` row, and before the rows received in the last
``SETTLING`` (on PostgreSQL, ids are taken from a sequence before commit, so a row with a
smaller id can become visible after a larger one: a transaction of the feed writer lasts
milliseconds, and one stuck for two minutes already marks the writer down on /healthz).
A store emptied and made again under the same engine (the row at the mark is gone or is
another) is counted again from the start.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, func, select

from monitor.store.driver import Driver
from monitor.store.schema import messages

__all__ = ["MessageCounts", "message_counts"]

SETTLING = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class MessageCounts:
    """What ``/metrics`` exports of the messages (types as stored: the caller bounds them)."""

    by_type: Sequence[tuple[str, str, str, int]]  # (feed, message type, outcome, count)
    key_reused: Sequence[tuple[str, int]]  # (feed, messages that reused a key)
    last_received: Sequence[tuple[str, datetime]]  # (feed, newest received_at)


class _Counts:
    """Counts of a range of rows, and merging them."""

    def __init__(self) -> None:
        self.by_type: Counter[tuple[str, str, str]] = Counter()
        self.reused: Counter[str] = Counter()
        self.last: dict[str, datetime] = {}

    def add(self, other: _Counts) -> None:
        self.by_type.update(other.by_type)
        self.reused.update(other.reused)
        for feed, at in other.last.items():
            if feed not in self.last or at > self.last[feed]:
                self.last[feed] = at

    def merged(self, other: _Counts) -> _Counts:
        both = _Counts()
        both.add(self)
        both.add(other)
        return both

    def counts(self) -> MessageCounts:
        return MessageCounts(
            [(feed, kind, outcome, count) for (feed, kind, outcome), count in sorted(self.by_type.items())],
            sorted(self.reused.items()),
            sorted(self.last.items()),
        )


def _count(conn: Connection, after: int, up_to: int | None) -> _Counts:
    """The counts of the rows with ``after < id <= up_to`` (no upper bound: None)."""
    found = _Counts()
    where = [messages.c.id > after] + ([messages.c.id <= up_to] if up_to is not None else [])
    query = (
        select(
            messages.c.feed,
            messages.c.message_type,
            messages.c.outcome,
            func.count(),
            func.count(messages.c.original_id),  # the rows that reused a key
            func.max(messages.c.received_at),
        )
        .where(*where)
        .group_by(messages.c.feed, messages.c.message_type, messages.c.outcome)
    )
    for feed, kind, outcome, count, reuses, last in conn.execute(query):
        found.by_type[(feed, kind or "", outcome)] += int(count)
        if reuses:
            found.reused[feed] += int(reuses)
        at = Driver.read_time(last)
        if at is not None and (feed not in found.last or at > found.last[feed]):
            found.last[feed] = at
    return found


class MessageTally:
    """The counts of one store's messages up to a mark (module doc)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mark = 0
        self._mark_received: datetime | None = None
        self._settled = _Counts()

    def counts(self, conn: Connection, now: datetime) -> MessageCounts:
        with self._lock:
            if self._mark and self._row_at(conn, self._mark) != self._mark_received:
                self._mark, self._mark_received, self._settled = 0, None, _Counts()  # made again
            mark = self._settled_up_to(conn, now)
            if mark > self._mark:
                self._settled.add(_count(conn, self._mark, mark))
                self._mark, self._mark_received = mark, self._row_at(conn, mark)
            return self._settled.merged(_count(conn, self._mark, None)).counts()

    @staticmethod
    def _row_at(conn: Connection, message_id: int) -> datetime | None:
        """When the message at the mark was received: rows are never deleted, so a mark whose
        row is gone or different belongs to a store that was emptied and made again."""
        found: datetime | None = conn.execute(
            select(messages.c.received_at).where(messages.c.id == message_id)
        ).scalar()
        return found

    def _settled_up_to(self, conn: Connection, now: datetime) -> int:
        """The highest id up to which every row is settled: not pending, and received
        ``SETTLING`` or more before ``now`` (read from the rows after the mark only)."""
        after_mark = messages.c.id > self._mark
        pending = conn.execute(
            select(func.min(messages.c.id)).where(after_mark, messages.c.outcome == "pending")
        ).scalar()
        old = conn.execute(
            select(func.max(messages.c.id)).where(after_mark, messages.c.received_at <= now - SETTLING)
        ).scalar()
        if old is None:
            return self._mark
        return int(old) if pending is None else min(int(old), int(pending) - 1)


_TALLIES: weakref.WeakKeyDictionary[Engine, MessageTally] = weakref.WeakKeyDictionary()
_TALLIES_LOCK = threading.Lock()


def message_counts(conn: Connection, now: datetime) -> MessageCounts:
    """The messages by feed, type and outcome, the key reuses and the newest message of
    each feed, as of ``now``; after the first call, only the rows added since are read."""
    with _TALLIES_LOCK:
        tally = _TALLIES.get(conn.engine)
        if tally is None:
            tally = _TALLIES[conn.engine] = MessageTally()
    return tally.counts(conn, now)
