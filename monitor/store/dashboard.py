"""What the dashboard reads, already cut to what one account may see.

Scoping is decided here, once, not in each page: a coordinator sees the trials assigned to
them, a technologist the research exams of their modalities. An object outside the scope
is reported exactly like one that does not exist (``None``), so a page answers 404 and
never confirms that another trial's exam or finding exists.

A "research exam" is an exam the engine linked to a trial: an occurrence it serves, or a
finding about it. Other imaging in the feed is not shown on the dashboard.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Select, func, select

from monitor.store.accounts import User
from monitor.store.findings import OPEN
from monitor.store.schema import (
    enrolment_mrns,
    enrolments,
    exam_events,
    exams,
    findings,
    messages,
    notifications,
    occurrences,
    trial_versions,
)

__all__ = [
    "ExamLinks",
    "MatrixCell",
    "TrialMatrix",
    "UpcomingExam",
    "exam_links",
    "scoped_findings",
    "trial_matrix",
    "upcoming_exams",
    "visible_exam",
    "visible_finding",
    "visible_trial",
]


def _in_scope(column: Any, scope: Collection[str] | None) -> Any:
    return True if scope is None else column.in_(sorted(scope))


@dataclass(frozen=True, slots=True)
class UpcomingExam:
    exam_id: int
    start: datetime
    trial: str
    subject: str
    timepoint: str
    window_start: date | None
    window_end: date | None
    status: str  # the occurrence's status (booked, done_in_window...) or the finding kind
    modality: str
    room: str
    procedure: str
    order_ok: bool
    problems: tuple[str, ...]  # kinds of open findings about this exam
    alerts: tuple[tuple[str, int], ...] = ()  # (outbox status, how many) of its notifications


def research_exam_fields(row: Any) -> dict[str, Any]:
    """What every list of research exams shows of one, from a row of ``exams`` joined to the
    occurrence or finding that links it to a trial (``label`` the timepoint's)."""
    return {
        "exam_id": int(row.id),
        "start": row.start_at,
        "trial": row.trial,
        "subject": row.subject,
        "timepoint": row.label or "",
        "window_start": row.window_start,
        "window_end": row.window_end,
        "modality": row.modality or "",
        "room": row.location or "",
    }


@dataclass(frozen=True, slots=True)
class UpcomingFilter:
    """What an Upcoming list is narrowed to, besides the account's scope."""

    start: datetime
    end: datetime
    trial: str | None = None
    modality: str | None = None
    room: str | None = None


_EXAM_COLUMNS = (exams.c.id, exams.c.start_at, exams.c.modality, exams.c.location,
                 exams.c.procedure_code, exams.c.procedure_text)  # fmt: skip
# Exams that serve a visit, with the visit's window and status...
_SERVING = select(
    *_EXAM_COLUMNS, occurrences.c.trial, occurrences.c.subject, occurrences.c.label,
    occurrences.c.window_start, occurrences.c.window_end, occurrences.c.status,
).join(occurrences, occurrences.c.exam_id == exams.c.id)  # fmt: skip
# ...and those known by their open findings (wrong orderable, unmatched ...: they serve none).
_FLAGGED = select(
    *_EXAM_COLUMNS, findings.c.trial, findings.c.subject, findings.c.occurrence_label.label("label"),
    findings.c.window_start, findings.c.window_end, findings.c.kind.label("status"),
).join(findings, findings.c.exam_id == exams.c.id).where(findings.c.status == OPEN)  # fmt: skip


def _narrowed(query: Select[Any], table: Any, user: User, wanted: UpcomingFilter) -> Select[Any]:
    """``query`` cut to the period, the account's trials and modalities, and the filters."""
    query = query.where(exams.c.start_at >= wanted.start, exams.c.start_at < wanted.end)
    query = query.where(exams.c.status != "cancelled", _in_scope(table.c.trial, user.trial_scope()))
    query = query.where(_in_scope(func.upper(exams.c.modality), user.modality_scope()))
    if wanted.trial:
        query = query.where(table.c.trial == wanted.trial)
    if wanted.modality:
        query = query.where(func.upper(exams.c.modality) == wanted.modality.upper())
    if wanted.room:
        query = query.where(exams.c.location.contains(wanted.room, autoescape=True))
    return query


def _research_rows(
    conn: Connection, user: User, wanted: UpcomingFilter
) -> tuple[list[Any], dict[int, set[str]]]:
    """The research exams in the period, earliest first, and the open problem kinds of each:
    one pass over the exams serving a visit, one over the open findings about exams."""
    rows = list(conn.execute(_narrowed(_SERVING, occurrences, user, wanted)).all())
    seen = {row.id for row in rows}
    problems: dict[int, set[str]] = {}
    for row in conn.execute(_narrowed(_FLAGGED, findings, user, wanted)).all():
        if row.status != "in_window":
            problems.setdefault(row.id, set()).add(row.status)
        if row.id not in seen:
            seen.add(row.id)
            rows.append(row)
    rows.sort(key=lambda row: (row.start_at, row.id))
    return rows, problems


def upcoming_exams(
    conn: Connection,
    user: User,
    start: datetime,
    end: datetime,
    *,
    trial: str | None = None,
    modality: str | None = None,
    room: str | None = None,
    problems_only: bool = False,
) -> list[UpcomingExam]:
    """Research exams starting in [start, end) the account may see, earliest first."""
    rows, problems = _research_rows(conn, user, UpcomingFilter(start, end, trial, modality, room))
    alerts = _alert_counts(conn, [row.id for row in rows], user.trial_scope())
    found = []
    for row in rows:
        kinds = tuple(sorted(problems.get(row.id, ())))
        if problems_only and not kinds:
            continue
        found.append(
            UpcomingExam(
                **research_exam_fields(row),
                status=row.status,
                procedure=row.procedure_text or row.procedure_code or "",
                order_ok="wrong_orderable" not in kinds,
                problems=kinds,
                alerts=tuple(sorted(alerts.get(row.id, {}).items())),
            )
        )
    return found


def _alert_counts(
    conn: Connection, exam_ids: Sequence[int], trials: Collection[str] | None
) -> dict[int, dict[str, int]]:
    """For each exam, how many of its notifications (of the trials in scope) are in each status."""
    counts: dict[int, dict[str, int]] = {}
    for part in range(0, len(exam_ids), 500):
        query = (
            select(notifications.c.exam_id, notifications.c.status, func.count())
            .where(notifications.c.exam_id.in_(exam_ids[part : part + 500]))
            .where(_in_scope(notifications.c.trial, trials))
            .group_by(notifications.c.exam_id, notifications.c.status)
        )
        for exam_id, status, count in conn.execute(query):
            counts.setdefault(exam_id, {})[status] = count
    return counts


@dataclass(frozen=True, slots=True)
class MatrixCell:
    status: str
    label: str
    due: date
    window_start: date
    window_end: date
    exam_id: int | None


@dataclass(slots=True)
class TrialMatrix:
    """Subjects (rows) by timepoints (columns); a subject may have no cell for a column."""

    trial: str
    columns: list[tuple[str, int, str]] = field(default_factory=list)  # (timepoint, number, label)
    subjects: list[str] = field(default_factory=list)
    cells: dict[tuple[str, str, int], MatrixCell] = field(default_factory=dict)

    def cell(self, subject: str, column: tuple[str, int, str]) -> MatrixCell | None:
        return self.cells.get((subject, column[0], column[1]))


def visible_trial(user: User, trial: str) -> bool:
    scope = user.trial_scope()
    return scope is None or trial in scope


def trial_matrix(conn: Connection, trial: str) -> TrialMatrix:
    """The subject x timepoint matrix of ``trial`` from the stored occurrences."""
    matrix = TrialMatrix(trial)
    firsts: dict[tuple[str, int], tuple[date, str]] = {}
    subjects: set[str] = set()
    query = select(
        occurrences.c.subject,
        occurrences.c.timepoint,
        occurrences.c.number,
        occurrences.c.label,
        occurrences.c.due,
        occurrences.c.window_start,
        occurrences.c.window_end,
        occurrences.c.status,
        occurrences.c.exam_id,
    ).where(occurrences.c.trial == trial)
    cells = matrix.cells
    for subject, timepoint, number, label, due, start, end, status, exam_id in conn.execute(query).all():
        subjects.add(subject)
        key = (timepoint, number)
        first = firsts.get(key)
        if first is None or due < first[0]:
            firsts[key] = (due, label)
        cells[(subject, timepoint, number)] = MatrixCell(status, label, due, start, end, exam_id)
    for subject in conn.execute(select(enrolments.c.subject).where(enrolments.c.trial == trial)).scalars():
        subjects.add(subject)
    matrix.columns = [(k[0], k[1], v[1]) for k, v in sorted(firsts.items(), key=lambda kv: (kv[1][0], kv[0]))]
    matrix.subjects = sorted(subjects)
    return matrix


# Findings about an exam's images: the matrix marks the exam's cell while one is open.
IMAGE_KINDS = ("parameter_deviation", "scanner_mismatch", "images_missing")


def image_flags(conn: Connection, trial: str) -> dict[int, list[str]]:
    """The exams of ``trial`` with open findings about their images: exam id -> kinds."""
    query = (
        select(findings.c.exam_id, findings.c.kind)
        .where(findings.c.trial == trial, findings.c.status == "open", findings.c.kind.in_(IMAGE_KINDS))
        .where(findings.c.exam_id.is_not(None))
        .order_by(findings.c.exam_id, findings.c.kind)
    )
    flags: dict[int, list[str]] = {}
    for exam_id, kind in conn.execute(query):
        flags.setdefault(int(exam_id), []).append(str(kind))
    return flags


@dataclass(frozen=True, slots=True)
class ExamLinks:
    """The trials (and subjects) one exam belongs to, as the engine linked them."""

    trials: frozenset[str]
    subjects: tuple[tuple[str, str], ...]  # (trial, subject)


def exam_links(conn: Connection, exam_id: int) -> ExamLinks:
    pairs: set[tuple[str, str]] = set()
    for table in (occurrences, findings):
        pairs.update(
            (row.trial, row.subject)
            for row in conn.execute(select(table.c.trial, table.c.subject).where(table.c.exam_id == exam_id))
        )
    return ExamLinks(frozenset(t for t, _ in pairs), tuple(sorted(pairs)))


def visible_exam(conn: Connection, user: User, exam_id: int) -> tuple[Any, ExamLinks] | None:
    """The exam row and its links, if it is a research exam the account may see."""
    row = conn.execute(select(exams).where(exams.c.id == exam_id)).first()
    if row is None:
        return None
    links = exam_links(conn, exam_id)
    if not links.trials:
        return None if not user.is_admin else (row, links)
    trials = user.trial_scope()
    if trials is not None and not links.trials & set(trials):
        return None
    modalities = user.modality_scope()
    if modalities is not None and (row.modality or "").upper() not in modalities:
        return None
    return row, links


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One event of an exam's feed history, with what the message says about its sender."""

    event: Any  # the exam_events row
    control_id: str
    key_reused: bool  # the message's MSH-3/4/10 had come before with another body
    first_of_key: int | None  # that earlier message
    late: bool  # older than an event that arrived before it: history only, the state kept


def exam_history(conn: Connection, exam_id: int) -> list[HistoryEntry]:
    """The exam's events in arrival order, each with its message's control id and flags."""
    rows = conn.execute(
        select(exam_events, messages.c.control_id, messages.c.key_reused, messages.c.original_id)
        .outerjoin(messages, messages.c.id == exam_events.c.message_id)
        .where(exam_events.c.exam_id == exam_id)
        .order_by(exam_events.c.id)
    ).all()
    entries: list[HistoryEntry] = []
    newest: datetime | None = None
    for row in rows:
        when = row.event_time
        late = newest is not None and when is not None and when < newest
        if when is not None and (newest is None or when > newest):
            newest = when
        entries.append(HistoryEntry(row, row.control_id or "", bool(row.key_reused), row.original_id, late))
    return entries


def _finding_scope(query: Select[Any], user: User) -> Select[Any]:
    query = query.where(_in_scope(findings.c.trial, user.trial_scope()))
    modalities = user.modality_scope()
    if modalities is not None:  # technologists see findings about exams of their modalities only
        query = query.join(exams, exams.c.id == findings.c.exam_id).where(
            func.upper(exams.c.modality).in_(sorted(modalities))
        )
    return query


def scoped_findings(
    conn: Connection,
    user: User,
    *,
    open_only: bool = True,
    trial: str | None = None,
    exam_id: int | None = None,
    sort: str = "window",
) -> list[Any]:
    """Findings the account may see (all columns), sorted by ``sort``."""
    orders: dict[str, Sequence[Any]] = {
        "window": (findings.c.window_start.is_(None), findings.c.window_start, findings.c.id),
        "trial": (findings.c.trial, findings.c.subject, findings.c.id),
        "severity": (findings.c.severity, findings.c.id),
        "kind": (findings.c.kind, findings.c.id),
        "opened": (findings.c.opened_at.desc(), findings.c.id),
    }
    query = _finding_scope(select(findings), user)
    if open_only:
        query = query.where(findings.c.status == OPEN, findings.c.kind != "in_window")
    if trial:
        query = query.where(findings.c.trial == trial)
    if exam_id is not None:
        query = query.where(findings.c.exam_id == exam_id)
    return list(conn.execute(query.order_by(*orders.get(sort, orders["window"]))))


def visible_finding(conn: Connection, user: User, finding_id: int) -> Any | None:
    return conn.execute(_finding_scope(select(findings), user).where(findings.c.id == finding_id)).first()


def scoped_enrolments(conn: Connection, user: User, trial: str | None = None) -> list[Any]:
    """Enrolments (no MRNs) of the trials the account may see."""
    if user.modality_scope() is not None:
        return []
    query = select(
        enrolments.c.id,
        enrolments.c.trial,
        enrolments.c.subject,
        enrolments.c.arm,
        enrolments.c.status,
        enrolments.c.off_study,
        enrolments.c.anchors,
    ).where(_in_scope(enrolments.c.trial, user.trial_scope()))
    if trial:
        query = query.where(enrolments.c.trial == trial)
    return list(conn.execute(query.order_by(enrolments.c.trial, enrolments.c.subject)))


def visible_enrolment(conn: Connection, user: User, enrolment_id: int) -> Any | None:
    if user.modality_scope() is not None:
        return None
    return conn.execute(
        select(enrolments).where(
            enrolments.c.id == enrolment_id, _in_scope(enrolments.c.trial, user.trial_scope())
        )
    ).first()


def enrolment_mrn_list(conn: Connection, enrolment_id: int) -> list[str]:
    return list(
        conn.execute(
            select(enrolment_mrns.c.mrn).where(enrolment_mrns.c.enrolment_id == enrolment_id)
        ).scalars()
    )


def window_of(now: datetime, days: int) -> tuple[datetime, datetime]:
    return now, now + timedelta(days=days)


DataVersion = tuple[Any, ...]


def data_version(conn: Connection, *, feed: bool = True) -> DataVersion:
    """What changes whenever a finding, occurrence, enrolment or protocol changes, and with
    ``feed`` also whenever an exam or an outbox row changes (pages that show exam times,
    rooms or alert status; a trial's matrix does not, so the feed's churn of other exams
    leaves it alone)."""
    probes = [
        select(func.max(findings.c.updated_at)).scalar_subquery(),
        select(func.max(occurrences.c.updated_at)).scalar_subquery(),
        select(func.max(enrolments.c.updated_at)).scalar_subquery(),
        select(func.max(trial_versions.c.id)).scalar_subquery(),
        # A row added with the same time as the newest (a fixed clock, two changes in one
        # microsecond) leaves the maxima above as they were; its id does not.
        select(func.max(findings.c.id)).scalar_subquery(),
        select(func.max(occurrences.c.id)).scalar_subquery(),
        select(func.max(enrolments.c.id)).scalar_subquery(),
    ]
    if feed:
        probes.append(select(func.max(exam_events.c.id)).scalar_subquery())
        probes.append(select(func.max(notifications.c.updated_at)).scalar_subquery())
    return tuple(conn.execute(select(*probes)).one())
