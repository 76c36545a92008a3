"""Small builders shared by the rules tests: a compact protocol, enrolments and exams on local dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from rules import Enrolment, EnrolmentStatus, ExamRecord, ExamStatus, Trial, load_protocol

NEW_YORK = ZoneInfo("America/New_York")
C1D1 = date(2026, 3, 2)  # a Monday; Week 6 is due 2026-04-13, window 2026-04-06..2026-04-20

PROTOCOL = """
id = "T-1"
title = "Test trial"
anchor_is_day = 1
arms = ["A", "B"]
match_within = "21d"

[anchors]
required = ["c1d1"]
events = ["progression", "end_of_treatment"]

[exams.ct]
label = "CT chest/abdomen/pelvis"
modality = "CT"
orderables = ["CT1", "CT2"]

[exams.mr]
label = "MRI abdomen"
modality = "MR"
orderables = ["MR1"]

[[timepoints]]
id = "screening"
exams = ["ct"]
anchor = "c1d1"
window = { from = "-28d", to = "-1d" }

[[timepoints]]
id = "restaging"
label = "Week {week}"
exams = ["ct", "mr"]
anchor = "c1d1"
every = "6w"
until = "24w"
window = "+-7d"

[routing]
coordinators = ["email:coord@example.org"]
technologists = { CT = "slack:#ct", MR = "slack:#mr" }
rooms = { CT3 = "slack:#ct3" }
lead_times = { coordinator = ["72h", "24h"], technologist = ["24h"] }
"""


def trial(text: str = PROTOCOL) -> Trial:
    return load_protocol(text, "test.toml")


def with_timepoints(extra: str, base: str = PROTOCOL) -> str:
    """The base protocol with more ``[[timepoints]]`` inserted before ``[routing]``."""
    head, tail = base.split("[routing]", 1)
    return f"{head}{extra}\n[routing]{tail}"


def enrolment(
    subject: str = "S-01",
    *,
    c1d1: date = C1D1,
    arm: str | None = "A",
    mrns: tuple[str, ...] = ("E10001",),
    status: EnrolmentStatus = EnrolmentStatus.ON_STUDY,
    off_study: date | None = None,
    trial_id: str = "T-1",
    enrolment_id: int = 1,
    monitored_from: date | None = None,
    **anchors: date,
) -> Enrolment:
    return Enrolment(
        trial=trial_id,
        subject=subject,
        mrns=mrns,
        anchors={"c1d1": c1d1, **anchors},
        arm=arm,
        status=status,
        off_study=off_study,
        id=enrolment_id,
        monitored_from=monitored_from,
    )


def local(day: date, hour: int = 10, minute: int = 0) -> datetime:
    """An aware UTC instant at ``hour:minute`` New York time on ``day``."""
    return datetime.combine(day, time(hour, minute), tzinfo=NEW_YORK).astimezone(UTC)


def exam(
    exam_id: int,
    day: date,
    *,
    code: str = "CT1",
    modality: str = "CT",
    status: ExamStatus = ExamStatus.SCHEDULED,
    mrn: str = "E10001",
    hour: int = 10,
    minute: int = 0,
    location: str = "CT1",
) -> ExamRecord:
    return ExamRecord(
        id=exam_id,
        mrn=mrn,
        procedure_code=code,
        procedure_text=f"{modality} research",
        modality=modality,
        start=local(day, hour, minute),
        status=status,
        location=location,
        accession=f"A{exam_id:06d}",
        external_id=f"{7000000000 + exam_id}",
    )


def timepoint(timepoint_id: str, **keys: object) -> str:
    """A ``[[timepoints]]`` table in TOML: ``timepoint("eot", anchor="end_of_treatment", offset="4w")``.

    ``exams`` defaults to ``["ct"]``; strings are quoted, lists and numbers written as TOML.
    """
    keys = {"exams": ["ct"], **keys}
    lines = [f'id = "{timepoint_id}"']
    for key, value in keys.items():
        if isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        elif isinstance(value, list):
            lines.append(f"{key} = [" + ", ".join(f'"{item}"' for item in value) + "]")
        else:
            lines.append(f"{key} = {value}")
    return "[[timepoints]]\n" + "\n".join(lines) + "\n"
