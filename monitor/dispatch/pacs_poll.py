"""One PACS poll as the daemon and ``hiro-monitor pacs poll`` run it: poll, then re-evaluate.

The attributes asked of the PACS are those the acquisition rules of the trials in force
name. The exams whose images changed are re-evaluated at once (their findings and alerts:
the technologist hears while the patient may still be on the table); a failed
re-evaluation is logged (by type) and never fails the poll.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from monitor.clock import SYSTEM_CLOCK
from monitor.config import Settings
from monitor.evaluation import Evaluator
from monitor.pacs.poll import PacsPollResult, poll_pacs
from monitor.pacs.reader import DicomWebReader, dicomweb_reader
from monitor.store.registry.protocols import ProtocolCatalogue
from rules import Trial

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
    reader: DicomWebReader | None = None,
    catalogue: ProtocolCatalogue | None = None,
    clock: Callable[[], datetime] = SYSTEM_CLOCK,
) -> PacsPollResult:
    """Poll ``settings.pacs`` once, then re-evaluate the exams whose images changed."""
    with engine.connect() as conn:
        trials = (catalogue or ProtocolCatalogue()).trials(conn)
    result = poll_pacs(
        engine, settings, reader or dicomweb_reader(settings.pacs), acquisition_attributes(trials), clock
    )
    if result.changed_exams:
        evaluator.observe_exams(sorted(result.changed_exams), clock())
    return result
