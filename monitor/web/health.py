"""``/healthz`` and ``/metrics``: answered without signing in, so they carry no PHI.

``/healthz`` answers JSON with one entry per component and 503 when any component of *this
process* is down::

    {"status": "ok" | "unavailable",
     "failing": ["scheduler"],
     "components": {"database": {"status": "ok"},
                    "mllp_listener": {"status": "ok", "detail": "port 2575, 3 connection(s) open"},
                    "feed_writer": {"status": "ok", "detail": "0 message(s) queued"},
                    "scheduler": {"status": "down", "detail": "not running"}}}

A component's status is ``ok``, ``down``, ``disabled`` (switched off in this daemon's
settings) or ``not_in_this_process`` (``hiro-monitor web`` serving the dashboard alone: the
listener, writer and scheduler run in the daemon, which has its own ``/healthz``). Only
``down`` fails the check. Details are ports, counts and seconds, never message content.

``/metrics`` is Prometheus text: the store's counts, computed at scrape time (a custom
collector: no module globals, two apps in one process do not collide), plus the hosting
daemon's own registry (:class:`monitor.runtime.Runtime`) when there is one:

- ``hiro_messages_total{feed, type, outcome}``: messages stored, by type and outcome; the
  type is one of :data:`METRIC_MESSAGE_TYPES` or ``other`` (MSH-9 is the sender's text:
  a label taken from it could carry a patient's name, and every new value is a new series);
- ``hiro_messages_key_reused_total{feed}``: messages that reused an earlier message's
  control id (MSH-3/4/10) with another body (feed health lists them);
- ``hiro_findings_open{kind}``: open findings by kind;
- ``hiro_feed_last_message_timestamp_seconds{feed}``: when each feed last delivered;
- ``hiro_outbox_notifications{channel, status}``: outbox rows pending, sending or failed;
- ``hiro_outbox_oldest_due_seconds{channel}``: how long the longest-waiting sendable row
  (pending, its next attempt due) has been due; 0 when none is;
- ``hiro_operations_alert{condition, feed}``: 1 for each operations alert open now
  (``quiet_feed``, ``rejections``, ``outbox_backlog``; :mod:`monitor.dispatch.operations`);
- ``hiro_store_up``: 1 when the store answered this scrape, 0 when it did not (the store's
  other series are then absent, the daemon's are still there);
- from the daemon: ``hiro_ack_latency_seconds{feed, code}`` (histogram),
  ``hiro_job_runs_total{job, outcome}``, ``hiro_job_last_success_timestamp_seconds{job}``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from monitor.runtime import COMPONENTS, Runtime
from monitor.store.database import ping
from monitor.store.findings import open_finding_counts
from monitor.store.message_tally import message_counts
from monitor.store.operations import open_episodes
from monitor.store.outbox import ChannelBacklog, OutboxStatus, outbox_backlog
from notifiers import CHANNELS

router = APIRouter(include_in_schema=False)
log = logging.getLogger("monitor.web.health")

# The values the ``type`` label may take: the SIU events of HL7 v2.5 chapter 10, the order
# messages of chapter 4 with their usual triggers, the FHIR resources the poller stores.
METRIC_MESSAGE_TYPES = frozenset(
    {f"SIU^S{n}" for n in range(12, 27)}
    | {"ORM^O01", "OMI^O23", "OML^O21", "OML^O33", "OML^O35", "OMG^O19", "ADT^A01", "ADT^A04", "ADT^A08"}
    | {"Appointment", "Bundle"}
)
# Feeds are named in the settings and outcomes by the intake: closed sets already.


def metric_type(message_type: str | None) -> str:
    """The ``type`` label for a stored message type: itself when known, else ``other``."""
    return message_type if message_type in METRIC_MESSAGE_TYPES else "other"


STORE_PROBE_SECONDS = 3.0


class StoreCollector(Collector):
    """Reads the counts from the store on each scrape; a store that fails yields ``hiro_store_up 0``."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("hiro_store_up", "1 when the store answered this scrape")
        try:
            with self.engine.connect() as conn:
                now = self.clock()
                families = [*self._feeds(conn, now), *self._outbox(conn, now), self._operations(conn)]
        except SQLAlchemyError as exc:
            log.warning("metrics: the store did not answer (%s)", type(exc).__name__)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from families

    @staticmethod
    def _feeds(conn: Connection, now: datetime) -> list[Metric]:
        received = GaugeMetricFamily(
            "hiro_messages_total", "Messages stored, by feed, message type and outcome",
            labels=["feed", "type", "outcome"],
        )  # fmt: skip
        open_findings = GaugeMetricFamily("hiro_findings_open", "Open findings by kind", labels=["kind"])
        last = GaugeMetricFamily(
            "hiro_feed_last_message_timestamp_seconds", "When each feed last delivered a message",
            labels=["feed"],
        )  # fmt: skip
        reused = GaugeMetricFamily(
            "hiro_messages_key_reused_total",
            "Messages that reused an earlier message's control id with another body, by feed",
            labels=["feed"],
        )
        counts = message_counts(conn, now)
        totals: Counter[tuple[str, str, str]] = Counter()
        for feed, kind, outcome, count in counts.by_type:
            totals[(feed, metric_type(kind), outcome)] += count
        for labels, count in sorted(totals.items()):
            received.add_metric(list(labels), float(count))
        for feed, count in counts.key_reused:
            reused.add_metric([feed], float(count))
        for kind, count in open_finding_counts(conn):
            open_findings.add_metric([kind], float(count))
        for feed, at in counts.last_received:
            last.add_metric([feed], at.timestamp())
        return [received, reused, open_findings, last]

    @staticmethod
    def _operations(conn: Connection) -> Metric:
        alerts = GaugeMetricFamily(
            "hiro_operations_alert",
            "1 for each operations alert open now (a quiet feed, rejections, an outbox backlog)",
            labels=["condition", "feed"],
        )
        for episode in sorted(open_episodes(conn).values(), key=lambda e: e.key):
            alerts.add_metric([episode.condition, episode.feed], 1.0)
        return alerts

    @staticmethod
    def _outbox(conn: Connection, now: datetime) -> list[Metric]:
        rows = GaugeMetricFamily(
            "hiro_outbox_notifications", "Outbox rows pending, being sent or failed, by channel and status",
            labels=["channel", "status"],
        )  # fmt: skip
        oldest = GaugeMetricFamily(
            "hiro_outbox_oldest_due_seconds",
            "How long the longest-waiting sendable pending row has been due, by channel (0: none)",
            labels=["channel"],
        )
        backlog = {found.channel: found for found in outbox_backlog(conn, now)}
        # Every known channel gets every series, zeros included: an alert on "failed > 0"
        # must see the value go back to 0, not the series vanish.
        for channel in sorted(set(CHANNELS) | set(backlog)):
            found = backlog.get(channel, ChannelBacklog(channel))
            for status, count in (
                (OutboxStatus.PENDING, found.pending),
                (OutboxStatus.SENDING, found.sending),
                (OutboxStatus.FAILED, found.failed),
            ):
                rows.add_metric([channel, status.value], float(count))
            waited = (now - found.oldest_due).total_seconds() if found.oldest_due is not None else 0.0
            oldest.add_metric([channel], max(0.0, waited))
        return [rows, oldest]


class _DaemonMetrics(Collector):
    """The hosting daemon's registry, scraped with the store's counts in one exposition."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()


def _store_status(engine: Engine, probes: Executor) -> dict[str, str]:
    """``SELECT 1`` within :data:`STORE_PROBE_SECONDS`: a server that hangs instead of
    refusing (a stuck failover, a full pool) must not hang the check the load balancer and
    the monitoring wait on. The probe's thread is left to finish on its own."""
    future = probes.submit(ping, engine)
    try:
        future.result(timeout=STORE_PROBE_SECONDS)
    except FutureTimeout:
        return {"status": "down", "detail": f"no answer within {STORE_PROBE_SECONDS:g} s"}
    except SQLAlchemyError as exc:
        return {"status": "down", "detail": f"unreachable ({type(exc).__name__})"}
    return {"status": "ok"}


def component_status(engine: Engine, runtime: Runtime | None, probes: Executor) -> dict[str, dict[str, str]]:
    """Each component's ``status`` (and ``detail``); a probe that raises counts as down."""
    found: dict[str, dict[str, str]] = {"database": _store_status(engine, probes)}
    watched = runtime.watched if runtime is not None else {}
    for component in COMPONENTS:
        if component not in watched:
            found[component] = {"status": "not_in_this_process"}
            continue
        probe = watched[component]
        if probe is None:
            found[component] = {"status": "disabled"}
            continue
        try:
            answer = probe.liveness()
        except Exception as exc:  # observing: a broken probe reports, never raises
            found[component] = {"status": "down", "detail": f"probe failed ({type(exc).__name__})"}
            continue
        found[component] = {"status": "ok" if answer.up else "down"}
        if answer.detail:
            found[component]["detail"] = answer.detail
    return found


@router.get("/healthz")
def healthz(request: Request) -> Response:
    """200 when every component of this process is up, 503 naming the ones that are not."""
    web = request.app.state.web
    components = component_status(web.engine, web.runtime, web.probes)
    failing = [name for name, state in components.items() if state["status"] == "down"]
    body = {"status": "unavailable" if failing else "ok", "failing": failing, "components": components}
    return JSONResponse(body, status_code=503 if failing else 200)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    web = request.app.state.web
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(web.engine, web.clock))
    if web.runtime is not None:
        registry.register(_DaemonMetrics(web.runtime.registry))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
