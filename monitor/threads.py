"""Every thread pool the process starts is made here, so they can be read in one place.

None starts a thread at import: a :class:`~concurrent.futures.ThreadPoolExecutor` starts its
threads on first use, and each pool is made by the component that owns it (the daemon
builds those components in :class:`monitor.daemon.Daemon`). The README's "How the code is
laid out" lists them with what runs on each.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["dispatch_pool", "feed_writer_thread", "scheduler_executor", "store_probe_pool"]


def feed_writer_thread(feed: str) -> ThreadPoolExecutor:
    """The one thread that commits a feed's messages, in arrival order (``writer-<feed>``);
    the writer's ``after_batch`` hook (re-evaluation) runs on it too."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"writer-{feed}")


def dispatch_pool(workers: int) -> ThreadPoolExecutor:
    """The dispatcher's senders (``hiro-dispatch``): notifiers block on sockets, so they never
    run on the event loop; ``[dispatch] workers`` of them."""
    return ThreadPoolExecutor(workers, thread_name_prefix="hiro-dispatch")


def scheduler_executor(workers: int = 4) -> Any:
    """APScheduler's job pool (evaluation, digest, purge, FHIR poll, the dispatch tick);
    APScheduler adds its own scheduling thread when started."""
    from apscheduler.executors.pool import ThreadPoolExecutor as JobPool  # type: ignore[import-untyped]

    return JobPool(workers)


def store_probe_pool() -> ThreadPoolExecutor:
    """Where ``/healthz`` runs its ``SELECT 1`` so that it can stop waiting (``healthz-store``):
    a few threads, for probes still hung on a store that does not answer."""
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="healthz-store")
