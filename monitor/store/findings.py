"""Findings and occurrences as the store keeps them, and how an evaluation is recorded.

- ``findings``: one row per finding key the engine ever produced (``rules.model`` explains
  the keys). A key the engine produces again keeps its row (same id); when its content
  changes the row is updated; a key that no longer appears is ``resolved`` (with
  ``resolved_at``); a resolved key that reappears is opened again. ``detail`` names the
  subject by study id only: never a name or MRN.
- ``occurrences``: the latest schedule of each evaluated enrolment (one row per due visit,
  keyed like the engine's ``Occurrence.key``), for the dashboard's subject x timepoint
  matrix. Visits that disappear (an anchor moved, the protocol changed) are deleted: the
  schedule has no history, the findings do.

:func:`record_evaluation` writes the difference between what the store holds for a set of
enrolments and what the engine concluded for them, with bulk statements only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, Table, bindparam, delete, func, select, update

from monitor.store.driver import driver_for
from monitor.store.schema import enrolment_mrns, exams, findings, occurrences
from rules import Finding, Occurrence

OPEN = "open"
RESOLVED = "resolved"


_FINDING_FIELDS = (
    "kind",
    "severity",
    "trial",
    "subject",
    "enrolment_id",
    "timepoint",
    "occurrence_key",
    "occurrence_label",
    "exam_id",
    "window_start",
    "window_end",
    "detail",
)

_OCCURRENCE_FIELDS = (
    "enrolment_id",
    "trial",
    "subject",
    "timepoint",
    "number",
    "label",
    "due",
    "window_start",
    "window_end",
    "status",
    "exam_id",
    "version",
    "required_scanner",
)
_CHUNK = 500  # bound parameters per IN list (SQLite and psycopg both take this comfortably)
_LOAD_ALL_FROM = 2_000  # scopes larger than this read the whole table and filter in Python


@dataclass(slots=True)
class FindingChanges:
    """What one recording changed, counted by finding kind."""

    opened: Counter[str] = field(default_factory=Counter)
    reopened: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)
    resolved: Counter[str] = field(default_factory=Counter)
    unchanged: int = 0
    occurrences_changed: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.opened or self.reopened or self.updated or self.resolved)


def chunks(items: Collection[Any], size: int = _CHUNK) -> Iterator[list[Any]]:
    """``items`` in lists of at most ``size`` (for IN lists of bound parameters)."""
    ordered = sorted(items)
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


def _rows_of(
    conn: Connection, table: Table, columns: Sequence[str], scope: Collection[int]
) -> list[Row[*tuple[Any, ...]]]:
    """Rows of ``table`` belonging to the enrolments in ``scope``."""
    query = select(table.c.id, table.c.key, *(table.c[name] for name in columns))
    if len(scope) > _LOAD_ALL_FROM:
        wanted = set(scope)
        return [row for row in conn.execute(query) if row.enrolment_id in wanted]
    found: list[Row[*tuple[Any, ...]]] = []
    for part in chunks(scope):
        found.extend(conn.execute(query.where(table.c.enrolment_id.in_(part))))
    return found


def _finding_values(finding: Finding) -> dict[str, Any]:
    return {
        "kind": finding.kind.value,
        "severity": finding.severity.value,
        "trial": finding.trial,
        "subject": finding.subject,
        "enrolment_id": finding.enrolment_id,
        "timepoint": finding.timepoint,
        "occurrence_key": finding.occurrence_key,
        "occurrence_label": finding.occurrence_label,
        "exam_id": finding.exam_id,
        "window_start": finding.window_start,
        "window_end": finding.window_end,
        "detail": finding.detail,
    }


def _occurrence_values(occurrence: Occurrence) -> dict[str, Any]:
    return {
        "enrolment_id": occurrence.enrolment_id,
        "trial": occurrence.trial,
        "subject": occurrence.subject,
        "timepoint": occurrence.timepoint,
        "number": occurrence.index,
        "label": occurrence.label,
        "due": occurrence.due,
        "window_start": occurrence.window_start,
        "window_end": occurrence.window_end,
        "status": occurrence.status.value,
        "exam_id": occurrence.exam_id,
        "version": occurrence.version,
        "required_scanner": occurrence.required_scanner,
    }


def _differs(row: Row[*tuple[Any, ...]], values: dict[str, Any], names: Sequence[str]) -> bool:
    """Whether ``row`` (id, key, then ``names`` in order, as :func:`_rows_of` selects) differs."""
    return tuple(row[2 : 2 + len(names)]) != tuple(values[name] for name in names)


def record_evaluation(
    conn: Connection,
    found: Iterable[Finding],
    scheduled: Iterable[Occurrence],
    scope: Collection[int],
    now: datetime,
) -> FindingChanges:
    """Make the stored findings and occurrences of the enrolments in ``scope`` match the engine's.

    ``found``/``scheduled`` must be everything the engine concluded for exactly those
    enrolments. Rows of enrolments outside ``scope`` are never touched. Runs in the caller's
    transaction; raises SQLAlchemy errors (an IntegrityError when a concurrent evaluation
    inserted the same key first: the caller retries).
    """
    changes = FindingChanges()
    _record_findings(conn, found, scope, now, changes)
    _record_occurrences(conn, scheduled, scope, now, changes)
    return changes


def _record_findings(
    conn: Connection, found: Iterable[Finding], scope: Collection[int], now: datetime, changes: FindingChanges
) -> None:
    existing = {row.key: row for row in _rows_of(conn, findings, (*_FINDING_FIELDS, "status"), scope)}
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    reopens: list[dict[str, Any]] = []
    seen: set[str] = set()
    for finding in found:
        if finding.key in seen:  # the engine's keys are unique; never insert one twice
            continue
        seen.add(finding.key)
        values = _finding_values(finding)
        row = existing.pop(finding.key, None)
        if row is None:
            inserts.append(
                {**values, "key": finding.key, "status": OPEN, "opened_at": now, "updated_at": now}
            )
            changes.opened[finding.kind.value] += 1
        elif row.status != OPEN:
            reopens.append({**values, "b_id": row.id})
            changes.reopened[finding.kind.value] += 1
        elif _differs(row, values, _FINDING_FIELDS):
            updates.append({**values, "b_id": row.id})
            changes.updated[finding.kind.value] += 1
        else:
            changes.unchanged += 1
    gone = [row for row in existing.values() if row.status == OPEN]
    for row in gone:
        changes.resolved[row.kind] += 1
    driver_for(conn).insert_many(conn, findings, inserts)
    by_id = findings.c.id == bindparam("b_id")
    if updates:
        conn.execute(update(findings).where(by_id).values(updated_at=now), updates)
    if reopens:
        conn.execute(
            update(findings)
            .where(by_id)
            .values(status=OPEN, opened_at=now, updated_at=now, resolved_at=None),
            reopens,
        )
    for part in chunks([row.id for row in gone]):
        conn.execute(
            update(findings)
            .where(findings.c.id.in_(part))
            .values(status=RESOLVED, resolved_at=now, updated_at=now)
        )


def _record_occurrences(
    conn: Connection,
    scheduled: Iterable[Occurrence],
    scope: Collection[int],
    now: datetime,
    changes: FindingChanges,
) -> None:
    existing = {row.key: row for row in _rows_of(conn, occurrences, _OCCURRENCE_FIELDS, scope)}
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    seen: set[str] = set()
    for occurrence in scheduled:
        if occurrence.key in seen:
            continue
        seen.add(occurrence.key)
        values = _occurrence_values(occurrence)
        row = existing.pop(occurrence.key, None)
        if row is None:
            inserts.append({**values, "key": occurrence.key, "updated_at": now})
        elif _differs(row, values, _OCCURRENCE_FIELDS):
            updates.append({**values, "b_id": row.id})
    driver_for(conn).insert_many(conn, occurrences, inserts)
    if updates:
        conn.execute(
            update(occurrences).where(occurrences.c.id == bindparam("b_id")).values(updated_at=now), updates
        )
    for part in chunks([row.id for row in existing.values()]):
        conn.execute(delete(occurrences).where(occurrences.c.id.in_(part)))
    changes.occurrences_changed = len(inserts) + len(updates) + len(existing)


def open_finding_counts(conn: Connection) -> list[tuple[str, int]]:
    """How many findings of each kind are open (``/metrics``)."""
    query = select(findings.c.kind, func.count()).where(findings.c.status == OPEN).group_by(findings.c.kind)
    return [(kind, int(count)) for kind, count in conn.execute(query)]


def open_finding_tally(conn: Connection) -> list[tuple[str, str, int]]:
    """Open findings counted by kind and severity: ``(kind, severity, count)``, most first."""
    count = func.count().label("count")
    query = (
        select(findings.c.kind, findings.c.severity, count)
        .where(findings.c.status == OPEN)
        .group_by(findings.c.kind, findings.c.severity)
        .order_by(count.desc(), findings.c.kind, findings.c.severity)
    )
    return [(kind, severity, int(number)) for kind, severity, number in conn.execute(query)]


@dataclass(frozen=True, slots=True)
class FindingView:
    """A stored finding. Carries the subject's study id, never an MRN or name."""

    id: int
    key: str
    trial: str
    subject: str
    enrolment_id: int
    timepoint: str | None
    occurrence_key: str | None
    occurrence: str | None  # the occurrence's label, e.g. "Week 12 restaging"
    kind: str
    severity: str
    exam_id: int | None
    window_start: date | None
    window_end: date | None
    detail: str
    status: str
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict; window dates are the site's local dates, instants UTC ISO 8601."""
        return {
            "id": self.id,
            "key": self.key,
            "trial": self.trial,
            "subject": self.subject,
            "enrolment_id": self.enrolment_id,
            "timepoint": self.timepoint,
            "occurrence": self.occurrence,
            "occurrence_key": self.occurrence_key,
            "kind": self.kind,
            "severity": self.severity,
            "exam_id": self.exam_id,
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "window_end": self.window_end.isoformat() if self.window_end else None,
            "detail": self.detail,
            "status": self.status,
            "opened_at": self.opened_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
        }


def list_findings(
    engine: Engine,
    *,
    trial: str | None = None,
    subject: str | None = None,
    open_only: bool = False,
) -> list[FindingView]:
    """Findings ordered by trial, subject, window and id; optionally one trial/subject, open ones only."""
    query = select(
        findings.c.id,
        findings.c.key,
        findings.c.trial,
        findings.c.subject,
        findings.c.enrolment_id,
        findings.c.timepoint,
        findings.c.occurrence_key,
        findings.c.occurrence_label.label("occurrence"),
        findings.c.kind,
        findings.c.severity,
        findings.c.exam_id,
        findings.c.window_start,
        findings.c.window_end,
        findings.c.detail,
        findings.c.status,
        findings.c.opened_at,
        findings.c.updated_at,
        findings.c.resolved_at,
    )
    if trial is not None:
        query = query.where(findings.c.trial == trial)
    if subject is not None:
        query = query.where(findings.c.subject == subject)
    if open_only:
        query = query.where(findings.c.status == OPEN)
    query = query.order_by(
        findings.c.trial,
        findings.c.subject,
        findings.c.window_start.is_(None),
        findings.c.window_start,
        findings.c.id,
    )
    with engine.connect() as conn:
        return [FindingView(**row._mapping) for row in conn.execute(query)]


# -- what a message about a finding or an exam is built from -------------------------------


def finding_by_key(conn: Connection, key: str) -> Any | None:
    """The finding row with this key (all columns), or None."""
    return conn.execute(select(findings).where(findings.c.key == key)).first()


def occurrence_by_key(conn: Connection, key: str) -> Any | None:
    """The occurrence row with this key (all columns), or None."""
    return conn.execute(select(occurrences).where(occurrences.c.key == key)).first()


def occurrence_of_exam(conn: Connection, exam_id: int) -> Any | None:
    """The first occurrence (by id) that ``exam_id`` serves, or None: not a research exam."""
    query = select(occurrences).where(occurrences.c.exam_id == exam_id).order_by(occurrences.c.id)
    return conn.execute(query).first()


def open_findings_with_exams(conn: Connection, trial: str) -> list[Any]:
    """The open findings of ``trial``: key, kind, severity, the exam's start and the window's."""
    query = (
        select(
            findings.c.key, findings.c.kind, findings.c.severity, exams.c.start_at, findings.c.window_start
        )
        .select_from(findings.outerjoin(exams, exams.c.id == findings.c.exam_id))
        .where(findings.c.trial == trial, findings.c.status == OPEN)
    )
    return list(conn.execute(query))


def due_unscheduled(conn: Connection, today: date) -> list[Any]:
    """Open ``due_unscheduled`` findings whose window has not closed by ``today``: trial,
    timepoint, window and each MRN of the subject (the simulator books them)."""
    query = (
        select(
            findings.c.trial, findings.c.timepoint, findings.c.window_start, findings.c.window_end,
            enrolment_mrns.c.mrn,
        )
        .join(enrolment_mrns, enrolment_mrns.c.enrolment_id == findings.c.enrolment_id)
        .where(findings.c.kind == "due_unscheduled", findings.c.status == OPEN)
        .where(findings.c.window_end >= today)
        .order_by(findings.c.id)
    )  # fmt: skip
    return list(conn.execute(query))


def findings_of_kind(conn: Connection, kind: str) -> list[Any]:
    """Every finding of ``kind`` (key, status, detail, exam id), oldest first."""
    query = select(findings.c.key, findings.c.status, findings.c.detail, findings.c.exam_id)
    return list(conn.execute(query.where(findings.c.kind == kind).order_by(findings.c.id)))
