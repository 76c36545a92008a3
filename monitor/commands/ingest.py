"""``hiro-monitor ingest``: HL7 files replayed through the intake, their patients re-evaluated."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from monitor.clock import SYSTEM_CLOCK
from monitor.config import Settings
from monitor.evaluation import Evaluator
from monitor.feeds.hl7.files import IngestSummary, replay_files

__all__ = ["IngestSummary", "ingest_files"]


def ingest_files(
    engine: Engine,
    settings: Settings,
    files: Iterable[Path],
    *,
    batch: int = 500,
    progress: bool = True,
    clock: Callable[[], datetime] = SYSTEM_CLOCK,
) -> IngestSummary:
    """Replay ``files`` (:func:`monitor.feeds.hl7.files.replay_files`); after each batch the
    enrolments of its patients are re-evaluated (a failure there is logged, never fatal)."""
    evaluator = Evaluator(engine, settings)
    return replay_files(
        engine,
        settings,
        files,
        batch=batch,
        progress=progress,
        clock=clock,
        after_batch=evaluator.observe_exams,
    )
