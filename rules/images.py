"""Judging an exam's images: the study the PACS holds for it against the acquisition rules.

For an occurrence served by an exam whose exam type has acquisition rules
(:mod:`rules.acquisition`), once the PACS is watched (``ImagesSeen`` given to the engine):

- no study matched to the exam ``due_after`` after its start, as a successful poll of the
  PACS saw it then or later (``seen_until``): ``images_missing``. Only for exams that started
  after the PACS was first watched (the history before it is not news); a PACS that is down
  raises none (nothing was seen), whatever the clock says;
- a study whose series break a rule not met by another series: ``parameter_deviation``,
  naming series, attribute, expected and actual; another scanner than the baseline's:
  ``scanner_mismatch``. Both vanish, so resolve, once corrected images arrive.

The baseline study is the one matched to the exam serving the first occurrence of the
rules' ``baseline`` timepoint. Alerts go to the coordinators and the technologists.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from rules.acquisition import Acquisition, Conformance, RuleCheck, StudySeen, check_study
from rules.core_lab import SubmissionSeen
from rules.model import ExamRecord, ExamStatus, FindingKind
from rules.windows import Slot

__all__ = ["ImageFinding", "ImageVerdict", "ImagesSeen", "acquisition_of", "judge_images"]

_SHOWN = 3  # deviations named in a finding's one line; the exam page shows them all
_NO_IMAGES = frozenset({ExamStatus.CANCELLED, ExamStatus.NO_SHOW, ExamStatus.DELETED})


@dataclass(frozen=True, slots=True)
class ImagesSeen:
    """What the PACS holds for the exams evaluated: the study matched to each (by exam id),
    from when it has been watched (``watched_from``) and until when the last successful poll
    saw it (``seen_until``). Images are expected ``due_after`` after an exam's start."""

    studies: Mapping[int, StudySeen] = field(default_factory=dict)
    watched_from: datetime | None = None
    seen_until: datetime | None = None
    due_after: timedelta = timedelta(hours=4)
    # Where each exam's copy for its trial's core lab stands (:mod:`rules.core_lab`), by exam id.
    submissions: Mapping[int, SubmissionSeen] = field(default_factory=dict)
    # The answer dates of each exam's open core-lab queries, earliest first.
    queries: Mapping[int, tuple[date, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ImageFinding:
    kind: FindingKind
    note: str  # what the images showed, for the finding's line
    about: str  # what its alerts are about: other wrong images are news again


@dataclass(slots=True)
class ImageVerdict:
    findings: list[ImageFinding] = field(default_factory=list)


def acquisition_of(slot: Slot, exam: ExamRecord) -> Acquisition | None:
    """The rules ``exam`` is held to at ``slot``: the timepoint's own for its exam type, else
    the exam type's (from the protocol version of the visit)."""
    exam_type = slot.version.exam_for(exam.procedure_code)
    if exam_type is None:
        return None
    return slot.plan.timepoint.acquisition.get(exam_type.id, exam_type.acquisition)


def judge_images(
    images: ImagesSeen,
    acquisition: Acquisition,
    exam: ExamRecord,
    baseline: ExamRecord | None,
    now: datetime,
) -> ImageVerdict:
    """What ``exam``'s images (or their absence) give rise to, at ``now``."""
    verdict = ImageVerdict()
    study = images.studies.get(exam.id)
    if study is None:
        if _images_due(images, exam, now):
            verdict.findings.append(ImageFinding(FindingKind.IMAGES_MISSING, "", "missing"))
        return verdict
    reference = images.studies.get(baseline.id) if baseline is not None and baseline.id != exam.id else None
    conformance = check_study(acquisition, study, reference)
    if conformance.deviations:
        note, about = _deviation_note(conformance), _about(study, conformance.deviations)
        verdict.findings.append(ImageFinding(FindingKind.PARAMETER_DEVIATION, note, about))
    mismatch = conformance.scanner_mismatch
    if mismatch is not None:
        baseline_scanner = mismatch.expected.removeprefix("baseline: ")
        note = f"acquired on {mismatch.actual}, not on the baseline's {baseline_scanner}"
        verdict.findings.append(ImageFinding(FindingKind.SCANNER_MISMATCH, note, _about(study, (mismatch,))))
    return verdict


def _images_due(images: ImagesSeen, exam: ExamRecord, now: datetime) -> bool:
    start, first, seen = exam.start, images.watched_from, images.seen_until
    if start is None or first is None or seen is None or start < first or exam.status in _NO_IMAGES:
        return False
    due = start + images.due_after
    return due <= seen and due <= now


def _deviation_note(conformance: Conformance) -> str:
    shown = [_row_text(row) for row in conformance.deviations[:_SHOWN]]
    more = len(conformance.deviations) - _SHOWN
    return "images break the protocol: " + "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def _row_text(row: RuleCheck) -> str:
    if row.attribute == "series":
        return f"{row.rule}: {row.actual.split(',')[0]} series (protocol: {row.expected})"
    return f"series {row.series}: {row.attribute} {row.actual} (protocol: {row.expected})"


def _about(study: StudySeen, rows: tuple[RuleCheck, ...]) -> str:
    """What an alert is about: the study and the rows that failed, as a short digest."""
    text = "|".join([study.uid, *(f"{r.rule}/{r.series}/{r.attribute}/{r.actual}" for r in rows)])
    return "images:" + hashlib.sha256(text.encode()).hexdigest()[:16]
