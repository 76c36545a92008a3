"""The check a de-identified copy must pass before it leaves: every leak is named by attribute
and count, never by value."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from monitor.pacs.deidentified import CopyLabels, copy_problems, date_replacements, identity_of
from rules.core_lab import SubjectLabels

SOURCE = {
    "PatientName": "DOE^JANE^Q",
    "PatientID": "E10001",
    "OtherPatientIDs": "99887766",
    "PatientBirthDate": "19570314",
    "AccessionNumber": "ACC20261201",
    "InstitutionName": "Example Hospital",
    "StudyDescription": "CT CHEST",
}
LABELS = CopyLabels(
    "2101-001", "week72", "Week 72 restaging", SubjectLabels("Acme", "ONC-2101", "ONC RECIST", "101")
)
IDENTITY = identity_of([SOURCE], more_ids=["E10001"])
PHI = ("DOE", "JANE", "E10001", "99887766", "19570314", "ACC20261201", "Example Hospital")


def _clean() -> dict[str, Any]:
    return {
        "PatientName": "2101-001",
        "PatientID": "2101-001",
        "PatientIdentityRemoved": "YES",
        "PatientBirthDate": "",
        "AccessionNumber": "",
        "InstitutionName": None,
        "StudyDate": "20261201",
        "StudyDescription": "CT CHEST",
        "StudyInstanceUID": "1.2.276.0.7230010.3.1.2.19570314.99887766",  # digits by chance
        "ClinicalTrialSponsorName": "Acme",
        "ClinicalTrialProtocolID": "ONC-2101",
        "ClinicalTrialProtocolName": "ONC RECIST",
        "ClinicalTrialSiteID": "101",
        "ClinicalTrialSubjectID": "2101-001",
        "ClinicalTrialTimePointID": "week72",
        "ClinicalTrialTimePointDescription": "Week 72 restaging",
        "ReferencedImageSequence": [{"ReferencedSOPInstanceUID": "1.2.3.4"}],
    }


def test_a_clean_copy_passes() -> None:
    assert copy_problems(IDENTITY, [_clean(), _clean()], LABELS, dates="keep") == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"StudyDescription": "CT CHEST for Jane Doe"}, "StudyDescription holds the patient's name"),
        ({"ImageComments": "doe"}, "ImageComments holds the patient's name"),
        ({"ReferencedImageSequence": [{"ImageComments": "mrn e10001"}]},
         "ReferencedImageSequence.ImageComments holds a patient id or the accession number"),
        ({"0009,1001": "99887766"}, "0009,1001 holds a patient id or the accession number"),
        ({"AccessionNumber": "ACC20261201"}, "AccessionNumber is not removed"),
        ({"PatientBirthDate": "19570314"}, "PatientBirthDate is not removed"),
        ({"InstitutionName": "Example Hospital"}, "InstitutionName is not removed"),
        ({"StationName": "EXAMPLE HOSPITAL CT3"}, "StationName holds the institution's name"),
        ({"PatientName": "DOE^JANE"}, "PatientName is not the subject id"),
        ({"PatientIdentityRemoved": "NO"}, "PatientIdentityRemoved is not YES"),
        ({"ClinicalTrialSubjectID": "2101-002"}, "ClinicalTrialSubjectID is not the trial's"),
        ({"ClinicalTrialTimePointID": None}, "ClinicalTrialTimePointID is not the trial's"),
    ],
)  # fmt: skip
def test_each_leak_is_named_by_attribute_and_count_never_by_value(
    change: dict[str, Any], problem: str
) -> None:
    leaking = {**_clean(), **change}

    problems = copy_problems(IDENTITY, [_clean(), leaking, _clean()], LABELS, dates="keep")

    assert f"{problem} (1 of 3 images)" in problems
    for value in PHI:
        assert value.upper() not in " ".join(problems).upper()


def test_a_word_inside_another_word_is_not_the_name() -> None:
    copy = {**_clean(), "StudyDescription": "CT CHEST DOENITZ PROTOCOL", "SeriesDescription": "JANEWAY"}
    assert copy_problems(IDENTITY, [copy], LABELS, dates="keep") == []


def test_dates_removed_when_the_trial_says_so() -> None:
    problems = copy_problems(IDENTITY, [_clean()], LABELS, dates="remove")
    assert problems == ["StudyDate is not removed (1 of 1 images)"]


def test_an_attribute_the_trial_keeps_may_stay_unless_it_holds_the_patient() -> None:
    copy = {**_clean(), "InstitutionName": "Some Imaging Center"}
    assert copy_problems(IDENTITY, [copy], LABELS, dates="keep", kept=["InstitutionName"]) == []
    copy["InstitutionName"] = "Example Hospital"
    assert copy_problems(IDENTITY, [copy], LABELS, dates="keep", kept=["InstitutionName"]) == [
        "InstitutionName holds the institution's name (1 of 1 images)"
    ]


def test_an_empty_copy_is_refused() -> None:
    assert copy_problems(IDENTITY, [], LABELS, dates="keep") == ["the copy holds no images"]


def test_what_the_trial_writes_itself_is_not_a_leak() -> None:
    labels = dataclasses.replace(
        LABELS, trial=dataclasses.replace(LABELS.trial, site_name="Example Hospital Research Imaging")
    )
    copy = {**_clean(), "ClinicalTrialSiteName": "Example Hospital Research Imaging"}
    assert copy_problems(IDENTITY, [copy], labels, dates="keep") == []
    copy["SeriesDescription"] = "Example Hospital Research Imaging"  # the same words elsewhere are
    assert copy_problems(IDENTITY, [copy], labels, dates="keep") == [
        "SeriesDescription holds the institution's name (1 of 1 images)"
    ]


def test_shifted_dates_must_be_the_subjects_offset_and_no_source_date_may_stay() -> None:
    source = [{**SOURCE, "StudyDate": "20261201", "SeriesDate": "20261201", "ContentDate": "20261201"}]
    moved, originals, varying = date_replacements(source, -40)
    assert (moved, originals, varying) == (
        {"StudyDate": "20261022", "SeriesDate": "20261022", "ContentDate": "20261022"}, {"20261201"}, ""
    )  # fmt: skip
    copy = {**_clean(), "StudyDate": "20261022", "SeriesDate": "20261022", "ContentDate": "20261022"}
    check = {"dates": "shift", "shifted_to": moved, "source_dates": originals}
    assert copy_problems(IDENTITY, [copy], LABELS, **check) == []  # type: ignore[arg-type]
    leaked = {**copy, "ImageComments": "scanned 20261201", "ContentDate": "20261201"}
    assert copy_problems(IDENTITY, [leaked], LABELS, **check) == [  # type: ignore[arg-type]
        "ContentDate holds a date not shifted (1 of 1 images)",
        "ContentDate is not shifted as the trial asks (1 of 1 images)",
        "ImageComments holds a date not shifted (1 of 1 images)",
    ]
    two_days = [*source, {**SOURCE, "SeriesDate": "20261202"}]
    assert date_replacements(two_days, -40)[2] == "SeriesDate"
