"""Reading enrolments and exams from the store as the engine's inputs (``Enrolment``, ``ExamRecord``).

Also the lookups that decide *whom* to re-evaluate after exam events: the enrolments whose
MRNs match the exams' MRNs, widened to every enrolment of the same patients (a patient in two
trials, or with two MRNs, is judged in one evaluation so that an exam serving one trial is
not reported as unmatched imaging by the other).

Every function runs on the caller's connection and raises SQLAlchemy errors as they come.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import date
from typing import Any

from sqlalchemy import Connection, Row, func, select

from monitor.store.findings import chunks
from monitor.store.schema import enrolment_mrns, enrolments, exam_events, exams
from rules import Enrolment, EnrolmentStatus, ExamRecord, ExamStatus

__all__ = [
    "enrolment_ids_for_exams",
    "event_mark",
    "load_enrolments",
    "load_exams",
    "mrns_changed_since",
    "mrns_touched_since",
    "patient_groups",
    "same_patients",
    "to_enrolment",
]

_EXAM_COLUMNS = (
    exams.c.id,
    exams.c.mrn,
    exams.c.procedure_code,
    exams.c.procedure_text,
    exams.c.modality,
    exams.c.start_at,
    exams.c.status,
    exams.c.location,
    exams.c.accession,
    exams.c.external_id,
    exams.c.order_number,
    exams.c.mrn_pool,
)  # not updated_at: the engine does not use it, and 300,000 conversions cost 0.3 s


def anchors_from_json(raw: Any) -> dict[str, date]:
    """The stored ``{name: "YYYY-MM-DD"}`` as dates (entries that are not dates are dropped)."""
    found: dict[str, date] = {}
    if isinstance(raw, dict):
        for name, value in raw.items():
            try:
                found[str(name)] = date.fromisoformat(str(value))
            except ValueError:
                continue
    return found


def to_enrolment(row: Row[*tuple[Any, ...]], mrns: Iterable[tuple[str, str]]) -> Enrolment:
    """One ``enrolments`` row and its (MRN, pool) pairs as the engine's :class:`rules.Enrolment`."""
    pairs = list(mrns)
    return Enrolment(
        trial=row.trial,
        subject=row.subject,
        mrns=tuple(sorted({mrn for mrn, _ in pairs})),
        pools={mrn: pool for mrn, pool in pairs if pool},
        anchors=anchors_from_json(row.anchors),
        arm=row.arm,
        status=EnrolmentStatus(row.status),
        off_study=row.off_study,
        id=int(row.id),
        monitored_from=row.monitored_from,
    )


def _mrns_by_enrolment(conn: Connection, ids: Collection[int] | None) -> dict[int, list[tuple[str, str]]]:
    """Each enrolment's (MRN, pool) pairs."""
    found: dict[int, list[tuple[str, str]]] = {}
    query = select(enrolment_mrns.c.enrolment_id, enrolment_mrns.c.mrn, enrolment_mrns.c.pool)
    parts = [None] if ids is None else list(chunks(ids))
    for part in parts:
        statement = query if part is None else query.where(enrolment_mrns.c.enrolment_id.in_(part))
        for enrolment_id, mrn, pool in conn.execute(statement):
            found.setdefault(int(enrolment_id), []).append((mrn, pool or ""))
    return found


def load_enrolments(conn: Connection, ids: Collection[int] | None = None) -> list[Enrolment]:
    """Enrolments with ``ids`` (None: all), ordered by id, as engine inputs."""
    query = select(enrolments).order_by(enrolments.c.id)
    rows: list[Row[*tuple[Any, ...]]] = []
    if ids is None:
        rows = list(conn.execute(query))
    else:
        for part in chunks(ids):
            rows.extend(conn.execute(query.where(enrolments.c.id.in_(part))))
    mrns = _mrns_by_enrolment(conn, ids)
    return [to_enrolment(row, mrns.get(int(row.id), ())) for row in rows]


_STATUS = {status.value: status for status in ExamStatus}


def _exam_records(rows: Iterable[Row[*tuple[Any, ...]]]) -> list[ExamRecord]:
    """Rows of ``_EXAM_COLUMNS`` as engine inputs (positional unpacking: a full evaluation
    reads 300,000 of them, and attribute access per field costs a second there)."""
    return [
        ExamRecord(
            id=int(exam_id),
            mrn=mrn or "",
            procedure_code=code or "",
            procedure_text=text or "",
            modality=modality or "",
            start=start,
            status=_STATUS[status],
            location=location or "",
            accession=accession or "",
            external_id=external_id or "",
            order_number=order_number or "",
            mrn_pool=mrn_pool or "",
        )
        for (
            exam_id,
            mrn,
            code,
            text,
            modality,
            start,
            status,
            location,
            accession,
            external_id,
            order_number,
            mrn_pool,
        ) in rows
    ]


def load_exams(conn: Connection, mrns: Collection[str] | None = None) -> list[ExamRecord]:
    """Exams of the patients with ``mrns`` (None: of every enrolled patient), as engine inputs."""
    query = select(*_EXAM_COLUMNS)
    if mrns is None:
        return _exam_records(
            conn.execute(query.where(exams.c.mrn.in_(select(enrolment_mrns.c.mrn).distinct())))
        )
    records: list[ExamRecord] = []
    for part in chunks(mrns):
        records.extend(_exam_records(conn.execute(query.where(exams.c.mrn.in_(part)))))
    return records


def enrolment_ids_for_exams(conn: Connection, exam_ids: Collection[int]) -> set[int]:
    """Enrolments holding the MRN of any of ``exam_ids``, now or in any of their events (an
    exam filed again under another patient concerns the first patient's enrolments too)."""
    found: set[int] = set()
    for part in chunks(set(exam_ids)):
        found.update(
            int(enrolment_id)
            for (enrolment_id,) in conn.execute(
                select(enrolment_mrns.c.enrolment_id)
                .join(exams, exams.c.mrn == enrolment_mrns.c.mrn)
                .where(exams.c.id.in_(part))
                .distinct()
            )
        )
        carried = _mrns_carried(conn, part)
        if carried:
            query = select(enrolment_mrns.c.enrolment_id).where(enrolment_mrns.c.mrn.in_(sorted(carried)))
            found.update(int(enrolment_id) for (enrolment_id,) in conn.execute(query))
    return found


def patient_groups(conn: Connection) -> list[list[int]]:
    """Every enrolment's id, grouped with the enrolments sharing an MRN with it (the same
    patient, transitively), each group and the list in id order. What a sweep judges in
    parts must keep a patient together: an exam serving one enrolment is no finding for
    another of the same patient."""
    parent: dict[int, int] = {int(i): int(i) for (i,) in conn.execute(select(enrolments.c.id))}

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    first_of_mrn: dict[str, int] = {}
    for enrolment_id, mrn in conn.execute(select(enrolment_mrns.c.enrolment_id, enrolment_mrns.c.mrn)):
        other = first_of_mrn.setdefault(mrn, int(enrolment_id))
        parent[root(int(enrolment_id))] = root(other)
    groups: dict[int, list[int]] = {}
    for enrolment_id in sorted(parent):
        groups.setdefault(root(enrolment_id), []).append(enrolment_id)
    return sorted(groups.values())


def same_patients(conn: Connection, ids: Collection[int]) -> set[int]:
    """``ids`` plus every enrolment sharing an MRN with them, repeated until nothing is added."""
    scope = set(ids)
    frontier = set(ids)
    while frontier:
        mrns = {mrn for found in _mrns_by_enrolment(conn, frontier).values() for mrn, _ in found}
        more: set[int] = set()
        for part in chunks(mrns):
            more.update(
                int(enrolment_id)
                for (enrolment_id,) in conn.execute(
                    select(enrolment_mrns.c.enrolment_id).where(enrolment_mrns.c.mrn.in_(part)).distinct()
                )
            )
        frontier = more - scope
        scope |= frontier
    return scope


def event_mark(conn: Connection) -> int:
    """The newest exam event's id: what an evaluation read is current up to."""
    return int(conn.execute(select(func.max(exam_events.c.id))).scalar() or 0)


def mrns_changed_since(conn: Connection, mark: int) -> set[str]:
    """MRNs of exams that received an event after :func:`event_mark` returned ``mark``."""
    return {
        mrn
        for (mrn,) in conn.execute(
            # Driven by the events' primary-key range (a join lets SQLite scan every exam).
            select(exams.c.mrn)
            .where(exams.c.id.in_(select(exam_events.c.exam_id).where(exam_events.c.id > mark)))
            .where(exams.c.mrn.is_not(None))
            .distinct()
        )
    }


def _mrns_carried(conn: Connection, exam_ids: Any) -> set[str]:
    """Every MRN the events of ``exam_ids`` (ids, or a subquery of them) ever carried."""
    carried = exam_events.c.fields["mrn"].as_string()
    query = select(carried).where(exam_events.c.exam_id.in_(exam_ids), carried.is_not(None)).distinct()
    return {mrn for (mrn,) in conn.execute(query) if mrn}


def mrns_touched_since(conn: Connection, mark: int) -> set[str]:
    """The MRNs whose exams may have changed after ``mark``: each changed exam's MRN now
    (:func:`mrns_changed_since`) and every MRN its events ever carried, so that an exam
    filed again under another patient leaves the first patient's enrolments changed too."""
    changed = select(exam_events.c.exam_id).where(exam_events.c.id > mark)
    return mrns_changed_since(conn, mark) | _mrns_carried(conn, changed)


def mrns_to_watch(conn: Connection) -> list[str]:
    """MRNs of subjects still expecting scans (screening, on study, follow-up), sorted.

    What a per-patient FHIR poll may ask about: minimum necessary, nobody off study.
    """
    watching = [status.value for status in EnrolmentStatus if status.expects_scans]
    query = (
        select(enrolment_mrns.c.mrn)
        .join(enrolments, enrolments.c.id == enrolment_mrns.c.enrolment_id)
        .where(enrolments.c.status.in_(watching))
        .distinct()
        .order_by(enrolment_mrns.c.mrn)
    )
    return [str(mrn) for (mrn,) in conn.execute(query)]


def exams_changed_since(conn: Connection, mark: int) -> list[int]:
    """Ids of exams that received an event after :func:`event_mark` returned ``mark``."""
    query = select(exam_events.c.exam_id).where(exam_events.c.id > mark).distinct()
    return sorted(int(exam_id) for (exam_id,) in conn.execute(query))
