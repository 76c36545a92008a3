"""``enroll import``: enrolments from a CSV file, all or nothing.

The file (``examples/enrolments.csv``)::

    trial,subject,mrn,arm,status,off_study,consent,c1d1,...
    ONC-2101,2101-003,E10003|E90003,A,on_study,,2026-01-05,2026-01-26

``trial``, ``subject`` and ``mrn`` are required columns; several MRNs of one patient are
separated by ``|``, each optionally with its identifier pool: ``E10003 (HOSP)``.
``arm``, ``status`` (default ``on_study``), ``off_study`` and
``monitoring_start`` (the day the office starts watching the subject; default: the day of
the import, so the visits before it are history, not missed) are optional; every other
column is an anchor date (``YYYY-MM-DD``; empty: not set). A row for a subject already
enrolled replaces that enrolment (arm, status, dates, MRNs; the monitoring start only when
the row gives one).

Every row is read and checked against its trial's protocol before anything is written;
if any row has a problem, :class:`ImportRejected` lists each one with its line number and
nothing is stored. Problems never quote an MRN or a date value (they name the column).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Connection

from monitor.store.registry.enrolments import (
    EnrolmentEntry,
    SavedEntries,
    check_entries,
    parse_mrns,
    parse_status,
    save_entries,
)
from monitor.store.registry.protocols import ProtocolCatalogue

__all__ = ["ImportRejected", "RowProblem", "import_enrolments", "read_enrolment_csv"]

REQUIRED_COLUMNS = ("trial", "subject", "mrn")
FIXED_COLUMNS = (*REQUIRED_COLUMNS, "arm", "status", "off_study", "monitoring_start")
_ANCHOR_COLUMN = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A problem with one line of the file (line 1 is the header)."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class ImportRejected(ValueError):
    """The file was not imported; ``problems`` lists every problem found, in line order."""

    def __init__(self, problems: Sequence[RowProblem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda problem: problem.line))
        super().__init__("\n".join(str(problem) for problem in self.problems))


# Stands in for an anchor date that could not be read while the row is checked against the
# protocol, so the row is not also told that the anchor is missing. Never stored.
_UNREADABLE = date.min


def _date(text: str, column: str, problems: list[str]) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        problems.append(f"{column}: not a date (write YYYY-MM-DD)")
        return _UNREADABLE


def _entry(values: dict[str, str], anchor_columns: Sequence[str]) -> tuple[EnrolmentEntry, list[str]]:
    problems: list[str] = []
    status_text = values.get("status", "")
    try:
        status = parse_status(status_text) if status_text else parse_status("on_study")
    except ValueError as error:
        problems.append(str(error))
        status = parse_status("on_study")
    anchors: dict[str, date] = {}
    for column in anchor_columns:
        found = _date(values.get(column, ""), column, problems)
        if found is not None:
            anchors[column] = found  # _UNREADABLE only when a problem is reported
    try:
        mrns, pools = parse_mrns(values.get("mrn", "").split("|"))
    except ValueError as error:
        problems.append(f"mrn: {error}")
        mrns, pools = (), {}
    entry = EnrolmentEntry(
        trial=values.get("trial", ""),
        subject=values.get("subject", ""),
        mrns=mrns,
        pools=pools,
        anchors=anchors,
        arm=values.get("arm") or None,
        status=status,
        off_study=_date(values.get("off_study", ""), "off_study", problems),
        monitored_from=_date(values.get("monitoring_start", ""), "monitoring_start", problems),
    )  # a row with problems is never stored, so _UNREADABLE never reaches the store
    if not entry.trial:
        problems.insert(0, "the trial is empty")
    return entry, problems


def read_enrolment_csv(text: str) -> tuple[list[tuple[int, EnrolmentEntry]], list[RowProblem]]:
    """Parse the file's text: entries with their line numbers, and the problems found reading them.

    Checks the header, field counts, dates, statuses and repeated subjects; checking against
    the protocols needs the store (:func:`import_enrolments`).
    """
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    header = [name.strip().lower() for name in next(reader, [])]
    problems: list[RowProblem] = []
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        problems.append(RowProblem(1, f"the header lacks the column(s) {', '.join(missing)}"))
    for name in header:
        if name not in FIXED_COLUMNS and not _ANCHOR_COLUMN.match(name):
            problems.append(RowProblem(1, f"column {name!r} is not an anchor name (lower-case, digits, _)"))
    if len(set(header)) != len(header):
        problems.append(RowProblem(1, "a column name appears twice"))
    if problems:
        return [], problems
    anchor_columns = [name for name in header if name not in FIXED_COLUMNS]
    entries: list[tuple[int, EnrolmentEntry]] = []
    first_line: dict[tuple[str, str], int] = {}
    line = reader.line_num
    for row in reader:
        start, line = line + 1, reader.line_num
        if not any(field.strip() for field in row):
            continue
        if len(row) > len(header):
            problems.append(RowProblem(start, f"has {len(row)} fields, the header has {len(header)}"))
            continue
        values = {name: value.strip() for name, value in zip(header, row, strict=False)}
        entry, found = _entry(values, anchor_columns)
        key = (entry.trial, entry.subject)
        if entry.subject and key in first_line:
            found.append(f"subject {entry.subject} of {entry.trial} is also on line {first_line[key]}")
        else:
            first_line[key] = start
        problems.extend(RowProblem(start, message) for message in found)
        entries.append((start, entry))
    if not entries and not problems:
        problems.append(RowProblem(2, "the file has no enrolment rows"))
    return entries, problems


def import_enrolments(
    conn: Connection,
    text: str,
    now: datetime,
    catalogue: ProtocolCatalogue | None = None,
    *,
    today: date | None = None,
) -> SavedEntries:
    """Check every row of the CSV ``text`` and store them all in the caller's transaction;
    rows without a monitoring start are watched from ``today`` (the site's date of the import).

    Raises :class:`ImportRejected` (before writing anything) when any row has a problem.
    """
    entries, problems = read_enrolment_csv(text)
    catalogue = catalogue or ProtocolCatalogue()
    trials = catalogue.trials(conn, {entry.trial for _, entry in entries if entry.trial})
    checked = check_entries(conn, trials, [entry for _, entry in entries])
    for (line, entry), found in zip(entries, checked, strict=True):
        if not entry.trial:  # already reported as an empty trial
            found = [message for message in found if "has no protocol loaded" not in message]
        problems.extend(RowProblem(line, message) for message in found)
    if problems:
        raise ImportRejected(problems)
    return save_entries(conn, [entry for _, entry in entries], now, today=today)
