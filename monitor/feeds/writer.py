"""The single writer of one feed: connections hand messages in, one thread commits them.

Every MLLP connection's handler puts its message on one queue and waits. A writer task
takes whatever has queued up (up to ``max_batch``), commits it in one transaction on a
dedicated thread (the event loop never blocks on the database), and wakes each waiter
with its receipt. Under load this is a group commit: four connections' messages share one
fsync. Order within the feed is arrival order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from monitor.feeds.hl7.ack import build_ack
from monitor.feeds.hl7.intake import UNAVAILABLE, Arrival, Intake, Receipt
from monitor.logs import where
from monitor.runtime import Liveness
from monitor.threads import feed_writer_thread

log = logging.getLogger("monitor.feeds.writer")

T = TypeVar("T")
# One call on the writer thread longer than this is a stalled feed (/healthz): the senders
# of everything queued behind it are waiting for their ACKs.
STALL_SECONDS = 120.0


class PeerLike(Protocol):
    @property
    def host(self) -> str: ...


class _Due:
    """Marker: changed exams are due to be handed to the ``after_batch`` hook."""


_DUE = _Due()


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
        # Called on the writer thread with the exam ids committed batches changed and the
        # intake's clock, after their ACKs are out (the daemon re-evaluates findings here).
        # Under load the ids of all batches within ``observe_every`` seconds go in one call:
        # the hook's cost is per call, and paying it per batch of two or three messages
        # took 14% of the writer's time (measured with py-spy at 1,500 msg/s).
        self.after_batch = after_batch
        self.observe_every = observe_every
        self._changed: set[int] = set()
        self._observe_at: float | None = None
        self.max_batch = max_batch
        self.answer_ar_when_down = answer_ar_when_down
        # None is the stop mark that close() queues behind everything submitted before it.
        self._queue: asyncio.Queue[tuple[Arrival, asyncio.Future[Receipt]] | None] = asyncio.Queue()
        self._thread = feed_writer_thread(intake.feed)
        self._task: asyncio.Task[None] | None = None
        self._busy_since: float | None = None  # time.monotonic() of the call on the thread

    def liveness(self) -> Liveness:
        """Up while the writer task runs and no call has held its thread for ``STALL_SECONDS``."""
        if self._task is None:
            return Liveness(False, "not started")
        if self._task.done():
            return Liveness(False, "stopped")
        since = self._busy_since
        if since is not None and time.monotonic() - since > STALL_SECONDS:
            return Liveness(False, f"one write has taken {time.monotonic() - since:.0f} s")
        return Liveness(True, f"{self._queue.qsize()} message(s) queued")

    async def _on_thread(self, call: Callable[..., T], *args: Any) -> T:
        self._busy_since = time.monotonic()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, call, *args)
        finally:
            self._busy_since = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"feed-writer-{self.intake.feed}")

    async def close(self) -> None:
        """Finish what is queued (with its re-evaluation), then stop the writer thread."""
        if self._task is not None:
            await self._queue.put(None)
            await asyncio.gather(self._task, return_exceptions=True)
        self._thread.shutdown(wait=True)

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

    async def _next(self) -> tuple[Arrival, asyncio.Future[Receipt]] | _Due | None:
        """The next queued item, or :data:`_DUE` when changed exams are due to be observed."""
        if self._observe_at is None:
            return await self._queue.get()
        delay = self._observe_at - asyncio.get_running_loop().time()
        if delay <= 0:
            return _DUE
        try:
            return await asyncio.wait_for(self._queue.get(), delay)
        except TimeoutError:
            return _DUE

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            batch: list[tuple[Arrival, asyncio.Future[Receipt]]] = []
            item = await self._next()
            if isinstance(item, _Due):
                await self._observe_changed()
                continue
            while item is not None:
                batch.append(item)
                if len(batch) >= self.max_batch or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if item is None:
                stopping = True
            if batch:
                await self._write(batch)
            if stopping or (self._observe_at is not None and loop.time() >= self._observe_at):
                await self._observe_changed()

    async def _write(self, batch: list[tuple[Arrival, asyncio.Future[Receipt]]]) -> None:
        loop = asyncio.get_running_loop()
        arrivals = [arrival for arrival, _ in batch]
        try:
            receipts = await self._on_thread(self.intake.receive_batch, arrivals)
        except Exception as exc:
            log.error("writer failed on a batch of %d: %s", len(batch), where(exc))
            receipts = [UNAVAILABLE] * len(batch)
        for (_, future), receipt in zip(batch, receipts, strict=True):
            if not future.done():
                future.set_result(receipt)
        if self.intake.store_raw_first:  # ACKs are out; now apply what was stored raw
            try:
                receipts = await self._on_thread(self.intake.process_pending)
            except Exception as exc:  # stays pending; retried after the next batch and at start
                log.error("processing stored messages failed: %s", where(exc))
                return
        changed = {exam_id for receipt in receipts for exam_id in receipt.exam_ids}
        if changed and self.after_batch is not None:
            self._changed |= changed
            if self._observe_at is None:
                self._observe_at = loop.time() + self.observe_every

    async def _observe_changed(self) -> None:
        exam_ids, self._changed, self._observe_at = sorted(self._changed), set(), None
        if exam_ids:
            await self._on_thread(self._observe, exam_ids)

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
