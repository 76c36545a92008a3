"""The single writer of one feed: connections hand messages in, one task commits them.

Every MLLP connection's handler puts its message on one queue and waits. The writer task
takes whatever has queued up (up to ``max_batch``), commits it in one transaction, and wakes
each waiter with its receipt. Under load this is a group commit: four connections' messages
share one fsync. Order within the feed is arrival order.

The commit runs on the event loop itself, which blocks it for the transaction (a fraction
of a millisecond to a few): the daemon gives the feed a loop of its own
(:class:`monitor.threads.FeedLoop`), so the dashboard's loop never waits for a commit and
a page being rendered never holds up an ACK. The re-evaluation of the exams a batch changed
runs on a thread of its own (``evaluate-<feed>``), after the ACKs, one call at a time: it
used to run on the writer's thread, where every ACK behind it waited for it (5 ms median,
24 ms p95 at 10k enrolments; issue 15). Handing each batch to a writer thread and back
bought nothing in throughput either (alternating runs of ``bench/bench_mllp.py``'s closed
loop: 881 msg/s with the thread, 851 without; the spread between runs is wider).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from monitor.feeds.hl7.ack import build_ack
from monitor.feeds.hl7.intake import UNAVAILABLE, Arrival, Intake, Receipt
from monitor.logs import where
from monitor.runtime import Liveness
from monitor.threads import feed_evaluation_thread

log = logging.getLogger("monitor.feeds.writer")

T = TypeVar("T")
# One commit longer than this is a stalled feed (/healthz): the senders
# of everything queued behind it are waiting for their ACKs.
STALL_SECONDS = 120.0


class PeerLike(Protocol):
    @property
    def host(self) -> str: ...


class FeedWriter:
    """Implements the MLLP listener's ``MessageHandler`` on top of an :class:`Intake`."""

    def __init__(
        self,
        intake: Intake,
        *,
        max_batch: int = 64,
        answer_ar_when_down: bool = True,
        after_batch: Callable[[Sequence[int], datetime], object] | None = None,
        observe_every: float = 0.2,
    ) -> None:
        self.intake = intake
        # Called on the evaluation thread with the exam ids committed batches changed and the
        # intake's clock, after their ACKs are out (the daemon re-evaluates findings here).
        # Under load the ids of all batches within ``observe_every`` seconds of the previous
        # call go in one call (a quiet feed's first change goes at once: _observe_changes):
        # the hook's cost is per call, and paying it per batch of two or three messages
        # took 14% of the writer's time (measured with py-spy at 1,500 msg/s).
        self.after_batch = after_batch
        self.observe_every = observe_every
        self._changed: set[int] = set()
        self._changes = asyncio.Event()  # set while ``_changed`` waits for the observer
        self._closing = False
        self.max_batch = max_batch
        self.answer_ar_when_down = answer_ar_when_down
        # None is the stop mark that close() queues behind everything submitted before it.
        self._queue: asyncio.Queue[tuple[Arrival, asyncio.Future[Receipt]] | None] = asyncio.Queue()
        self._evaluation = feed_evaluation_thread(intake.feed)
        self._task: asyncio.Task[None] | None = None
        self._observer: asyncio.Task[None] | None = None
        self._busy_since: float | None = None  # time.monotonic() of the commit in progress

    def liveness(self) -> Liveness:
        """Up while the writer task runs and no commit has taken ``STALL_SECONDS`` or more."""
        if self._task is None:
            return Liveness(False, "not started")
        if self._task.done():
            return Liveness(False, "stopped")
        since = self._busy_since
        if since is not None and time.monotonic() - since > STALL_SECONDS:
            return Liveness(False, f"one write has taken {time.monotonic() - since:.0f} s")
        return Liveness(True, f"{self._queue.qsize()} message(s) queued")

    def _timed(self, call: Callable[..., T], *args: Any) -> T:
        self._busy_since = time.monotonic()
        try:
            return call(*args)
        finally:
            self._busy_since = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"feed-writer-{self.intake.feed}")
        self._observer = asyncio.create_task(
            self._observe_changes(), name=f"feed-observer-{self.intake.feed}"
        )

    async def close(self) -> None:
        """Finish what is queued and its re-evaluation, then stop the evaluation thread."""
        if self._task is not None:
            await self._queue.put(None)
            await asyncio.gather(self._task, return_exceptions=True)
        self._closing = True
        self._changes.set()
        if self._observer is not None:
            await asyncio.gather(self._observer, return_exceptions=True)
        self._evaluation.shutdown(wait=True)

    async def submit(self, arrival: Arrival) -> Receipt:
        future: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        await self._queue.put((arrival, future))
        return await future

    async def on_message(self, message: bytes, peer: PeerLike) -> bytes | None:
        receipt = await self.submit(Arrival(message, peer=peer.host, received_at=self.intake.clock()))
        if receipt is UNAVAILABLE and not self.answer_ar_when_down:
            return None
        return receipt.ack(message)

    async def on_oversize(self, head: bytes, size: int, peer: PeerLike) -> bytes | None:
        return build_ack(
            head, "AR", error_code="206", text=f"message of {size} bytes exceeds the listener's limit"
        )

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            await self._gather()
            batch: list[tuple[Arrival, asyncio.Future[Receipt]]] = []
            while item is not None:
                batch.append(item)
                if len(batch) >= self.max_batch or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if batch:
                receipts = self._write(batch)
                if self.intake.store_raw_first:
                    await asyncio.sleep(0)  # the waiters write their ACKs, then the messages are applied
                    receipts = self._process_pending()
                self._note_changes(receipts)
            if item is None:
                return

    async def _gather(self) -> None:
        """Let the messages already in the connections' sockets join this commit: yield to
        the loop until two turns in a row queue nothing more (or a batch is full).

        Without it, the four senders of the closed-loop benchmark settle into a staggered
        rhythm in which each message is committed alone (1.03 messages a batch, counted), and
        a commit costs about 0.2 ms of CPU whatever it holds. A turn with nothing to read
        costs a few microseconds. Alternating runs of ``bench/bench_mllp_ab.py``: 855 ->
        1,107 msg/s with one quiet turn, 1,170 with two, no better with four (issue 15)."""
        waiting, quiet_turns = self._queue.qsize(), 0
        while quiet_turns < 2 and waiting < self.max_batch:
            await asyncio.sleep(0)
            quiet_turns = quiet_turns + 1 if self._queue.qsize() == waiting else 0
            waiting = self._queue.qsize()

    def _write(self, batch: list[tuple[Arrival, asyncio.Future[Receipt]]]) -> Sequence[Receipt]:
        """Commit ``batch`` and hand each waiter its receipt (they run once this returns)."""
        arrivals = [arrival for arrival, _ in batch]
        try:
            receipts = self._timed(self.intake.receive_batch, arrivals)
        except Exception as exc:
            log.error("writer failed on a batch of %d: %s", len(batch), where(exc))
            receipts = [UNAVAILABLE] * len(batch)
        for (_, future), receipt in zip(batch, receipts, strict=True):
            if not future.done():
                future.set_result(receipt)
        return receipts

    def _process_pending(self) -> Sequence[Receipt]:
        try:
            return self._timed(self.intake.process_pending)
        except Exception as exc:  # stays pending; retried after the next batch and at start
            log.error("processing stored messages failed: %s", where(exc))
            return []

    def _note_changes(self, receipts: Sequence[Receipt]) -> None:
        if self.after_batch is not None:
            for receipt in receipts:
                self._changed.update(receipt.exam_ids)
            if self._changed:
                self._changes.set()

    async def _observe_changes(self) -> None:
        """Hand the changed exams to ``after_batch`` on the evaluation thread, one call at a
        time: at once when the previous call ended ``observe_every`` seconds ago or more (a
        quiet feed: the booking's re-evaluation and alert wait for nothing), else when that
        has passed, with the exams of every batch committed meanwhile or while the previous
        call ran (a busy feed: one call per ``observe_every`` at most). Ends after the last
        changes at close."""
        loop = asyncio.get_running_loop()
        last_call = -math.inf  # loop.time() at the end of the previous call
        while True:
            await self._changes.wait()
            # A quiet feed's change goes at once (a booking's alert waits for nothing); within
            # observe_every of the previous call the changes gather until it has passed.
            pause = self.observe_every - (loop.time() - last_call)
            if pause > 0 and not self._closing:
                await asyncio.sleep(pause)
            exam_ids, self._changed = sorted(self._changed), set()
            self._changes.clear()
            if exam_ids:
                await loop.run_in_executor(self._evaluation, self._observe, exam_ids)
                last_call = loop.time()
            if self._closing and not self._changed:
                return

    def _observe(self, exam_ids: Sequence[int]) -> None:
        """Hand changed exams to ``after_batch`` (observing: errors are logged, never raised)."""
        if self.after_batch is None or not exam_ids:
            return
        try:
            self.after_batch(exam_ids, self.intake.clock())
        except Exception as exc:
            log.error("after-batch hook failed (%s)", type(exc).__name__)

    def drain_pending(self) -> None:
        """Apply every message stored raw but not yet processed (start-up and shutdown)."""
        while receipts := self.intake.process_pending():
            self._observe(sorted({exam_id for receipt in receipts for exam_id in receipt.exam_ids}))
