"""Visits already done, from the office's own records: a CSV feed of completed exams.

A site that starts watching subjects who are already on study has their history on paper or
in its CTMS, not in the feed. ``hiro-monitor enroll visits FILE`` (or ``enroll import FILE
--visits VISITS``) brings it in, so the trial matrix shows the true history instead of grey::

    trial,subject,timepoint,date,accession
    ONC-2101,2101-001,screening,2025-07-08,ACC-0001
    ONC-2101,2101-001,restaging,2025-09-01,

Each row becomes a ``completed`` :class:`~monitor.events.ScheduleEvent` of source
``registry`` for the subject's first MRN, with the first orderable of the timepoint's first
exam type in the protocol version in force on that date, at noon site time; the engine then
matches it like any exam (its window, early or late). The appointment id is the accession
when given, else ``trial:subject:timepoint:date``, so importing a file twice changes
nothing. The file is all or nothing: every problem is reported with its line number (never
quoting an MRN) and nothing is stored.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from monitor.events import EventKind, ScheduleEvent
from monitor.store.exams import apply_event, exam_start
from monitor.store.registry import ImportRejected, ProtocolCatalogue, RowProblem, find_entry
from rules import Trial

__all__ = ["VISIT_COLUMNS", "import_visits"]

SOURCE = "registry"
VISIT_COLUMNS = ("trial", "subject", "timepoint", "date")  # required; "accession" is optional
_NOON = time(12, 0)


@dataclass(frozen=True, slots=True)
class _Visit:
    line: int
    trial: str
    subject: str
    timepoint: str
    day: date
    accession: str


def _read(text: str) -> tuple[list[_Visit], list[RowProblem]]:
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    header = [name.strip().lower() for name in next(reader, [])]
    missing = [name for name in VISIT_COLUMNS if name not in header]
    if missing:
        return [], [RowProblem(1, f"the header lacks the column(s) {', '.join(missing)}")]
    visits: list[_Visit] = []
    problems: list[RowProblem] = []
    line = reader.line_num
    for row in reader:
        start, line = line + 1, reader.line_num
        if not any(field.strip() for field in row):
            continue
        values = {name: value.strip() for name, value in zip(header, row, strict=False)}
        try:
            day = date.fromisoformat(values.get("date", ""))
        except ValueError:
            problems.append(RowProblem(start, "date: not a date (write YYYY-MM-DD)"))
            continue
        empty = [name for name in ("trial", "subject", "timepoint") if not values.get(name)]
        if empty:
            problems.append(RowProblem(start, f"empty {', '.join(empty)}"))
            continue
        visits.append(
            _Visit(
                start,
                values["trial"],
                values["subject"],
                values["timepoint"],
                day,
                values.get("accession", ""),
            )
        )
    if not visits and not problems:
        problems.append(RowProblem(2, "the file has no visit rows"))
    return visits, problems


def _event(visit: _Visit, trial: Trial, mrn: str, zone: ZoneInfo) -> ScheduleEvent | str:
    """The completed exam the visit stands for, or why there is none."""
    version = trial.version_on(visit.day)
    timepoint = next((t for t in version.timepoints if t.id == visit.timepoint), None)
    if timepoint is None:
        known = ", ".join(t.id for t in version.timepoints)
        return f"timepoint {visit.timepoint!r} is not in {trial.id} (it has {known})"
    exam_type = next((version.exams[e] for e in timepoint.exams if e in version.exams), None)
    if exam_type is None or not exam_type.orderables:
        return f"timepoint {visit.timepoint!r} has no exam type with an orderable"
    external_id = visit.accession or f"{visit.trial}:{visit.subject}:{visit.timepoint}:{visit.day}"
    return ScheduleEvent(
        source=SOURCE,
        external_id=external_id[:199],
        kind=EventKind.COMPLETED,
        trigger="visit history",
        status_code="done (office records)",
        mrn=mrn,
        accession=visit.accession or None,
        procedure_code=exam_type.orderables[0],
        procedure_text=exam_type.label or None,
        modality=exam_type.modality,
        start=datetime.combine(visit.day, _NOON, zone),
        comments=("imported from the office's visit records",),
    )


def import_visits(
    conn: Connection,
    text: str,
    now: datetime,
    zone: ZoneInfo,
    catalogue: ProtocolCatalogue | None = None,
) -> list[int]:
    """Check every row of the visits CSV ``text`` and store them as completed exams in the
    caller's transaction; returns the ids of the exams written. Raises
    :class:`ImportRejected` (before writing anything) when any row has a problem."""
    visits, problems = _read(text)
    trials = (catalogue or ProtocolCatalogue()).trials(conn, {visit.trial for visit in visits})
    events: list[ScheduleEvent] = []
    for visit in visits:
        trial = trials.get(visit.trial)
        entry = find_entry(conn, visit.trial, visit.subject) if trial is not None else None
        if trial is None:
            problems.append(RowProblem(visit.line, f"trial {visit.trial!r} has no protocol loaded"))
        elif entry is None or not entry.mrns:
            problems.append(
                RowProblem(visit.line, f"subject {visit.subject} is not enrolled in {visit.trial}")
            )
        else:
            found = _event(visit, trial, entry.mrns[0], zone)
            if isinstance(found, str):
                problems.append(RowProblem(visit.line, found))
            else:
                events.append(found)
    if problems:
        raise ImportRejected(problems)
    return _apply(conn, events, now)


def _apply(conn: Connection, events: Sequence[ScheduleEvent], now: datetime) -> list[int]:
    """Each visit not imported before becomes an exam (a second import changes nothing)."""
    return [
        apply_event(conn, event, None, now)
        for event in events
        if exam_start(conn, event.source, event.external_id) is None
    ]
