"""The same appointment through HL7 and through FHIR gives the same event where both say it.

Corpus pair: ``hl7/msft-fhir-converter__SIU-S12-01.hl7`` and the FHIR bundle Microsoft's
converter made of it. Where the two cannot agree by design, the test says how they relate:

* identity: the FHIR event is keyed by ``Appointment.id``; its FILL identifier is SCH-2;
* location: HL7 renders the whole PL (``055 / Room01 / GH Clinic``), FHIR the Location's name;
* resources and comments: HL7 gathers every AIG/AIP and NTE, FHIR only what the
  Appointment and its order carry (no Practitioner, no Device or Location notes);
* patient identifiers: PID-3 versus Patient.identifier (FHIR systems are URIs).
"""

from __future__ import annotations

import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from monitor.config import FhirSettings
from monitor.events import ScheduleEvent
from monitor.feeds.fhir.bundle import read_page
from monitor.feeds.fhir.mapping import appointment_to_event
from monitor.feeds.hl7.mapping import MappingSettings, to_events

pytestmark = pytest.mark.corpus

SAME_FIELDS = (
    "kind",
    "mrn",
    "start",
    "duration_minutes",
    "procedure_code",
    "procedure_text",
    "procedure_system",
    "accession",
    "modality",
)


@pytest.fixture
def both(corpus_dir: Path) -> tuple[ScheduleEvent, ScheduleEvent]:
    raw = (corpus_dir / "hl7" / "msft-fhir-converter__SIU-S12-01.hl7").read_bytes()
    hl7_events = to_events(raw, MappingSettings(source="epic", zone=ZoneInfo("America/New_York")))
    assert isinstance(hl7_events, list)
    [hl7_event] = hl7_events
    bundle = json.loads(
        (corpus_dir / "fhir" / "msft-fhir-converter__SIU-S12-01-expected-bundle.json").read_text()
    )
    page = read_page(bundle, "Appointment")
    [resource] = page.matches
    settings = FhirSettings(feed="epic", mrn_system="http://example.com/v2-to-fhir-converter/Identifier/HCD")
    fhir_event = appointment_to_event(resource, page.included, settings)
    assert isinstance(fhir_event, ScheduleEvent)
    return hl7_event, fhir_event


@pytest.mark.parametrize("name", SAME_FIELDS)
def test_hl7_and_fhir_give_the_same_value(both: tuple[ScheduleEvent, ScheduleEvent], name: str) -> None:
    hl7_event, fhir_event = both
    assert getattr(fhir_event, name) == getattr(hl7_event, name)


def test_the_fhir_filler_identifier_is_the_hl7_appointment_id(
    both: tuple[ScheduleEvent, ScheduleEvent],
) -> None:
    hl7_event, fhir_event = both
    assert fhir_event.extra["filler_id"] == hl7_event.external_id == "36996"


def test_the_fhir_location_name_begins_the_hl7_location(both: tuple[ScheduleEvent, ScheduleEvent]) -> None:
    hl7_event, fhir_event = both
    assert fhir_event.location == "055"
    assert hl7_event.location is not None and hl7_event.location.startswith("055 / ")


def test_fhir_resources_and_comments_are_among_the_hl7_ones(
    both: tuple[ScheduleEvent, ScheduleEvent],
) -> None:
    hl7_event, fhir_event = both
    assert fhir_event.resources and set(fhir_event.resources) <= set(hl7_event.resources)
    assert len(fhir_event.comments) == 3 and set(fhir_event.comments) <= set(hl7_event.comments)


def test_both_carry_the_mrn_among_the_patient_identifiers(both: tuple[ScheduleEvent, ScheduleEvent]) -> None:
    hl7_event, fhir_event = both
    assert hl7_event.mrn in {i.value for i in fhir_event.patient_ids} & {
        i.value for i in hl7_event.patient_ids
    }
