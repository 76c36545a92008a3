"""What one running daemon tells its dashboard: liveness probes and a metrics registry.

``hiro-monitor run`` builds one :class:`Runtime` and hands it to the parts it hosts (the MLLP
listener's ACK timer, the scheduler's job counters) and to :func:`monitor.web.create_app`,
whose ``/healthz`` asks each component whether it is alive and whose ``/metrics`` adds this
registry to the store's counts. ``hiro-monitor web`` runs without one: the listener, writer
and scheduler live in another process, and ``/healthz`` says so.

The registry is per daemon, never prometheus_client's global one (two daemons in one test
process must not share counters; STYLE.md: no module globals).

Everything here is observing code (STYLE.md): a probe or a metric that fails is logged or
reported, and never stops a message or a job. Probe details and label values carry no PHI:
ports, counts, seconds, job names, ACK codes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "ACK_LATENCY_BUCKETS",
    "COMPONENTS",
    "AckLatency",
    "JobMetrics",
    "Liveness",
    "LivenessProbe",
    "Runtime",
]

log = logging.getLogger("monitor.runtime")

# The in-process components /healthz reports besides the store.
COMPONENTS = ("mllp_listener", "feed_writer", "scheduler")

# 1 ms (an AA from a warm SQLite file) to 5 s: interface engines commonly time out an ACK
# after 10 to 30 s, so anything in the top buckets is already a problem worth a page.
ACK_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# MSA-1 values (HL7 v2 table 0008); anything else is counted as "other" to bound the labels.
_ACK_CODES = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})


@dataclass(frozen=True, slots=True)
class Liveness:
    """One component's answer: up or not, and a short PHI-free reason for an operator."""

    up: bool
    detail: str = ""


class LivenessProbe(Protocol):
    def liveness(self) -> Liveness:
        """Whether the component works right now. Cheap, thread-safe enough to call from a
        web worker thread, and never blocks on the component's own locks."""
        ...


class AckLatency:
    """``hiro_ack_latency_seconds{feed, code}``: a complete frame decoded to its ACK written.

    Called by the listener once per ACK (:meth:`observe`); the label children are cached so
    the hot path is a dict lookup and one ``observe``.
    """

    def __init__(self, histogram: Histogram, feed: str) -> None:
        self._histogram = histogram
        self._feed = feed
        self._children: dict[str, Histogram] = {}

    def observe(self, ack: bytes, seconds: float) -> None:
        code = ack_code(ack)
        child = self._children.get(code)
        if child is None:
            child = self._children[code] = self._histogram.labels(self._feed, code)
        child.observe(seconds)


def ack_code(ack: bytes) -> str:
    """MSA-1 of an unframed ACK (``AA``, ``AE`` ...), ``other`` when there is none.

    Reads the field separator from the MSA segment itself (MSH-1 need not be ``|``)."""
    start = ack.find(b"\rMSA")
    if start < 0:
        start = ack.find(b"\nMSA")
    if start < 0 or len(ack) < start + 7:
        return "other"
    code = ack[start + 5 : start + 7].decode("ascii", "replace")
    return code if code in _ACK_CODES else "other"


class JobMetrics:
    """``hiro_job_runs_total{job, outcome}`` and ``hiro_job_last_success_timestamp_seconds{job}``.

    Outcomes: ``success``, ``error`` (the job raised; logged by the scheduler), ``missed``
    (APScheduler skipped a run past its misfire grace), ``not_leader`` (another replica runs it).
    """

    def __init__(self, registry: CollectorRegistry, wall_clock: Callable[[], float] = time.time) -> None:
        self.runs = Counter(
            "hiro_job_runs", "Scheduled job runs by job and outcome", ["job", "outcome"], registry=registry
        )
        self.last_success = Gauge(
            "hiro_job_last_success_timestamp_seconds",
            "When each scheduled job last finished without an error (Unix time)",
            ["job"],
            registry=registry,
        )
        self._wall_clock = wall_clock

    def record(self, job: str, outcome: str) -> None:
        """Count one run (observing: never raises)."""
        try:
            self.runs.labels(job, outcome).inc()
            if outcome == "success":
                self.last_success.labels(job).set(self._wall_clock())
        except Exception as exc:
            log.debug("recording job %s failed (%s)", job, type(exc).__name__)


class Runtime:
    """One daemon's probes and metrics registry, shared with its embedded dashboard.

    ``watch(name, probe)`` registers a component (``probe=None``: configured off in this
    daemon); :meth:`liveness` asks them all. Components never watched are not in this
    process, which ``/healthz`` reports without failing.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._ack_latency = Histogram(
            "hiro_ack_latency_seconds",
            "MLLP: a complete frame decoded to its ACK written, by feed and ACK code (MSA-1)",
            ["feed", "code"],
            buckets=ACK_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.jobs = JobMetrics(self.registry)
        self._probes: dict[str, LivenessProbe | None] = {}

    def ack_latency(self, feed: str) -> AckLatency:
        """The ACK timer of ``feed``'s listener."""
        return AckLatency(self._ack_latency, feed)

    def watch(self, component: str, probe: LivenessProbe | None) -> None:
        self._probes[component] = probe

    @property
    def watched(self) -> Mapping[str, LivenessProbe | None]:
        return dict(self._probes)
