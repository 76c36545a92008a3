"""Every thread and thread pool the process starts is made here, so they can be read in one place.

None starts a thread at import: a :class:`~concurrent.futures.ThreadPoolExecutor` starts its
threads on first use, and each pool is made by the component that owns it (the daemon
builds those components in :class:`monitor.daemon.Daemon`). The README's "How the code is
laid out" lists them with what runs on each.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = [
    "FeedLoop",
    "dispatch_pool",
    "feed_evaluation_thread",
    "page_threads",
    "scheduler_executor",
    "store_probe_pool",
]

T = TypeVar("T")


class FeedLoop:
    """A feed's own event loop on its own thread (``feed-<feed>``): the MLLP listener, its
    connections and the feed writer, whose commits block the loop they run on.

    The thread starts on :meth:`start` and ends on :meth:`stop`; :meth:`run` awaits, from
    another loop, a coroutine run on this one (its exception propagates).
    """

    def __init__(self, feed: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=f"feed-{feed}", daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> None:
        self._thread.start()

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self.loop))

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the loop once what it is running returns to it; close it (blocks up to ``timeout``)."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
        if not self._thread.is_alive() and not self.loop.is_closed():
            self.loop.close()


def feed_evaluation_thread(feed: str) -> ThreadPoolExecutor:
    """Where the feed writer's ``after_batch`` hook (the re-evaluation of the exams a batch
    changed) runs, one call at a time, after the batch's ACKs (``evaluate-<feed>``)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"evaluate-{feed}")


def dispatch_pool(workers: int) -> ThreadPoolExecutor:
    """The dispatcher's senders (``hiro-dispatch``): notifiers block on sockets, so they never
    run on the event loop; ``[dispatch] workers`` of them."""
    return ThreadPoolExecutor(workers, thread_name_prefix="hiro-dispatch")


def scheduler_executor(workers: int = 4) -> Any:
    """APScheduler's job pool (evaluation, digest, purge, FHIR poll, the dispatch tick);
    APScheduler adds its own scheduling thread when started."""
    from apscheduler.executors.pool import ThreadPoolExecutor as JobPool  # type: ignore[import-untyped]

    return JobPool(workers)


def page_threads(count: int) -> None:
    """How many of anyio's worker threads may answer pages at once on the running loop
    (Starlette runs every synchronous route and dependency there; anyio's default is 40).

    The pages are Python under one interpreter lock, so forty threads share one core's worth
    of it: each request was sliced among the others and waited for all of them (the
    dashboard bench's p95 was 2-3 times its median). ``[web] threads`` (default 4) still
    overlaps one request's store round trips with another's work. Call it on the loop that
    serves the pages; the threads are made on first use and kept."""
    import anyio.to_thread

    limiter = anyio.to_thread.current_default_thread_limiter()
    if limiter.total_tokens != count:
        limiter.total_tokens = count


def store_probe_pool() -> ThreadPoolExecutor:
    """Where ``/healthz`` runs its ``SELECT 1`` so that it can stop waiting (``healthz-store``):
    a few threads, for probes still hung on a store that does not answer."""
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="healthz-store")
