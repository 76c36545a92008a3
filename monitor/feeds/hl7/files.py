"""HL7 files: replayed through the listener's own code path (``hiro-monitor ingest``).

Files are streamed (memory stays flat for any size) and split into messages by
:func:`monitor.feeds.hl7.batches.iter_messages`; batches go through
:meth:`monitor.feeds.hl7.intake.Intake.receive_batch` exactly as MLLP traffic does, so a replay is
idempotent: a message seen before is a duplicate and changes nothing. After each batch the
``after_batch`` hook gets the exams the batch changed (the command re-evaluates their
enrolments there, as the MLLP writer's hook does; a failure there is the hook's to log).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import Engine

from monitor.clock import SYSTEM_CLOCK
from monitor.config import Settings
from monitor.feeds.hl7.batches import iter_messages
from monitor.feeds.hl7.intake import Arrival, Intake, Receipt
from monitor.feeds.hl7.mapping import MappingSettings


@dataclass
class IngestSummary:
    outcomes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    def add(self, receipt: Receipt) -> None:
        self.outcomes[receipt.outcome] += 1
        if receipt.outcome == "rejected":
            self.reasons[f"{receipt.error_code} {receipt.reason}"] += 1


def _chunks(items: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def replay_files(
    engine: Engine,
    settings: Settings,
    files: Iterable[Path],
    *,
    batch: int = 500,
    progress: bool = True,
    clock: Callable[[], datetime] = SYSTEM_CLOCK,
    after_batch: Callable[[list[int], datetime], object] | None = None,
) -> IngestSummary:
    """Ingest every message of ``files`` in order; returns counts by outcome and reasons."""
    intake = Intake(engine, MappingSettings.from_settings(settings.hl7), clock=clock)
    summary = IngestSummary()
    paths = list(files)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        disable=not progress,
    )
    with bar:
        task = bar.add_task("ingest", total=sum(path.stat().st_size for path in paths))
        for path in paths:
            with path.open("rb") as stream:
                done_before = bar.tasks[0].completed
                bar.update(task, description=path.name)
                for chunk in _chunks(iter_messages(stream), batch):
                    receipts = intake.receive_batch([Arrival(raw, peer=f"file:{path.name}") for raw in chunk])
                    for receipt in receipts:
                        summary.add(receipt)
                    if after_batch is not None:
                        after_batch([i for receipt in receipts for i in receipt.exam_ids], clock())
                    with contextlib.suppress(OSError, ValueError):
                        bar.update(task, completed=done_before + stream.tell())
                bar.update(task, completed=done_before + path.stat().st_size)
    return summary
