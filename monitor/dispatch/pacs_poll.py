"""One PACS poll as the daemon and ``hiro-monitor pacs poll`` run it: poll, then re-evaluate.

The attributes asked of the PACS are those the acquisition rules of the trials in force
name. The exams whose images changed are re-evaluated at once (their findings and alerts:
the technologist hears while the patient may still be on the table), and so are the exams
whose images fell due since the previous successful poll (``images_due_hours`` after their
start): a poll that sees none for them is what makes them ``images_missing``, also after an
outage, when the sweep's schedule has passed them by. Exams of trials with a core lab whose
images arrived get their submission (due the trial's deadline later) and are re-evaluated.
A failed re-evaluation is logged (by type) and never fails the poll.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine

from monitor.clock import SYSTEM_CLOCK
from monitor.config import Settings
from monitor.dispatch.core_lab import core_labs, track_due
from monitor.evaluation import Evaluator
from monitor.pacs.poll import PacsPollResult, poll_pacs
from monitor.pacs.reader import PacsReader
from monitor.pacs.readers import pacs_reader
from monitor.store.images import exams_starting_between
from monitor.store.polls import last_success
from monitor.store.registry.protocols import ProtocolCatalogue
from rules import Trial
from rules.core_lab import FORM_ATTRIBUTES

__all__ = ["acquisition_attributes", "poll_and_evaluate"]


def acquisition_attributes(trials: dict[str, Trial]) -> set[str]:
    """Every DICOM attribute the acquisition rules of ``trials`` read."""
    return {
        name
        for trial in trials.values()
        for version in trial.versions
        for exam in version.exams.values()
        if exam.acquisition is not None
        for name in exam.acquisition.attributes()
    }


def poll_and_evaluate(
    engine: Engine,
    settings: Settings,
    evaluator: Evaluator,
    *,
    reader: PacsReader | None = None,
    catalogue: ProtocolCatalogue | None = None,
    clock: Callable[[], datetime] = SYSTEM_CLOCK,
) -> PacsPollResult:
    """Poll ``settings.pacs`` once, then re-evaluate the exams whose images changed."""
    pacs = settings.pacs
    with engine.connect() as conn:
        trials = (catalogue or ProtocolCatalogue()).trials(conn)
        previous = last_success(conn, pacs.feed)
    attributes = acquisition_attributes(trials)
    if core_labs(trials):  # what the transmittal forms show of each series
        attributes |= FORM_ATTRIBUTES
    result = poll_pacs(engine, settings, reader or pacs_reader(pacs), attributes, clock)
    to_judge = set(result.changed_exams)
    if result.ok:  # the images that arrived open the core-lab submissions they call for
        to_judge.update(track_due(engine, settings, clock(), catalogue))
    if result.ok and result.started_at is not None:
        due = timedelta(hours=pacs.images_due_hours)
        since = previous if previous is not None else result.started_at - timedelta(days=pacs.look_back_days)
        with engine.connect() as conn:
            to_judge.update(exams_starting_between(conn, since - due, result.started_at - due))
    if to_judge:
        evaluator.observe_exams(sorted(to_judge), clock())
    return result
