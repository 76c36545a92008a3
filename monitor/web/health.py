"""``/healthz`` and ``/metrics``: answered without signing in, so they carry no PHI.

``/metrics`` is Prometheus text, computed from the store at scrape time (a custom collector
on a private registry: no module globals, two apps in one process do not collide):

- ``hiro_messages_total{feed, type, outcome}``: messages stored, by HL7 type and outcome;
- ``hiro_findings_open{kind}``: open findings by kind;
- ``hiro_feed_last_message_timestamp_seconds{feed}``: when each feed last delivered.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import SQLAlchemyError

from monitor.store.findings import OPEN, findings
from monitor.store.schema import messages
from monitor.web.feeds import _aware

router = APIRouter(include_in_schema=False)


class StoreCollector(Collector):
    """Reads the counts from the store on each scrape."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        received = GaugeMetricFamily(
            "hiro_messages_total", "Messages stored, by feed, message type and outcome",
            labels=["feed", "type", "outcome"],
        )  # fmt: skip
        open_findings = GaugeMetricFamily("hiro_findings_open", "Open findings by kind", labels=["kind"])
        last = GaugeMetricFamily(
            "hiro_feed_last_message_timestamp_seconds", "When each feed last delivered a message",
            labels=["feed"],
        )  # fmt: skip
        with self.engine.connect() as conn:
            for feed, kind, outcome, count in conn.execute(
                select(messages.c.feed, messages.c.message_type, messages.c.outcome, func.count()).group_by(
                    messages.c.feed, messages.c.message_type, messages.c.outcome
                )
            ):
                received.add_metric([feed, kind or "unknown", outcome], float(count))
            for kind, count in conn.execute(
                select(findings.c.kind, func.count())
                .where(findings.c.status == OPEN)
                .group_by(findings.c.kind)
            ):
                open_findings.add_metric([kind], float(count))
            for feed, at in conn.execute(
                select(messages.c.feed, func.max(messages.c.received_at)).group_by(messages.c.feed)
            ):
                if at is not None:
                    last.add_metric([feed], _aware(at).timestamp())
        yield received
        yield open_findings
        yield last


@router.get("/healthz")
def healthz(request: Request) -> Response:
    """200 when the store answers, 503 when it does not."""
    engine: Engine = request.app.state.web.engine
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})


@router.get("/metrics")
def metrics(request: Request) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(request.app.state.web.engine))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
