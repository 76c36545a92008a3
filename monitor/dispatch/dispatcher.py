"""Sending the outbox: due rows claimed, sent on worker threads, paced per address, recorded.

How a tick works (``tick``, every ``scheduler.dispatch_every_seconds``; it returns at once):

1. Rows left ``sending`` by a dead dispatcher are put back (:meth:`Claims.recover`).
2. Every address with due rows gets a *lane*: one worker thread (from a pool of
   ``dispatch.workers``) that claims a few of that address's rows at a time and sends them
   one after the other, no faster than its channel allows (Slack: one message per second
   per channel, https://api.slack.com/methods/chat.postMessage#rate_limiting). Lanes of
   different addresses run in parallel. A lane drains its address and ends.

Per row: build the content from the store; look up the thread (the first message already
delivered to that address with the same ``thread_key``); send, or update when the row is a
booking notice about an exam whose booking was already posted (a reschedule: the message
is edited and a threaded reply says what moved) or a cancellation/no-show of such an exam;
record the outcome.

Outcomes (retries live here, in one place, not in the channels):

- delivered: ``sent`` with the :class:`Delivery` as ``external_ref``;
- permanent :class:`NotifierError` (``channel_not_found``, ``invalid_auth``, a template
  bug, a disabled channel): ``failed`` at once;
- transient error: ``pending`` again after exponential backoff (``retry_base_seconds``
  doubling, at most ``retry_max_seconds``, jittered), never sooner than ``retry_after``;
  ``failed`` after ``max_attempts``. A rate limit is the channel's pace, not the row's
  fault: the row waits exactly ``Retry-After``, the attempt is not counted, and the whole
  lane pauses as long;
- any other exception (a poison row: content that cannot be built) is handled like a
  transient error, logged by type only, and never stops the lane.

Delivered once: a row that may already have reached the channel (``maybe_sent``: found in
``sending`` after a crash, or an error that left it unclear) is first looked up with
:meth:`Notifier.find_existing` (Slack: message metadata carries the dedupe key) and marked
sent if found. Channels that cannot look (email, webhooks) resend: at-least-once, with the
Message-ID / ``X-Hiro-Delivery`` id derived from the dedupe key so the receiver drops the copy.

Notifiers block (slack-sdk sleeps on a short 429), so they only ever run on these worker
threads, never on the daemon's event loop. Replicas on one PostgreSQL take each message's
slot for its address from the store (:mod:`monitor.store.outbox.pace`): together they keep
the channel's pace; a 429 would still only slow them down, and no row is lost.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from monitor.clock import SYSTEM_CLOCK
from monitor.config import Settings
from monitor.dispatch.content import ContentBuilder
from monitor.dispatch.followups import against_history, error_code
from monitor.render import Renderer
from monitor.store.outbox.claims import ClaimedRow, Claims
from monitor.store.outbox.pace import take_slot
from monitor.store.outbox.planning import digest_day
from monitor.threads import dispatch_pool
from notifiers import Notifier, NotifierError, notifier_class, notifier_for
from notifiers.base import AlertContent, Audience, Content, Delivery, MessageKind, Notification, parse_address
from notifiers.compose import headline, text_body
from notifiers.policy import PhiPolicy

__all__ = ["DispatchStats", "Dispatcher"]

log = logging.getLogger("monitor.dispatch")

_UNPACED_BATCH = 20


# Reminders and sheets have a time; one sent this long after it says so (a booking made
# after the lead time, a channel that was down). Alerts are "now" by nature.
_TIMED = frozenset({MessageKind.REMINDER, MessageKind.INSTRUCTIONS})
_LATE_AFTER = timedelta(minutes=15)


@dataclass
class DispatchStats:
    """What a dispatcher did since it started (observed, never consulted to decide)."""

    sent: int = 0
    found: int = 0  # recorded as sent after find_existing found the message
    updated: int = 0
    retried: int = 0
    failed: int = 0
    by_error: dict[str, int] = field(default_factory=dict)


@dataclass
class _Lane:
    address: str
    interval: float  # seconds between messages; 0: unpaced
    next_at: float = 0.0  # time.monotonic() before which the next message may not go
    future: Future[None] | None = None

    @property
    def batch(self) -> int:
        return max(1, math.ceil(3 / self.interval)) if self.interval else _UNPACED_BATCH


class Dispatcher:
    """Sends due outbox rows of one store. Thread-safe; ``close`` before dropping it."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        renderer: Renderer | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = SYSTEM_CLOCK,
        notifiers: Mapping[str, Notifier] | None = None,
        owner: str | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.renderer = renderer or Renderer.from_settings(settings)
        self.environ = environ
        self.clock = clock
        self.zone = ZoneInfo(settings.site.timezone)
        self.claims = Claims(engine, owner)
        self.stats = DispatchStats()
        self._notifiers: dict[str, Notifier] = dict(notifiers or {})
        self._lanes: dict[str, _Lane] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._stopping = threading.Event()
        self._pool = dispatch_pool(settings.dispatch.workers)
        # Replicas share a store only on PostgreSQL: there the pace of each address is shared.
        self._shared_pace = engine.dialect.name == "postgresql"

    # -- entry points --------------------------------------------------------------------

    def tick(self) -> int:
        """Recover rows of dead senders, start a lane for every address with due rows; returns
        how many lanes were started. Returns at once: the lanes send on worker threads."""
        if self._stopping.is_set():
            return 0
        now = self.clock()
        timeout = timedelta(seconds=self.settings.dispatch.sending_timeout_seconds)
        recovered = self.claims.recover(now, timeout)
        if recovered:
            log.warning("took back %d outbox row(s) left sending by a stopped dispatcher", recovered)
        started = 0
        with self._lock:
            for address in self.claims.due_addresses(now):
                lane = self._lanes.get(address)
                if lane is None:
                    lane = self._lanes[address] = _Lane(address, self.interval(address))
                if lane.future is None or lane.future.done():
                    lane.future = self._pool.submit(self._drain, lane)
                    started += 1
        return started

    def observe_tick(self) -> None:
        """:meth:`tick` for the scheduler: never raises; failures are logged by type (no PHI)."""
        try:
            self.tick()
        except Exception as exc:
            log.error("dispatch tick failed (%s)", type(exc).__name__)

    def run_once(self, timeout: float | None = None) -> DispatchStats:
        """Send everything due now and wait for it (``hiro-monitor dispatch --once``, tests)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            started = self.tick()
            finished = self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if not started or not finished:
                return self.stats

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every running lane has finished; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                running = [
                    lane.future for lane in self._lanes.values() if lane.future and not lane.future.done()
                ]
            if not running:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            for future in running:
                try:
                    future.result(timeout=left)
                except TimeoutError:
                    return False

    def close(self, wait: bool = True) -> None:
        """Stop: lanes finish the message in hand and give back the rows they claimed but did not try."""
        self._stopping.set()
        self._pool.shutdown(wait=wait, cancel_futures=True)
        for notifier in self._notifiers.values():
            try:
                notifier.close()
            except Exception as exc:  # observing: a close failure changes nothing recorded
                log.warning("closing a notifier failed (%s)", type(exc).__name__)

    # -- one lane ------------------------------------------------------------------------

    def interval(self, address: str) -> float:
        """Seconds between two messages to ``address``: the pace of the notifier that sends
        them (one handed in for the channel, as the demo's console is for Slack, else the
        channel's own class)."""
        channel = address.partition(":")[0].strip().lower()
        sender: object | None = self._notifiers.get(channel)
        try:
            sender = sender if sender is not None else notifier_class(channel)
        except NotifierError:
            return 0.0
        rate = getattr(sender, "messages_per_second_per_channel", None)
        return 1.0 / float(rate) if rate else 0.0

    def _drain(self, lane: _Lane) -> None:
        try:
            while not self._stopping.is_set():
                rows = self.claims.claim(lane.address, self.clock(), lane.batch)
                if not rows:
                    return
                for index, row in enumerate(rows):
                    if self._stopping.is_set() or not self._deliver(lane, row):
                        self.claims.release([r.id for r in rows[index:]], self.clock())
                        return
        except Exception as exc:  # the store failed: the rows stay claimed and are recovered later
            log.error("dispatch lane stopped (%s)", type(exc).__name__)

    def _pace(self, lane: _Lane) -> bool:
        """Wait for the lane's next slot, and with replicas (PostgreSQL) for the address's
        slot shared through the store (:mod:`monitor.store.outbox.pace`); False when stopping."""
        delay = lane.next_at - time.monotonic()
        if delay > 0 and self._stopping.wait(delay):
            return False
        if lane.interval and self._shared_pace:
            try:
                slot = take_slot(self.engine, lane.address, lane.interval, time.time())
            except Exception as exc:  # the store is down: the lane's own pace still holds
                log.warning("taking a sending slot failed (%s)", type(exc).__name__)
            else:
                delay = slot - time.time()
                if delay > 0 and self._stopping.wait(delay):
                    return False
        return not self._stopping.is_set()

    def _notifier(self, address: str) -> Notifier:
        """The notifier of ``address``'s channel (one per channel, created on first use).

        Raises a permanent :class:`NotifierError` for an unknown or disabled channel, a
        missing secret or an unconfigured webhook name.
        """
        channel, target = parse_address(address)
        if channel == "webhook" and target not in self.settings.webhooks:
            raise NotifierError(f"webhook {target!r} is not configured", permanent=True, code="no_webhook")
        with self._lock:
            notifier = self._notifiers.get(channel)
            if notifier is None:
                notifier = notifier_for(address, self.settings, renderer=self.renderer, environ=self.environ)
                self._notifiers[channel] = notifier
            return notifier

    def _builder(self) -> ContentBuilder:
        builder: ContentBuilder | None = getattr(self._local, "builder", None)
        if builder is None:
            builder = self._local.builder = ContentBuilder(self.settings, self.renderer)
        return builder

    # -- one row -------------------------------------------------------------------------

    def _deliver(self, lane: _Lane, row: ClaimedRow) -> bool:
        """Send one claimed row and record the outcome; False (row untouched) when stopping."""
        try:
            notifier = self._notifier(row.address)
            notification, previous = self._prepare(row)
        except NotifierError as exc:
            self._failed(lane, row, exc)
            return True
        except Exception as exc:  # a poison row: push it back, never block the lane
            log.warning("outbox row %d: building the message failed (%s)", row.id, type(exc).__name__)
            self._retry(row, type(exc).__name__, None, maybe_sent=bool(row.maybe_sent))
            return True
        if not self._pace(lane):
            return False
        try:
            found = None
            if row.maybe_sent and notifier.can_find_existing:
                found = notifier.find_existing(notification)
            if found is not None:
                delivery, outcome = found, "found"
            elif previous is not None:
                delivery, outcome = notifier.update(notification, previous), "updated"
            else:
                delivery, outcome = notifier.send(notification), "sent"
        except NotifierError as exc:
            self._failed(lane, row, exc)
            return True
        except Exception as exc:  # a notifier bug: the request may have left; look before resending
            log.warning("outbox row %d: %s raised %s", row.id, notifier.name, type(exc).__name__)
            self._retry(row, type(exc).__name__, None, maybe_sent=True)
            return True
        finally:
            # The next message waits a full interval from the end of this call: slack-sdk may
            # have waited out a 429 and posted just now, late in the call.
            lane.next_at = max(lane.next_at, time.monotonic() + lane.interval)
        self._record(row, notification, delivery, outcome)
        return True

    def _prepare(self, row: ClaimedRow) -> tuple[Notification, Delivery | None]:
        """The notification for ``row``, and the delivery it updates (None: a new message)."""
        kind = MessageKind(row.kind)
        history = self.claims.thread(row.address, row.thread_key)
        content: Content
        previous: Delivery | None = None
        builder = self._builder()
        with self.engine.connect() as conn:
            if kind is MessageKind.OPERATIONS:
                content = builder.operations(conn, row.finding_key)
            elif kind is MessageKind.DIGEST:
                day = datetime.fromisoformat(digest_day(row.due_at, self.zone)).date()
                content = builder.digest(conn, row.trial, day, self.clock(), address=row.address)
            else:
                content = builder.alert(conn, row.finding_key, address=row.address, audience=row.audience)
        if isinstance(content, AlertContent) and history:
            content, previous = against_history(kind, row.finding_kind, content, history)
        if isinstance(content, AlertContent) and kind in _TIMED and row.due_at < self.clock() - _LATE_AFTER:
            when = self.renderer.format_datetime(row.due_at)
            late = f"sent late: it was due {when} (the exam was booked after that time)"
            content = replace(content, late=late)
        notification = Notification(
            address=row.address,
            audience=Audience(row.audience),
            kind=kind,
            dedupe_key=row.dedupe_key,
            content=content,
            thread_key=row.thread_key,
            thread=history[0].delivery if history else None,
            due_at=row.due_at,
        )
        return notification, previous

    # -- outcomes ------------------------------------------------------------------------

    def _record(self, row: ClaimedRow, notification: Notification, delivery: Delivery, outcome: str) -> None:
        summary = body = None
        try:  # the dashboard's copy, under the strictest policy; a failure here changes nothing sent
            summary = headline(self.renderer, notification, PhiPolicy.NONE)
            body = text_body(self.renderer, notification, PhiPolicy.NONE)
        except Exception as exc:
            log.warning("outbox row %d: rendering the record failed (%s)", row.id, type(exc).__name__)
        exam_start = (
            notification.content.exam_start if isinstance(notification.content, AlertContent) else None
        )
        if not self.claims.sent(
            row.id, self.clock(), delivery, summary=summary, body=body, exam_start=exam_start
        ):
            log.warning("outbox row %d was taken back while it was being sent", row.id)
        with self._lock:
            if outcome == "found":
                self.stats.found += 1
            elif outcome == "updated":
                self.stats.updated += 1
            else:
                self.stats.sent += 1

    def _failed(self, lane: _Lane, row: ClaimedRow, exc: NotifierError) -> None:
        code = error_code(exc)
        if exc.permanent:
            log.warning("outbox row %d failed for good: %s", row.id, code)
            self.claims.fail(row.id, self.clock(), code)
            self._count("failed", code)
            return
        if exc.rate_limited and exc.retry_after:
            lane.next_at = max(lane.next_at, time.monotonic() + exc.retry_after)
            at = self.clock() + timedelta(seconds=exc.retry_after)
            self.claims.retry(row.id, self.clock(), at, code, maybe_sent=bool(row.maybe_sent), count=False)
            self._count("retried", code)
            return
        self._retry(row, code, exc.retry_after, maybe_sent=bool(row.maybe_sent) or exc.maybe_sent)

    def _retry(self, row: ClaimedRow, code: str, retry_after: float | None, *, maybe_sent: bool) -> None:
        now = self.clock()
        dispatch = self.settings.dispatch
        if row.attempts >= dispatch.max_attempts:
            log.warning("outbox row %d failed after %d attempts: %s", row.id, row.attempts, code)
            self.claims.fail(row.id, now, f"gave_up:{code}")
            self._count("failed", code)
            return
        backoff = min(dispatch.retry_max_seconds, dispatch.retry_base_seconds * 2 ** max(0, row.attempts - 1))
        delay = max(backoff * random.uniform(1.0, 1.2), retry_after or 0.0)
        self.claims.retry(row.id, now, now + timedelta(seconds=delay), code, maybe_sent=maybe_sent)
        self._count("retried", code)

    def _count(self, outcome: Literal["retried", "failed"], code: str) -> None:
        with self._lock:
            if outcome == "retried":
                self.stats.retried += 1
            else:
                self.stats.failed += 1
            self.stats.by_error[code] = self.stats.by_error.get(code, 0) + 1
