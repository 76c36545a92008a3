"""FHIR Appointment to ScheduleEvent: one row per rule or quirk, each with a named expectation."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.config import FhirSettings
from monitor.events import EventKind, PatientIdentifier, Rejection, ScheduleEvent
from monitor.feeds.fhir.bundle import index_resources, read_page
from monitor.feeds.fhir.mapping import appointment_to_event
from tests.monitor.feeds.fhir_fixtures import (
    BIRTH_DATE,
    FAMILY_NAME,
    MRN,
    MRN_SYSTEM,
    PATIENT_ID,
    PATIENT_NAME,
    SSN,
    appointment,
    device,
    location,
    patient,
    service_request,
)

SETTINGS = FhirSettings(feed="epic-fhir", mrn_system=MRN_SYSTEM)


def _included(*resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return index_resources((r, None) for r in resources)


EVERYTHING = _included(patient(), service_request(), location(), device())


def _event(
    resource: dict[str, Any], included: dict[str, dict[str, Any]] | None = None, **settings: Any
) -> ScheduleEvent:
    mapped = appointment_to_event(
        resource, EVERYTHING if included is None else included, SETTINGS.model_copy(update=settings)
    )
    assert isinstance(mapped, ScheduleEvent), mapped
    return mapped


def test_booked_appointment_maps_every_field_the_office_uses() -> None:
    event = _event(appointment())
    assert (event.source, event.external_id, event.kind, event.trigger) == (
        "epic-fhir",
        "eAp.1-2026",
        EventKind.BOOKED,
        "Appointment",
    )
    assert event.status_code == "booked"
    assert event.mrn == MRN
    # 09:30 at -06:00 is 15:30 UTC; 09:30 to 10:15 is 45 minutes.
    assert event.start == datetime(2026, 12, 1, 15, 30, tzinfo=UTC)
    assert event.duration_minutes == 45
    assert (event.procedure_code, event.procedure_text, event.procedure_system) == (
        "418891003",
        "CT of chest",
        "SCT",
    )
    assert event.extra["order_code"] == "IMG5521"
    assert (event.order_number, event.accession) == ("ORD-88121", "ACC-55120")
    assert event.location == "CT3 Main Radiology"
    assert event.resources == ("SCANNER-CT3",)
    assert event.comments == ("Arrive 30 minutes early for contrast", "Research scan: ONC-123 week 12")


def test_event_carries_no_name_birth_date_or_social_security_number() -> None:
    shown = repr(_event(appointment()))
    for secret in (PATIENT_NAME, FAMILY_NAME, BIRTH_DATE, SSN, "Dr Radiologist"):
        assert secret not in shown


def test_identifiers_keep_the_mrn_and_the_hospital_ids_but_not_government_numbers() -> None:
    ids = _event(appointment()).patient_ids
    assert PatientIdentifier(MRN, MRN_SYSTEM, "MRN") in ids
    assert all(i.value != SSN for i in ids)


STATUSES = [
    ("proposed", EventKind.ORDERED),
    ("pending", EventKind.ORDERED),
    ("waitlist", EventKind.ORDERED),
    ("booked", EventKind.BOOKED),
    ("arrived", EventKind.ARRIVED),
    ("checked-in", EventKind.ARRIVED),
    ("fulfilled", EventKind.COMPLETED),
    ("cancelled", EventKind.CANCELLED),
    ("noshow", EventKind.NO_SHOW),
    ("entered-in-error", EventKind.DELETED),
]


@pytest.mark.parametrize(("status", "kind"), STATUSES)
def test_status_maps_to_event_kind(status: str, kind: EventKind) -> None:
    assert _event(appointment(status=status)).kind is kind


REJECTIONS = [
    ("unknown status is a table value not found", {"status": "tentative"}, "103"),
    ("missing status", {"status": None}, "101"),
    ("missing id", {"id": None}, "101"),
    ("start without an offset is not an instant", {"start": "2026-12-01T09:30:00"}, "102"),
    ("a date is not an instant", {"end": "2026-12-01"}, "102"),
    ("another resource type", {"resourceType": "Encounter"}, "200"),
    ("participant list that is not a list of objects", {"participant": "Patient/1"}, "0"),
]


@pytest.mark.parametrize(("case", "change", "code"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_unusable_appointment_is_rejected_with_a_table_0357_code(
    case: str, change: dict[str, Any], code: str
) -> None:
    resource = {k: v for k, v in {**appointment(), **change}.items() if v is not None}
    mapped = appointment_to_event(resource, EVERYTHING, SETTINGS)
    assert isinstance(mapped, Rejection)
    assert mapped.error_code == code
    assert MRN not in mapped.reason and "2026-12-01" not in mapped.reason


def test_appointment_without_patient_is_a_skipped_hold() -> None:
    resource = appointment()
    resource["participant"] = resource["participant"][1:]
    mapped = appointment_to_event(resource, EVERYTHING, SETTINGS)
    assert isinstance(mapped, Rejection) and mapped.skipped


def test_duration_comes_from_end_minus_start_before_minutes_duration() -> None:
    # msft converter quirk: minutesDuration 1 beside a 50 minute start/end.
    assert _event(appointment(minutesDuration=1)).duration_minutes == 45
    no_end = appointment(minutesDuration=20)
    del no_end["end"]
    assert _event(no_end).duration_minutes == 20


def test_mrn_comes_from_the_participant_identifier_when_the_patient_is_not_resolvable() -> None:
    resource = appointment()
    resource["participant"][0]["actor"] = {
        "identifier": {"system": MRN_SYSTEM, "value": MRN},
        "type": "Patient",
    }
    assert _event(resource, {}).mrn == MRN


def test_mrn_falls_back_to_the_mr_typed_identifier_when_no_system_is_configured() -> None:
    p = patient()
    p["identifier"] = [
        {"system": "urn:site:epi", "value": "EPI-1"},
        {"type": {"coding": [{"code": "MR"}]}, "value": "MR-1"},
    ]
    assert _event(appointment(), _included(p), mrn_system="").mrn == "MR-1"
    assert _event(appointment(), mrn_system="").mrn == MRN  # Epic types its MRN by text only


def test_mrn_is_none_when_the_configured_system_is_absent() -> None:
    assert _event(appointment(), mrn_system="urn:other").mrn is None


def test_absolute_patient_reference_resolves_by_type_and_id() -> None:
    resource = appointment(patient_ref=f"https://ehr.example.org/api/FHIR/STU3/Patient/{PATIENT_ID}")
    assert _event(resource).mrn == MRN


def test_urn_uuid_reference_resolves_through_the_entry_full_url() -> None:
    resource = appointment(patient_ref="urn:uuid:0b7e4d4e-6c3c-4d8a-9d5a-1a2b3c4d5e6f")
    included = index_resources([(patient(), "urn:uuid:0b7e4d4e-6c3c-4d8a-9d5a-1a2b3c4d5e6f")])
    assert _event(resource, included).mrn == MRN
    assert _event(resource, {}).mrn is None  # unresolvable outside its bundle: no MRN, still an event


def test_procedure_falls_back_to_the_order_then_the_appointment_type() -> None:
    resource = appointment()
    del resource["serviceType"]
    event = _event(resource)
    assert (event.procedure_code, event.procedure_text) == ("IMG5521", "CT CHEST W CONTRAST")
    assert "order_code" not in event.extra
    resource["appointmentType"] = {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0276", "code": "ROUTINE"}]
    }
    assert _event(resource, _included(patient())).procedure_code == "ROUTINE"


def test_user_selected_coding_wins_over_the_first() -> None:
    resource = appointment(
        serviceType=[
            {
                "coding": [
                    {"system": "http://snomed.info/sct", "code": "1"},
                    {"system": "urn:site", "code": "CT77", "userSelected": True},
                ]
            }
        ]
    )
    assert _event(resource).procedure_code == "CT77"


def test_stu3_incoming_referral_is_read_like_based_on() -> None:
    resource = appointment()
    del resource["serviceType"], resource["basedOn"]
    resource["incomingReferral"] = [{"reference": "ReferralRequest/rr1"}]
    referral = {**service_request(), "resourceType": "ReferralRequest", "id": "rr1"}
    assert _event(resource, _included(patient(), referral)).procedure_code == "IMG5521"


def test_cancellation_reason_is_kept_for_cancelled_and_no_show() -> None:
    reason = {"coding": [{"code": "pat", "display": "Patient"}], "text": "Patient request"}
    assert (
        _event(appointment(status="noshow", cancelationReason=reason)).extra["cancel_reason"]
        == "Patient request"
    )
    assert "cancel_reason" not in _event(appointment(status="booked", cancelationReason=reason)).extra


def test_filler_and_placer_identifiers_are_kept_for_linking_with_hl7() -> None:
    identifiers = [
        {"type": {"coding": [{"code": "PLAC"}]}, "value": "P-1"},
        {"type": {"coding": [{"code": "FILL"}]}, "value": "F-2"},
    ]
    assert _event(appointment(identifier=identifiers)).extra == {
        "order_code": "IMG5521",
        "placer_id": "P-1",
        "filler_id": "F-2",
    }


def test_mapping_never_raises_on_garbage() -> None:
    for garbage in (
        {},
        {
            "resourceType": "Appointment",
            "id": "x",
            "status": "booked",
            "participant": [None, 3, {"actor": 7}],
        },
    ):
        assert isinstance(appointment_to_event(garbage, {}, SETTINGS), (Rejection, ScheduleEvent))


# --- the corpus: what hospitals and vendors actually send ------------------------------------------


def _load(corpus: Path, name: str) -> Any:
    return json.loads((corpus / "fhir" / name).read_text(encoding="utf-8"))


CORPUS = [
    # (file, expectation, check)
    (
        "cerner-millennium__Appointment-4822366-cancelled.json",
        "cancelled; Cerner room with display only is a resource",
        {
            "kind": EventKind.CANCELLED,
            "location": "Endoscopy",
            "resources": ("Endoscopy Rooms",),
            "duration_minutes": 60,
        },
    ),
    (
        "cerner-millennium__Appointment-4817572-noshow-videovisit.json",
        "no-show despite a cancelationReason; contained rooms",
        {
            "kind": EventKind.NO_SHOW,
            "resources": ("Patient Virtual Meeting Room", "Provider Virtual Meeting Room"),
        },
    ),
    (
        "ronin-interop-ehr__cerner-R4-Appointment-4817517-booked-extracted.json",
        "patientInstruction becomes a comment",
        {
            "kind": EventKind.BOOKED,
            "start": datetime(2020, 7, 8, 13, 0, tzinfo=UTC),
            "location": "MX Clinic 1",
        },
    ),
    (
        "nhs-bars__Appointment-booked-UKCore-urn-uuid-refs.json",
        "urn:uuid patient outside its bundle: no MRN",
        {"kind": EventKind.BOOKED, "mrn": None, "duration_minutes": 10},
    ),
]


@pytest.mark.corpus
@pytest.mark.parametrize(("name", "expectation", "expected"), CORPUS, ids=[c[1] for c in CORPUS])
def test_corpus_appointment(corpus_dir: Path, name: str, expectation: str, expected: dict[str, Any]) -> None:
    event = _event(_load(corpus_dir, name), {})
    for key, value in expected.items():
        assert getattr(event, key) == value, key
    assert "SMART" not in repr(event) and "Nancy" not in repr(event)  # participant displays are names


@pytest.mark.corpus
def test_corpus_appointments_without_an_id_are_rejected(corpus_dir: Path) -> None:
    for name in (
        "cerner-millennium__Appointment-create-booked-slot.json",
        "cerner-millennium__Appointment-create-proposed.json",
    ):
        mapped = appointment_to_event(_load(corpus_dir, name), {}, SETTINGS)
        assert isinstance(mapped, Rejection) and mapped.error_code == "101"


@pytest.mark.corpus
def test_corpus_epic_stu3_bundle_maps_opaque_ids_and_absolute_references(corpus_dir: Path) -> None:
    page = read_page(
        _load(corpus_dir, "ronin-interop-ehr__epic-STU3-Bundle-Appointment-searchset-4-booked.json"),
        "Appointment",
    )
    # The Patient is not in the bundle; the poller would read it by its absolute reference's Type/id.
    included = {**page.included, **_included({**patient(), "id": "etDlAJmia6.s1SYmsooxV6Q3"})}
    events = [_event(r, included) for r in page.matches]
    assert [e.external_id for e in events][2] == "e8KD7le7Hh9rssjDvvLkPAguYxx.OW.IquDvV4yhbD.c3"
    assert {e.kind for e in events} == {EventKind.BOOKED}
    assert {e.mrn for e in events} == {MRN}
    assert {e.location for e in events} == {"EMC Family Medicine"}


@pytest.mark.corpus
@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("msft-fhir-converter__SIU-S12-01-expected-bundle.json", EventKind.BOOKED),
        ("msft-fhir-converter__SIU-S15-01-expected-bundle.json", EventKind.CANCELLED),
        ("msft-fhir-converter__SIU-S26-01-expected-bundle.json", EventKind.NO_SHOW),
    ],
)
def test_corpus_converter_bundles_resolve_patient_order_and_device(
    corpus_dir: Path, name: str, kind: EventKind
) -> None:
    page = read_page(_load(corpus_dir, name), "Appointment")
    event = _event(
        page.matches[0], page.included, mrn_system="http://example.com/v2-to-fhir-converter/Identifier/HCD"
    )
    assert event.kind is kind
    assert event.mrn == "PATID1234"
    assert (event.procedure_code, event.procedure_system) == ("76164006", "SCT")
    assert event.resources == ("5001",)
    assert event.duration_minutes == 50  # not the converter's minutesDuration of 1
