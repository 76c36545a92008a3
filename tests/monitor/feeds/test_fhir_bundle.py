"""Reading search bundles entry by entry: every corpus quirk has a named expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.feeds.fhir.bundle import Issue, MalformedJson, Page, Problem, parse_json, read_page, relative_key
from tests.monitor.feeds.fhir_fixtures import appointment, patient


def _read(corpus: Path, name: str, resource_type: str) -> Page:
    return read_page(parse_json((corpus / "fhir" / name).read_bytes()), resource_type)


@pytest.mark.corpus
def test_entry_nested_inside_an_entry_is_reported_with_its_id_and_skipped(corpus_dir: Path) -> None:
    page = _read(
        corpus_dir, "cerner-millennium__Bundle-Appointment-searchset-nested-entry-docbug.json", "Appointment"
    )
    assert page.matches == []
    assert page.problems == [Problem("Appointment", "4822366", "bundle entry nested inside an entry")]


@pytest.mark.corpus
def test_entry_without_its_resource_wrapper_is_reported_with_its_id_and_skipped(corpus_dir: Path) -> None:
    name = "nhs-bars__Bundle-ServiceRequest-searchset-MALFORMED-entry-without-resource-wrapper.json"
    page = _read(corpus_dir, name, "ServiceRequest")
    assert page.matches == []
    assert [str(p) for p in page.problems] == [
        "ServiceRequest/71d2b38e-b81c-4894-a522-6a65265b1d58: bundle entry without its resource wrapper"
    ]


@pytest.mark.corpus
def test_operation_outcome_entry_is_an_issue_beside_the_match(corpus_dir: Path) -> None:
    name = "ronin-interop-ehr__epic-R4-Bundle-Patient-searchset-with-OperationOutcome.json"
    page = _read(corpus_dir, name, "Patient")
    assert [p["id"] for p in page.matches] == ["eJzlzKe3KPzAV5TtkxmNivQ3"]
    assert page.issues == [Issue("information", "invalid")]
    assert page.problems == []


@pytest.mark.corpus
def test_stu3_endpoint_links_are_flagged_and_the_entries_still_read(corpus_dir: Path) -> None:
    page = _read(
        corpus_dir, "ronin-interop-ehr__epic-STU3-Bundle-Appointment-searchset-4-booked.json", "Appointment"
    )
    assert page.version_hint == "STU3"
    assert len(page.matches) == 4


@pytest.mark.corpus
def test_invalid_json_is_reported_by_position_without_its_content(corpus_dir: Path) -> None:
    raw = (
        corpus_dir / "fhir" / "ronin-interop-ehr__cerner-R4-Patient-INVALID-JSON-bad-escape.json"
    ).read_bytes()
    with pytest.raises(MalformedJson) as caught:
        parse_json(raw)
    assert str(caught.value) == "invalid JSON (line 1264, column 28)"
    assert caught.value.raw == raw
    assert "NANCY" not in str(caught.value).upper()


@pytest.mark.corpus
def test_included_resources_are_indexed_by_type_and_id_and_by_full_url(corpus_dir: Path) -> None:
    page = _read(corpus_dir, "msft-fhir-converter__SIU-S12-01-expected-bundle.json", "Appointment")
    included = page.included
    assert (
        included["Patient/9e909e52-61a1-be50-1878-a12ef8c36346"]
        is included["urn:uuid:9e909e52-61a1-be50-1878-a12ef8c36346"]
    )


def test_next_link_is_read_and_include_entries_are_not_matches() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "next", "url": "http://h/fhir/Appointment?_offset=2"}],
        "entry": [
            {"resource": appointment(), "search": {"mode": "match"}},
            {"resource": patient(), "search": {"mode": "include"}},
            7,
            {"resource": {"id": "x"}},
        ],
    }
    page = read_page(bundle, "Appointment")
    assert page.next_url == "http://h/fhir/Appointment?_offset=2"
    assert [r["resourceType"] for r in page.matches] == ["Appointment"]
    assert "Patient/eX1.pt-77a" in page.included
    assert [p.reason for p in page.problems] == [
        "bundle entry is not an object",
        "resource without a resourceType",
    ]


def test_a_bare_operation_outcome_answer_is_a_problem_with_its_issues() -> None:
    page = read_page(
        {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "too-costly"}]},
        "Appointment",
    )
    assert page.issues == [Issue("error", "too-costly")]
    assert page.problems and not page.matches


@pytest.mark.parametrize(
    ("reference", "key"),
    [
        ("Patient/e1.a-2", "Patient/e1.a-2"),
        ("https://ehr.example.org/api/FHIR/STU3/Patient/e1.a-2", "Patient/e1.a-2"),
        ("https://ehr.example.org/fhir/Appointment/7/_history/3", "Appointment/7"),
        ("urn:uuid:0b7e4d4e-6c3c-4d8a-9d5a-1a2b3c4d5e6f", None),
        ("#28", None),
        ("d5ffd0cd-ec7e-48a1-84f1-91f4c0eb8fc5", None),  # corpus NHS: a bare UUID
    ],
)
def test_relative_key_of_a_reference(reference: str, key: str | None) -> None:
    assert relative_key(reference) == key
