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
from monitor.feeds.hl7.ack import message_key
from monitor.feeds.hl7.batches import iter_messages
from monitor.feeds.hl7.intake import Arrival, Intake, Receipt
from monitor.feeds.hl7.mapping import MappingSettings

REJECTIONS_LISTED = 1_000  # named one by one; the counts go on (memory stays flat)


@dataclass(frozen=True, slots=True)
class Rejected:
    """One rejected message of a file: where it is and what became of it (no content)."""

    file: str
    number: int  # the message's place in its file, from 1
    control_id: str  # MSH-10 ("" when the message has none)
    message_id: int | None  # the stored message (``hiro-monitor messages show ID``)
    reason: str


@dataclass
class IngestSummary:
    outcomes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    rejected: list[Rejected] = field(default_factory=list)  # the first REJECTIONS_LISTED
    rejected_by_file: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    def add(self, receipt: Receipt, file: str = "", number: int = 0, raw: bytes = b"") -> None:
        self.outcomes[receipt.outcome] += 1
        if receipt.outcome == "rejected":
            reason = f"{receipt.error_code} {receipt.reason}"
            self.reasons[reason] += 1
            self.rejected_by_file[file] += 1
            if len(self.rejected) < REJECTIONS_LISTED:
                key = message_key(raw)
                control_id = key[2] if key else ""
                self.rejected.append(Rejected(file, number, control_id, receipt.message_id, reason))


def _short(name: str, width: int = 24) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


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
    bar = Progress(  # fits the terminal: the name is cut, the bar takes what is left
        TextColumn("{task.description}"),
        BarColumn(bar_width=None),
        DownloadColumn(),
        TimeRemainingColumn(),
        disable=not progress,
    )
    with bar:
        task = bar.add_task("ingest", total=sum(path.stat().st_size for path in paths))
        for path in paths:
            with path.open("rb") as stream:
                done_before = bar.tasks[0].completed
                bar.update(task, description=_short(path.name))
                number = 0
                for chunk in _chunks(iter_messages(stream), batch):
                    receipts = intake.receive_batch([Arrival(raw, peer=f"file:{path.name}") for raw in chunk])
                    for raw, receipt in zip(chunk, receipts, strict=True):
                        number += 1
                        summary.add(receipt, path.name, number, raw)
                    if after_batch is not None:
                        after_batch([i for receipt in receipts for i in receipt.exam_ids], clock())
                    with contextlib.suppress(OSError, ValueError):
                        bar.update(task, completed=done_before + stream.tell())
                bar.update(task, completed=done_before + path.stat().st_size)
    return summary
