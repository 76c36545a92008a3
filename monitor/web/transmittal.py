"""The data transmittal form kept with a core-lab submission (``/exams/<id>/core-lab/form``).

Pre-filled from what the store holds, never from the patient's identity: the trial's labels,
the subject id and visit, the exam's modality and orderable text, and per series what the
PACS poll read (number, modality, images, slice thickness, kVp, contrast; the scanner; the
scan date unless the trial removes dates). Series descriptions are left out: they are free
text a technologist may have typed a name into. The office fills in the template's fields
in the dashboard; the completed form (pre-filled values, entries, who, when) is kept with the
submission and shown read-only, printable, from then on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from monitor.store.images import images_for
from monitor.store.submissions import Submission
from rules import Trial
from rules.acquisition import StudySeen

__all__ = ["FIELD_LIMIT", "completed", "prefilled"]

FIELD_LIMIT = 30  # entered fields a form may keep


def prefilled(conn: Connection, trial: Trial, submission: Submission, exam: Any) -> dict[str, Any]:
    """The form's pre-filled values for ``submission`` (``exam``: its exam row)."""
    core_lab = trial.core_lab
    assert core_lab is not None
    study = images_for(conn, [submission.exam_id]).get(submission.exam_id)
    series = [_series(s) for s in study.series] if study is not None else []
    labels = core_lab.labels
    return {
        "labels": {
            "sponsor": labels.sponsor,
            "protocol_id": labels.protocol_id,
            "protocol_name": labels.protocol_name,
            "site_id": labels.site_id,
            "site_name": labels.site_name,
        },
        "subject": submission.subject,
        "timepoint": submission.timepoint,
        "timepoint_label": trial.timepoint_label(submission.timepoint),
        "modality": exam.modality or "",
        "procedure": exam.procedure_text or exam.procedure_code or "",
        "scan_date": _scan_date(study) if core_lab.dates == "keep" else "",
        "scanner": _scanner(study),
        "images": sum(s["instances"] for s in series),
        "series": series,
        "destination": core_lab.destination.words(),
    }


def completed(prefill: dict[str, Any], entered: dict[str, str], by: str, now: datetime) -> dict[str, Any]:
    """What is kept with the submission once the office completes the form."""
    return {"prefilled": prefill, "entered": entered, "completed_by": by, "completed_at": now.isoformat()}


def _series(series: Any) -> dict[str, Any]:
    return {
        "number": series.number if series.number is not None else "",
        "modality": series.modality,
        "instances": series.instances,
        "slice_thickness": _one(series, "SliceThickness"),
        "kvp": _one(series, "KVP"),
        "contrast": _one(series, "ContrastBolusAgent"),
    }


def _one(series: Any, attribute: str) -> str:
    return ", ".join(sorted({"\\".join(value) for value in series.values.get(attribute, ()) if any(value)}))


def _scanner(study: StudySeen | None) -> str:
    if study is None:
        return ""
    found = {
        " ".join(part for part in (_one(s, "Manufacturer"), _one(s, "ManufacturerModelName")) if part)
        for s in study.series
    }
    return "; ".join(sorted(name for name in found if name))


def _scan_date(study: StudySeen | None) -> str:
    if study is None:
        return ""
    dates = sorted({_one(s, "SeriesDate") for s in study.series} - {""})
    if dates:
        return ", ".join(f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 else d for d in dates)
    return study.study_date.isoformat() if study.study_date else ""
