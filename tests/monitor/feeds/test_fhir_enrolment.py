"""Enrolment proposals from ResearchSubject/ResearchStudy: proposed to the office, never enrolled."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from monitor.config import FhirSettings
from monitor.events import Rejection
from monitor.feeds.fhir.bundle import index_resources, read_page
from monitor.feeds.fhir.client import FhirClient
from monitor.feeds.fhir.enrolment import EnrolmentProposal, fetch_enrolment_proposals, subject_to_proposal
from tests.monitor.feeds.fhir_fixtures import (
    BIRTH_DATE,
    FAMILY_NAME,
    MRN,
    MRN_SYSTEM,
    PATIENT_ID,
    PATIENT_NAME,
    patient,
)
from tests.monitor.feeds.fhir_server import FhirTestServer

NCT = "http://clinicaltrials.gov|NCT09990001"


def _study(sid: str = "rs.1", value: str = "NCT09990001") -> dict[str, Any]:
    return {
        "resourceType": "ResearchStudy",
        "id": sid,
        "status": "active",
        "identifier": [{"system": "http://clinicaltrials.gov", "value": value}],
    }


def _subject(
    rid: str = "rsub.1", study: str = "ResearchStudy/rs.1", who: str = f"Patient/{PATIENT_ID}"
) -> dict[str, Any]:
    return {
        "resourceType": "ResearchSubject",
        "id": rid,
        "identifier": [{"system": "urn:site:subjects", "value": "ONC123-014"}],
        "status": "on-study",
        "period": {"start": "2026-10-02"},
        "study": {"reference": study},
        "individual": {"reference": who, "display": f"{FAMILY_NAME}, {PATIENT_NAME}"},
        "assignedArm": "Arm A",
    }


SETTINGS = FhirSettings(mrn_system=MRN_SYSTEM, study_trial_map={NCT: "ONC-123"})


def test_a_subject_of_a_tracked_study_is_proposed_with_mrn_arm_and_start() -> None:
    included = index_resources([(_study(), None), (patient(), None)])
    proposal = subject_to_proposal(_subject(), included, SETTINGS)
    assert proposal == EnrolmentProposal(
        trial="ONC-123",
        study=NCT,
        source_id="rsub.1",
        mrn=MRN,
        subject_id="ONC123-014",
        status="on-study",
        arm="Arm A",
        started=date(2026, 10, 2),
    )
    for secret in (PATIENT_NAME, FAMILY_NAME, BIRTH_DATE):
        assert secret not in repr(proposal)


def test_a_subject_of_an_untracked_study_is_skipped() -> None:
    included = index_resources([(_study(value="NCT00000000"), None), (patient(), None)])
    result = subject_to_proposal(_subject(), included, SETTINGS)
    assert isinstance(result, Rejection) and result.skipped


def test_a_study_matches_by_bare_identifier_value_too() -> None:
    settings = SETTINGS.model_copy(update={"study_trial_map": {"NCT09990001": "ONC-123"}})
    included = index_resources([(_study(), None)])
    result = subject_to_proposal(_subject(), included, settings)
    assert isinstance(result, EnrolmentProposal) and result.mrn is None  # Patient not at hand


@pytest.mark.corpus
def test_corpus_mii_candidate_subject_resolves_its_cohort_and_patient(corpus_dir: Path) -> None:
    name = "mii-kds-studie__Bundle-mii-studie-test-data-bundle-studie.json"
    bundle = json.loads((corpus_dir / "fhir" / name).read_text())
    page = read_page(bundle, "ResearchSubject")  # request.url holds profile names: indexed by Type/id anyway
    settings = FhirSettings(
        mrn_system="http://fhir.de/sid/gkv/kvid-10",
        study_trial_map={"https://example.com/fhir/sid/lha|7Q6PJD8NV3-2": "LONG-COVID-1"},
    )
    [subject] = page.matches
    proposal = subject_to_proposal(subject, page.included, settings)
    assert isinstance(proposal, EnrolmentProposal)
    assert (proposal.trial, proposal.status, proposal.subject_id) == (
        "LONG-COVID-1",
        "candidate",
        "321123456",
    )
    assert (proposal.mrn, proposal.started) == ("D92345678", date(2023, 1, 1))


@pytest.fixture
def server() -> Iterator[FhirTestServer]:
    with FhirTestServer() as running:
        running.add(patient(), patient("pt.2", "E000002"), _study(), _study("rs.9", "NCT00000009"))
        running.add(
            _subject(), _subject("rsub.2", who="Patient/pt.2"), _subject("rsub.9", study="ResearchStudy/rs.9")
        )
        yield running


def test_fetch_proposes_the_subjects_of_each_tracked_study(server: FhirTestServer) -> None:
    client = FhirClient(SETTINGS.model_copy(update={"base_url": server.base_url}))
    found = fetch_enrolment_proposals(client, client.settings)
    assert found.errors == [] and found.problems == []
    assert sorted((p.source_id, p.mrn) for p in found.proposals) == [("rsub.1", MRN), ("rsub.2", "E000002")]
    [search] = server.requests_for("ResearchSubject")
    assert search.query["study"] == ["ResearchStudy/rs.1"]
    assert search.query["_include"] == ["ResearchSubject:individual"]


def test_fetch_reports_a_server_without_search_by_study(server: FhirTestServer) -> None:
    server.raw_searches["ResearchSubject"] = b"<html>not supported</html>"
    client = FhirClient(SETTINGS.model_copy(update={"base_url": server.base_url}))
    found = fetch_enrolment_proposals(client, client.settings)
    assert found.proposals == []
    assert found.errors == ["ResearchSubject search for study 1 of 1: invalid JSON (line 1, column 1)"]
