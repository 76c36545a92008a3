"""The example protocols and enrolments run through the engine as the demo uses them."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime
from pathlib import Path

from rules import (
    Enrolment,
    EnrolmentStatus,
    ExamRecord,
    ExamStatus,
    FindingKind,
    Trial,
    evaluate,
    load_protocol,
)
from tests.rules.builders import NEW_YORK, local

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ANCHORS = ("consent", "c1d1", "randomisation", "progression", "end_of_treatment")
NOW = datetime(2026, 4, 15, 14, 0, tzinfo=UTC)


def _enrolments() -> list[Enrolment]:
    with (EXAMPLES / "enrolments.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        Enrolment(
            trial=row["trial"],
            subject=row["subject"],
            mrns=tuple(row["mrn"].split("|")),
            anchors={name: date.fromisoformat(row[name]) for name in ANCHORS if row[name]},
            arm=row["arm"] or None,
            status=EnrolmentStatus(row["status"]),
            off_study=date.fromisoformat(row["off_study"]) if row["off_study"] else None,
            id=number,
        )
        for number, row in enumerate(rows, start=1)
    ]


def _trials() -> list[Trial]:
    return [
        load_protocol(p.read_text(encoding="utf-8"), p.name)
        for p in sorted((EXAMPLES / "trials").glob("*.toml"))
    ]


def test_every_example_subject_gets_a_schedule_and_no_output_carries_an_mrn() -> None:
    enrolments = _enrolments()
    scans = [
        ExamRecord(
            1, "E10001", "IMG1234", "CT CAP W", "CT", local(date(2025, 9, 1)), ExamStatus.COMPLETED, "CT3"
        ),
        ExamRecord(
            2, "E10001", "IMG3301", "MRI BRAIN", "MR", local(date(2026, 2, 1)), ExamStatus.COMPLETED, "MR2"
        ),
        ExamRecord(
            3,
            "E10006",
            "IMG7701",
            "FDG PET/CT",
            "PT",
            local(date(2025, 11, 10)),
            ExamStatus.COMPLETED,
            "PET2",
        ),
        ExamRecord(
            4, "E10006", "IMG7701", "FDG PET/CT", "PT", local(date(2026, 4, 30)), ExamStatus.SCHEDULED, "PET1"
        ),
    ]
    result = evaluate(_trials(), enrolments, scans, NOW, site_zone=NEW_YORK)
    assert result.unknown_trials == ()
    assert {o.subject for o in result.occurrences} == {e.subject for e in enrolments}
    mrns = {mrn for e in enrolments for mrn in e.mrns}
    texts = [f.detail + f.key for f in result.findings] + [n.dedupe_key for n in result.planned_notifications]
    assert not [text for text in texts if any(mrn in text for mrn in mrns)]
    # 2101-001 and 4405-004 are one patient: the brain MRI serves NEU-4405 and is not news to ONC-2101.
    assert [(f.trial, f.kind) for f in result.findings if f.exam_id == 2] == [
        ("NEU-4405", FindingKind.IN_WINDOW)
    ]
    # The PET trial asks for the baseline scanner again.
    scanners = {o.key: o.required_scanner for o in result.occurrences if o.subject == "3302-001"}
    assert scanners["LYM-3302:3302-001:interim#1"] == "PET2"
