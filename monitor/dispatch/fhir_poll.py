"""One FHIR poll as the daemon and ``hiro-monitor fhir poll`` run it: poll, then re-evaluate.

The poll asks only about subjects still expecting scans (per-patient mode); afterwards the
enrolments of every exam the poll changed are re-evaluated, as the HL7 writer does after
each batch. A failed re-evaluation is logged (by type, no PHI) and never fails the poll.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from monitor.clock import SYSTEM_CLOCK
from monitor.config import Settings
from monitor.evaluation import Evaluator
from monitor.feeds.fhir.poller import PollResult, poll_once
from monitor.store.registry.records import event_mark, exams_changed_since, mrns_to_watch


def poll_and_evaluate(
    engine: Engine,
    settings: Settings,
    evaluator: Evaluator,
    *,
    clock: Callable[[], datetime] = SYSTEM_CLOCK,
) -> PollResult:
    """Poll ``settings.fhir`` once, then re-evaluate what changed. Raises as :func:`poll_once`."""
    with engine.connect() as conn:
        mark = event_mark(conn)

    def patients() -> list[str]:
        with engine.connect() as conn:
            return mrns_to_watch(conn)

    result = poll_once(engine, settings, patients, clock=clock)
    with engine.connect() as conn:
        changed = exams_changed_since(conn, mark)
    if changed:
        evaluator.observe_exams(changed, clock())
    return result
