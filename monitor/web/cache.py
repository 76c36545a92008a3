"""Rendered parts of the busiest pages, kept while the data under them has not changed.

The Upcoming list and a trial's matrix are what the office keeps open all day, and
twenty people reloading them would otherwise rebuild the same 6,000-cell table over and
over. A part is kept under a key (the page, the account's scope and filters) together with
the store's *data version* read when it was built, and reused while:

- the data version is unchanged: :func:`monitor.store.dashboard.data_version` reads, in a
  few index lookups, the latest finding, occurrence and enrolment change, the newest
  protocol version and, for pages that show exams' times, rooms and alerts, the newest
  exam event and outbox change;
  so an evaluation, an acknowledgement, an enrolment change and (for those pages) a
  booking or an alert sent make the next request rebuild; and
- it is younger than ``[web] page_cache_seconds`` (default 10): the bound for what the
  version cannot see: a timepoint the engine stopped planning is deleted, not updated, and
  a change stamped earlier than the newest one already stored (another host's clock
  behind this one's) does not move the maximum. ``0`` turns the cache off.

Only rendered markup of pages the account was allowed to open is kept, in this process's
memory, never on disk; the key carries the account's scope, so a coordinator never gets a
part built for another scope. Every view is still audited: the cache sits below the audit.
Concurrent requests for a missing part wait for one build instead of building it twenty times.
While one request rebuilds a part, the others take the part it replaces, if that is younger
than ``page_cache_seconds``: it is at most one build behind the store, which no one reading
can tell from a change arriving a moment later, and the feed's steady changes no longer
stall twenty readers behind each rebuild. Except for whoever changed something: after a
POST the browser carries a cookie (:data:`CHANGED_COOKIE`, ``page_cache_seconds`` long)
that makes its requests wait for parts of the store as it is (:data:`READ_YOUR_CHANGES`),
so the page after "Save" always shows the save, whichever worker process answers.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection

from monitor.store.dashboard import DataVersion, data_version

T = TypeVar("T")

# Set by monitor.web.security.SecurityHeaders after a POST, read back from the request.
CHANGED_COOKIE = "hiro_changed"
# True while a request of a browser that changed something lately is answered: parts older
# than the store's version are then never served (the module doc).
READ_YOUR_CHANGES: ContextVar[bool] = ContextVar("read_your_changes", default=False)


@dataclass(slots=True)
class _Entry:
    version: DataVersion
    built_at: float
    value: Any


class PageCache:
    """Parts of pages by key, each valid for one data version and at most ``max_age`` seconds."""

    def __init__(self, max_age: float, size: int = 256, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self.size = size
        self.clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._guard = threading.Lock()
        self._building: dict[Hashable, threading.Lock] = {}
        self.hits = 0
        self.builds = 0

    @property
    def enabled(self) -> bool:
        return self.max_age > 0

    def _fresh(self, key: Hashable, version: DataVersion) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None or entry.version != version or self.clock() - entry.built_at > self.max_age:
            return None
        self._entries.move_to_end(key)
        return entry

    def _may_stand_in(self, aged: _Entry, version: DataVersion) -> bool:
        """Whether ``aged`` may answer while its replacement is built: it is only old (its
        version is the store's), or it is one version behind, younger than ``max_age``, and
        the request is not of a browser that just changed something."""
        if aged.version == version:
            return True
        return not READ_YOUR_CHANGES.get() and self.clock() - aged.built_at <= self.max_age

    def get(self, key: Hashable, version: DataVersion, build: Callable[[], Any]) -> Any:
        """The part under ``key`` built at ``version``, building it (once) if missing or stale;
        while another request builds it, the part it replaces may answer (:meth:`_may_stand_in`)."""
        if not self.enabled:
            return build()
        with self._guard:
            entry = self._fresh(key, version)
            if entry is not None:
                self.hits += 1
                return entry.value
            aged = self._entries.get(key)
            if aged is not None and key in self._building and self._may_stand_in(aged, version):
                self.hits += 1
                return aged.value
            building = self._building.setdefault(key, threading.Lock())
        with building:  # one build per key; the others wait for it and take its result
            with self._guard:
                entry = self._fresh(key, version)
                if entry is not None:
                    self.hits += 1
                    return entry.value
            try:
                value = build()
            finally:
                with self._guard:
                    if self._building.get(key) is building:  # not a later build's registration
                        del self._building[key]
            with self._guard:
                self.builds += 1
                self._entries[key] = _Entry(version, self.clock(), value)
                self._entries.move_to_end(key)
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
        return value

    def part(
        self, conn: Connection, key: Hashable, build: Callable[[Connection], T], *, feed: bool = True
    ) -> T:
        """``build(conn)``, or what it returned for ``key`` at the store's current data version
        (``feed``: see :func:`data_version`)."""
        if not self.enabled:
            return build(conn)
        result: T = self.get(key, data_version(conn, feed=feed), lambda: build(conn))
        return result

    def clear(self) -> None:
        """Forget every part (after this process changed what they show)."""
        with self._guard:
            self._entries.clear()
