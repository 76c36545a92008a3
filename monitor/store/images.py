"""PACS studies of research exams: which to read, how they match exams, what the engine sees.

- :func:`studies_to_read` keeps, of a PACS listing, the studies of research interest (an
  exam's accession number, or an enrolled patient's MRN as patient id) that are new or
  changed (another instance count): studies of other patients are never read nor stored.
- :func:`record_study` stores a study read from the PACS and matches it to an exam: by
  accession number first; else by patient id, study date (the site's day) and modality,
  when exactly one exam fits. Several fitting, or none: stored unmatched, for the office to
  look at (never guessed). Returns the exams whose images changed (the one it matches now,
  and the one it matched before, if another).
- :func:`images_for` gives the engine the studies matched to exams (:class:`rules.StudySeen`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select, update

from monitor.store.findings import chunks
from monitor.store.schema import enrolment_mrns, enrolments, exams, occurrences, pacs_studies
from rules import ExamStatus
from rules.acquisition import SeriesSeen, StudySeen

__all__ = [
    "baseline_exam",
    "exams_starting_between",
    "images_for",
    "record_study",
    "studies_to_read",
    "unmatched_studies",
]


class Listed(Protocol):
    """A study as the PACS lists it (``monitor.pacs.reader.StudyListing``)."""

    @property
    def uid(self) -> str: ...
    @property
    def accession(self) -> str: ...
    @property
    def patient_id(self) -> str: ...
    @property
    def instances(self) -> int: ...


L = TypeVar("L", bound=Listed)


def studies_to_read(conn: Connection, listed: Sequence[L]) -> list[L]:
    """The studies of ``listed`` of research interest that are not stored as they are now."""
    accessions = _present(conn, exams.c.accession, {s.accession for s in listed if s.accession})
    patients = _present(conn, enrolment_mrns.c.mrn, {s.patient_id for s in listed if s.patient_id})
    wanted = [s for s in listed if s.accession in accessions or s.patient_id in patients]
    stored: dict[str, int] = {}
    for part in chunks([s.uid for s in wanted]):
        query = select(pacs_studies.c.study_uid, pacs_studies.c.instances).where(
            pacs_studies.c.study_uid.in_(part)
        )
        stored.update({uid: count for uid, count in conn.execute(query)})
    return [s for s in wanted if stored.get(s.uid) != s.instances]


def record_study(
    conn: Connection, study: StudySeen, instances: int, zone: ZoneInfo, now: datetime
) -> tuple[int | None, set[int]]:
    """Store ``study`` (listed with ``instances`` images) and match it; the exam it matches, if
    any, and the exams whose images changed."""
    exam_id, matched_by = _match(conn, study, zone)
    values: dict[str, Any] = {
        "accession": study.accession[:80],
        "patient_id": study.patient_id[:80],
        "study_date": study.study_date,
        "modalities": "\\".join(study.modalities)[:80],
        "instances": instances,
        "series": [_series_json(series) for series in study.series],
        "exam_id": exam_id,
        "matched_by": matched_by,
        "updated_at": now,
    }
    before = conn.execute(
        select(pacs_studies.c.id, pacs_studies.c.exam_id).where(pacs_studies.c.study_uid == study.uid)
    ).first()
    if before is None:
        conn.execute(pacs_studies.insert().values(study_uid=study.uid, first_seen_at=now, **values))
    else:
        conn.execute(update(pacs_studies).where(pacs_studies.c.id == before.id).values(**values))
    changed = {exam for exam in (exam_id, before.exam_id if before is not None else None) if exam is not None}
    return exam_id, changed


def images_for(conn: Connection, exam_ids: Collection[int] | None) -> dict[int, StudySeen]:
    """The study matched to each of ``exam_ids`` (every matched study when None). An exam with
    two studies (a second visit to the scanner) gets them as one: their series together."""
    query = select(pacs_studies).where(pacs_studies.c.exam_id.is_not(None)).order_by(pacs_studies.c.id)
    rows: list[Any] = []
    if exam_ids is None:
        rows = list(conn.execute(query))
    else:
        for part in chunks(exam_ids):
            rows.extend(conn.execute(query.where(pacs_studies.c.exam_id.in_(part))))
    found: dict[int, StudySeen] = {}
    for row in sorted(rows, key=lambda row: row.id):
        study = _study(row)
        earlier = found.get(row.exam_id)
        if earlier is not None:
            study = StudySeen(earlier.uid, earlier.accession, earlier.patient_id, earlier.study_date,
                              tuple(dict.fromkeys((*earlier.modalities, *study.modalities))),
                              (*earlier.series, *study.series))  # fmt: skip
        found[int(row.exam_id)] = study
    return found


def baseline_exam(conn: Connection, enrolment_id: int, timepoint: str) -> int | None:
    """The exam serving the first visit of ``timepoint`` for ``enrolment_id`` (the baseline
    whose images a later exam is compared with), if one does."""
    query = (
        select(occurrences.c.exam_id)
        .where(occurrences.c.enrolment_id == enrolment_id, occurrences.c.timepoint == timepoint)
        .order_by(occurrences.c.number)
        .limit(1)
    )
    found = conn.execute(query).scalar()
    return int(found) if found is not None else None


def exams_starting_between(conn: Connection, after: datetime, until: datetime) -> list[int]:
    """Exams that start after ``after`` and at or before ``until`` (whose images fell due
    between two polls, with the due delay taken off both ends)."""
    query = select(exams.c.id).where(exams.c.start_at > after, exams.c.start_at <= until)
    return [int(found) for (found,) in conn.execute(query.order_by(exams.c.id))]


@dataclass(frozen=True, slots=True)
class UnmatchedStudy:
    """A stored study of an enrolled patient that matched no exam, with the patient's
    enrolments (trial, subject) for the office to find it by."""

    study: StudySeen
    enrolments: tuple[tuple[str, str], ...]


def unmatched_for_trials(
    conn: Connection, trials: Collection[str] | None, limit: int = 50
) -> list[UnmatchedStudy]:
    """The latest ``limit`` unmatched studies of patients enrolled in ``trials`` (every trial
    when None), each with those enrolments."""
    found: list[UnmatchedStudy] = []
    for study in unmatched_studies(conn):
        query = (
            select(enrolments.c.trial, enrolments.c.subject)
            .join(enrolment_mrns, enrolment_mrns.c.enrolment_id == enrolments.c.id)
            .where(enrolment_mrns.c.mrn == study.patient_id)
            .order_by(enrolments.c.trial, enrolments.c.subject)
        )
        pairs = tuple(
            (str(trial), str(subject))
            for trial, subject in conn.execute(query)
            if trials is None or trial in trials
        )
        if pairs:
            found.append(UnmatchedStudy(study, pairs))
        if len(found) >= limit:
            break
    return found


def unmatched_studies(conn: Connection) -> list[StudySeen]:
    """Studies of enrolled patients that matched no exam (or several), newest first."""
    rows = conn.execute(
        select(pacs_studies)
        .where(pacs_studies.c.exam_id.is_(None))
        .order_by(pacs_studies.c.updated_at.desc())
    )
    return [_study(row) for row in rows]


def _present(conn: Connection, column: Any, values: Collection[str]) -> set[str]:
    found: set[str] = set()
    for part in chunks(values):
        found.update(value for (value,) in conn.execute(select(column).where(column.in_(part)).distinct()))
    return found


_NOT_IMAGED = (ExamStatus.CANCELLED.value, ExamStatus.DELETED.value, ExamStatus.NO_SHOW.value)


def _match(conn: Connection, study: StudySeen, zone: ZoneInfo) -> tuple[int | None, str]:
    """The exam ``study`` belongs to, and how it was told (``""``: none, or not one)."""
    live = exams.c.status.not_in(_NOT_IMAGED)
    if study.accession:
        ids = [
            i for (i,) in conn.execute(select(exams.c.id).where(exams.c.accession == study.accession, live))
        ]
        if len(ids) == 1:
            return int(ids[0]), "accession"
        if ids:
            return None, ""
    if not study.patient_id or study.study_date is None:
        return None, ""
    candidates = conn.execute(
        select(exams.c.id, exams.c.start_at, exams.c.modality).where(exams.c.mrn == study.patient_id, live)
    )
    fitting = [
        int(row.id)
        for row in candidates
        if row.start_at is not None
        and _local_day(row.start_at, zone) == study.study_date
        and (row.modality or "").upper() in {m.upper() for m in study.modalities}
    ]
    return (fitting[0], "patient_date_modality") if len(fitting) == 1 else (None, "")


def _local_day(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


def _series_json(series: SeriesSeen) -> dict[str, Any]:
    return {
        "uid": series.uid,
        "number": series.number,
        "description": series.description,
        "modality": series.modality,
        "instances": series.instances,
        "values": {name: [list(value) for value in values] for name, values in series.values.items()},
    }


def _study(row: Any) -> StudySeen:
    series = tuple(
        SeriesSeen(
            uid=str(item["uid"]),
            number=item.get("number"),
            description=str(item.get("description", "")),
            modality=str(item.get("modality", "")),
            instances=int(item.get("instances", 0)),
            values={name: tuple(tuple(value) for value in values) for name, values in item["values"].items()},
        )
        for item in row.series
    )
    modalities = tuple(part for part in row.modalities.split("\\") if part)
    return StudySeen(row.study_uid, row.accession, row.patient_id, row.study_date, modalities, series)
