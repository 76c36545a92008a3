"""The exam page's conformance table: the exam's images against its exam type's acquisition rules.

The rules are those of the protocol version of the visit the exam serves (the stored
occurrence); the baseline images, those of the exam serving the first visit of the rules'
``baseline`` timepoint for the same subject. The check is the engine's own
(:func:`rules.acquisition.check_study`), run on the stored metadata: the table shows what the
finding was made from, every row (rule, series, attribute, expected, actual).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from monitor.store.findings import occurrence_of_exam
from monitor.store.images import baseline_exam, images_for
from monitor.store.registry.protocols import ProtocolCatalogue
from rules.acquisition import Conformance, StudySeen, check_study

__all__ = ["ExamImages", "exam_images"]


@dataclass(frozen=True, slots=True)
class ExamImages:
    """What the exam page shows of the exam's images: the study (None: none arrived), the
    check (None: the exam type has no acquisition rules) and whether baseline images exist."""

    study: StudySeen | None
    conformance: Conformance | None
    baseline: StudySeen | None


def exam_images(
    conn: Connection, catalogue: ProtocolCatalogue, exam_id: int, procedure_code: str
) -> ExamImages | None:
    """The images of ``exam_id`` and their check; None when it serves no visit whose exam
    type has acquisition rules and no study is matched to it."""
    occurrence = occurrence_of_exam(conn, exam_id)
    study = images_for(conn, [exam_id]).get(exam_id)
    acquisition = None
    if occurrence is not None:
        trial = catalogue.trials(conn, [occurrence.trial]).get(occurrence.trial)
        version = next((v for v in trial.versions if v.name == occurrence.version), None) if trial else None
        exam_type = version.exam_for(procedure_code) if version is not None else None
        if exam_type is not None and version is not None:
            visit = next((t for t in version.timepoints if t.id == occurrence.timepoint), None)
            own = visit.acquisition if visit is not None else {}
            acquisition = own.get(exam_type.id, exam_type.acquisition)
    if acquisition is None:
        return ExamImages(study, None, None) if study is not None else None
    baseline = None
    if acquisition.baseline and occurrence is not None:
        reference = baseline_exam(conn, occurrence.enrolment_id, acquisition.baseline)
        if reference is not None and reference != exam_id:
            baseline = images_for(conn, [reference]).get(reference)
    conformance = check_study(acquisition, study, baseline) if study is not None else None
    return ExamImages(study, conformance, baseline)
