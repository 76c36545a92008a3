"""Every real HL7 v2 file in ../shared/corpus/hl7, one row per quirk, each with a named expectation.

The feed zone for these rows is America/Chicago: a time without an offset is Chicago wall
time; a time with an offset (``+0215``, ``+0100``) is that instant whatever the zone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest

from monitor.events import EventKind, Rejection, ScheduleEvent
from monitor.feeds.hl7.mapping import MappingSettings, to_events
from monitor.feeds.hl7.message import segment_lines

pytestmark = pytest.mark.corpus

K = EventKind
SETTINGS = MappingSettings(source="corpus", zone=ZoneInfo("America/Chicago"))
NO_EXTRA: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class Event:
    """What the first (or only) event must look like; ``None`` fields are expected empty."""

    kind: EventKind
    external_id: str
    start: str | None  # ISO 8601 in UTC
    mrn: str | None
    procedure: str | None = None  # procedure_code
    location: str | None = None
    comments: int = 0
    duration: int | None = None
    extra: Mapping[str, str] = field(default_factory=lambda: NO_EXTRA)  # a subset of event.extra
    events: int = 1


@dataclass(frozen=True)
class Rejected:
    error_code: str
    skipped: bool = False


def _ev(kind: EventKind, external_id: str, start: str | None, mrn: str | None, **more: object) -> Event:
    return Event(kind, external_id, start, mrn, **more)  # type: ignore[arg-type]


MSFT_ROOM01 = "055 / Room01 / GH Clinic"
MSFT_LAB = "LabUnit101 / Lab Room 01 / GHH Hospital"
BARTS_OPD = "RNJ Renal OPD / RNJ ROYALLONDON / RNJ MainBld RLH"
MSFT_START = "2021-09-24T07:15:00+00:00"
MSFT_BIOPSY = {"procedure": "76164006", "location": MSFT_ROOM01, "duration": 50}

# fmt: off
ROWS: list[object] = [
    # --- SIU ------------------------------------------------------------------------------
    pytest.param("msft-fhir-converter__SIU-S12-01.hl7",
                 _ev(K.BOOKED, "36996", MSFT_START, "PATID1234", comments=5, **MSFT_BIOPSY),
                 id="msft-S12-3-part-MSH9-odd-0215-offset-AIS4-start"),
    pytest.param("msft-fhir-converter__SIU-S12-02.hl7",
                 _ev(K.BOOKED, "36996", "2021-08-18T09:15:00+00:00", "PATID1234", procedure="58410-2",
                     location=MSFT_LAB, comments=11, duration=70, extra={"services": "58410-2~42272-5"}),
                 id="msft-S12-three-RGS-one-event-TQ1-beats-stale-SCH11"),
    pytest.param("msft-fhir-converter__SIU-S12_1.hl7",
                 _ev(K.BOOKED, "36996", "2020-10-04T09:11:00+00:00", "PATID1234", procedure="111",
                     location="4E / 136 / B / CommunityHospital", comments=11, duration=70,
                     extra={"services": "111~220~215"}),
                 id="msft-S12_1-several-AIS-per-RGS-ampersand-AIL-empty-NTE"),
    pytest.param("msft-fhir-converter__SIU_12-msh-says-ADT_A60.hl7", Rejected("200"),
                 id="msft-MSH9-says-ADT_A60-with-a-SIU-body-is-an-unsupported-type-not-applied"),
    pytest.param("msft-fhir-converter__SIU-S13-01.hl7",
                 _ev(K.RESCHEDULED, "36996", MSFT_START, "PATID1234", comments=5, **MSFT_BIOPSY),
                 id="msft-S13-comment-in-NTE2"),
    pytest.param("msft-fhir-converter__SIU-S13-02.hl7",
                 _ev(K.RESCHEDULED, "36996", "2021-08-20T09:15:00+00:00", "PATID1234", procedure="58410-2",
                     location=MSFT_LAB, comments=11, duration=70),
                 id="msft-S13-multi-RGS"),
    pytest.param("msft-fhir-converter__SIU-S14-01.hl7",
                 _ev(K.MODIFIED, "36996", MSFT_START, "PATID1234", procedure="76164006",
                     location="055 / Room02 / GH Clinic", comments=5, duration=50),
                 id="msft-S14-location-changed-to-Room02"),
    pytest.param("msft-fhir-converter__SIU-S15-01.hl7",
                 _ev(K.CANCELLED, "36996", MSFT_START, "PATID1234", comments=5, **MSFT_BIOPSY),
                 id="msft-S15-cancelled"),
    pytest.param("msft-fhir-converter__SIU-S15-02.hl7",
                 _ev(K.CANCELLED, "36996", "2021-08-18T09:15:00+00:00", "PATID1234", procedure="58410-2",
                     location=MSFT_LAB, comments=11, duration=70),
                 id="msft-S15-multi-RGS-empty-AIS10"),
    pytest.param("msft-fhir-converter__SIU-S16-01.hl7",
                 _ev(K.CANCELLED, "36996", MSFT_START, "PATID1234", comments=5, **MSFT_BIOPSY),
                 id="msft-S16-discontinued-Dc-is-cancelled"),
    pytest.param("msft-fhir-converter__SIU-S17-01.hl7",
                 _ev(K.DELETED, "36996", MSFT_START, "PATID1234", comments=5, **MSFT_BIOPSY),
                 id="msft-S17-deleted"),
    pytest.param("msft-fhir-converter__SIU-S26-01.hl7",
                 _ev(K.NO_SHOW, "36996", MSFT_START, "PATID1234", comments=4, **MSFT_BIOPSY),
                 id="msft-S26-no-show"),
    pytest.param("msft-fhir-converter__SIU-S26-02.hl7",
                 _ev(K.NO_SHOW, "36996", "2021-08-18T09:15:00+00:00", "PATID1234", procedure="58410-2",
                     location=MSFT_LAB, comments=11, duration=70),
                 id="msft-S26-multi-RGS"),
    pytest.param("node-hl7-complete__corepoint-SIU_S14-MED2000.hl7",
                 _ev(K.ARRIVED, "00331839401", "2008-03-06T16:00:00+00:00", "489671", procedure="HLCK",
                     location="HHR / FPCS NGUYEN, MD", comments=1, duration=20),
                 id="corepoint-S14-SCH25-ARRIVED-trailing-space-in-SCH11-AIL-without-AIS"),
    pytest.param("hapi-hl7v2__ORSOS-SIU_S14-4-RGS-groups.hl7",
                 _ev(K.MODIFIED, "569576", "2010-04-06T21:10:00+00:00", "990119205", procedure="G014080",
                     location="OR 4", duration=379,
                     extra={"services": "G014080~G11455~G014045~G11045"}),
                 id="orsos-S14-4-RGS-leading-space-MSH10-AIS8-garbage-units-so-SCH9-379-MIN"),
    pytest.param("hapi-hl7v2-json__MESA_OP-SIU_S12-v23.hl7",
                 _ev(K.BOOKED, "2196178", "2011-06-17T13:45:00+00:00", "42",
                     procedure="reason for the appointment", location="OFFICE", duration=60),
                 id="mesa-S12-TQ-start-end-in-SCH11-no-AIS-procedure-from-SCH7"),
    pytest.param("hapi-hl7v2-json__athenahealth-ATHENANET-SIU_S15-status-NOSHOW.hl7",
                 _ev(K.NO_SHOW, "33910", "2015-05-19T18:00:00+00:00", "105613", procedure="Test Appointment",
                     location="2 / TEST DEPARTMENT", duration=15),
                 id="athena-S15-with-SCH25-NOSHOW-is-a-no-show"),
    pytest.param("everglade__REG-SIU_S12-PID-before-SCH-PV2-inside-PV1.hl7",
                 _ev(K.BOOKED, "787672", None, "353966", procedure="NEW", location="SEROT"),
                 id="everglade-PID-before-SCH-placeholder-SCH1-falls-to-PV1-19-nonstandard-SCH11-no-start"),
    pytest.param("renalware-core__BartsHealth-BLT_TIE-SIU_S12.hl7",
                 _ev(K.BOOKED, "149549015", "2024-11-06T18:00:00+00:00", "10769857",
                     procedure="Nephrology New",
                     location=BARTS_OPD, duration=30),
                 id="barts-S12-id-in-SCH1-explicit-nulls-TQ-30-minutes"),
    pytest.param("renalware-core__BartsHealth-BLT_TIE-SIU_S13-undo-cancel.hl7",
                 _ev(K.RESCHEDULED, "149549023", "2024-11-06T17:30:00+00:00", "10769861",
                     procedure="Nephrology New", location=BARTS_OPD, duration=30),
                 id="barts-S13-undo-cancel-is-a-reschedule"),
    pytest.param("renalware-core__BartsHealth-BLT_TIE-SIU_S15-cancelled.hl7",
                 _ev(K.CANCELLED, "149549027", "2024-11-13T16:00:00+00:00", "10769859",
                     procedure="Nephrology Haemodialysis F/Up",
                     location="RNJ Renal SBH / RNJ BARTS / RNJ KGV",
                     duration=60),
                 id="barts-S15-numeric-reason-in-SCH6-winter-offset"),
    pytest.param("node-hl7-complete__gMed-SIU_S12-invalid-no-SCH.hl7", Rejected("100"),
                 id="gmed-SIU-without-SCH-is-a-segment-sequence-error"),
    # --- orders ---------------------------------------------------------------------------
    pytest.param("msft-fhir-converter__ORM-O01-01.hl7",
                 _ev(K.ORDERED, "1201", "2002-03-15T06:00:00+00:00", "PATID1234", procedure="24725-4",
                     duration=1, extra={"cti_study": "RSID1234", "order_control": "NW"}),
                 id="msft-ORM-BOM-CTI-trial-segment-start-from-ORC7"),
    pytest.param("msft-fhir-converter__ORM-O01-02.hl7",
                 _ev(K.ORDERED, "1201", "2021-10-20T09:11:00+00:00", "PATID1234", procedure="24725-4",
                     comments=2),
                 id="msft-ORM-BOM-NTE-order-and-observation-comments-OBR27-start"),
    pytest.param("msft-fhir-converter__ORM-O01-03.hl7",
                 _ev(K.ORDERED, "1201", "2021-10-20T09:11:00+00:00", "PATID1234", procedure="24725-4",
                     extra={"cti_study": "SSID-1", "orders_in_message": "2"}, events=2),
                 id="msft-ORM-two-orders-two-events-each-with-own-CTI"),
    pytest.param("msft-fhir-converter__ORM-O01-05.hl7",
                 _ev(K.CANCELLED, "986", None, "PATID1234", comments=1),
                 id="msft-ORM-ORC5-CA-overrides-NW-no-OBR"),
    pytest.param("node-hl7-complete__catalyze-EPIC-ORM_O01-xray-ankle-LF-inside-OBR.hl7",
                 _ev(K.ORDERED, "1858", "2014-04-18T22:00:14+00:00", "20891312", procedure="73610"),
                 id="catalyze-epic-ORM-stray-newline-in-OBR17-rejoined"),
    pytest.param("hapi-hl7v2__DMCOE-ORM_O01-v22-XR-knee.hl7",
                 _ev(K.MODIFIED, "0000000517", "1994-04-26T20:00:00+00:00", "N00804", duration=60,
                     extra={"order_control": "XR"}),
                 id="dmcoe-v22-ORC1-XR-changed-as-requested-is-modified-OBR4-without-code"),
    pytest.param("hapi-hl7v2__DMCOE-ORM_O01-v22-CR-cancel-elbow.hl7",
                 _ev(K.CANCELLED, "0000000511", "1994-04-26T19:00:00+00:00", "N00804", duration=60),
                 id="dmcoe-v22-ORC1-CR-cancelled-as-requested"),
    pytest.param("hapi-hl7v2__DMCOE-ORM_O01-v22-NW-CT-biopsy.hl7",
                 _ev(K.ORDERED, "003711.0001.001", "1994-05-03T23:00:00+00:00", "N00829", procedure="38067",
                     duration=60),
                 id="dmcoe-v22-NW-no-filler-number-uses-placer"),
    pytest.param("hapi-hl7v2__InterRis-ORM_O01-v231-radiology.hl7", Rejected("0", skipped=True),
                 id="interris-ORC1-AF-refill-approval-is-not-an-order-event-skipped"),
    pytest.param("hapi-hl7v2__SINUS-ORM_O01-v25-ms-tz-timestamp.hl7", Rejected("0", skipped=True),
                 id="sinus-ORC1-RE-results-not-an-order-event-skipped"),
    pytest.param("hl7-gender-harmony__OMI_O23-v291-PET-GSP-GSC-IPC-empty-MSH3-6.hl7",
                 _ev(K.ORDERED, "accessionNum", None, "patientID", procedure="241439007"),
                 id="omi-v291-IPC-accession-empty-MSH3-6-new-segments"),
    pytest.param("hl7-gender-harmony__OMI_O23-v25-preadoption-MSH21-profile.hl7",
                 _ev(K.ORDERED, "accessionNum", None, "patientID", procedure="241439007"),
                 id="omi-v25-with-v29-segments-and-profile"),
    pytest.param("nw-gmsa__AlderHey-LAB-ORM_O01-genetics-many-NTE.hl7",
                 _ev(K.ORDERED, "6527", None, "AH0000256", procedure="GENETICS", comments=16,
                     extra={"diagnostic_service": "LAB"}),
                 id="alderhey-19-NTE-empty-ones-dropped-leading-spaces-stripped"),
    pytest.param("nw-gmsa__MFT-EPIC-OML_O21-native-CR.hl7",
                 _ev(K.ORDERED, "1001166717", None, "633", procedure="R240.1"),
                 id="mft-epic-OML-O21-native-CR"),
    pytest.param("nw-gmsa__MFT-EpicCare-ORM_O01-genomics-ZPD-PRT-SPM.hl7",
                 _ev(K.ORDERED, "1000135203", "2025-01-29T06:00:00+00:00", "202999", procedure="GENEAP",
                     comments=2, extra={"diagnostic_service": "Lab"}),
                 id="mft-epiccare-ZPD-kept-PRT-SPM-ignored-OBR36-date-only"),
    pytest.param("renalware-core__BartsHealth-BLT_TIE-ORM_O01-refer-to-renal-OBX-answers.hl7",
                 _ev(K.COMPLETED, "5541473217", "2025-03-07T20:25:00+00:00", "11260332",
                     procedure="Refer to Renal (OP)", extra={"order_control": "F"}),
                 id="barts-ORM-invalid-ORC1-F-but-ORC5-CM-completed"),
    # --- not scheduling, or garbage -------------------------------------------------------
    pytest.param("hapi-hl7v2__RADRESULTS-QRY_Q01-v21-nonstandard-encoding-chars.hl7", Rejected("200"),
                 id="radresults-QRY-with-curly-subcomponent-separator-unsupported-type"),
    pytest.param("nhapi__fuzz-so-digit-encoding-chars.hl7", Rejected("102"),
                 id="nhapi-fuzz-0000-encoding-characters"),
    pytest.param("nhapi__fuzz-hang1-one-encoding-char-garbage-segment.hl7", Rejected("102"),
                 id="nhapi-fuzz-lone-caret-encoding-character"),
]
# fmt: on


def _read(corpus_dir: Path, name: str) -> bytes:
    return (corpus_dir / "hl7" / name).read_bytes()


@pytest.mark.parametrize(("name", "expected"), ROWS)
def test_corpus_file_maps_to_its_named_expectation(
    corpus_dir: Path, name: str, expected: Event | Rejected
) -> None:
    result = to_events(_read(corpus_dir, name), SETTINGS)
    if isinstance(expected, Rejected):
        assert isinstance(result, Rejection), result
        assert (result.error_code, result.skipped) == (expected.error_code, expected.skipped)
        return
    assert isinstance(result, list), result
    assert len(result) == expected.events
    event = result[0]
    assert event.source == "corpus"
    assert event.kind is expected.kind
    assert event.external_id == expected.external_id
    assert (event.start.isoformat() if event.start else None) == expected.start
    assert event.mrn == expected.mrn
    assert event.procedure_code == expected.procedure
    assert event.location == expected.location
    assert len(event.comments) == expected.comments
    assert event.duration_minutes == expected.duration
    assert {k: event.extra.get(k) for k in expected.extra} == dict(expected.extra)


def test_every_corpus_file_has_a_named_expectation(corpus_dir: Path) -> None:
    covered = {row.values[0] for row in ROWS}  # type: ignore[attr-defined]
    assert covered == {p.name for p in (corpus_dir / "hl7").glob("*.hl7")}
    assert len(covered) == 41


def test_second_order_of_msft_orm_03_is_the_mr_brain_with_its_own_trial(corpus_dir: Path) -> None:
    result = to_events(_read(corpus_dir, "msft-fhir-converter__ORM-O01-03.hl7"), SETTINGS)
    assert isinstance(result, list)
    second = result[1]
    assert (second.external_id, second.procedure_code) == ("2301", "24590-2")
    assert second.procedure_text == "MR Brain"
    assert (second.accession, second.order_number) == ("2301", "2203")
    assert second.extra["cti_study"] == "RSID1234"


def test_omi_takes_modality_from_ipc5(corpus_dir: Path) -> None:
    event = _first(corpus_dir, "hl7-gender-harmony__OMI_O23-v291-PET-GSP-GSC-IPC-empty-MSH3-6.hl7")
    assert (event.modality, event.accession, event.trigger) == ("PT", "accessionNum", "OMI^O23")


def test_pid3_repetitions_are_kept_but_national_health_numbers_are_dropped(corpus_dir: Path) -> None:
    event = _first(corpus_dir, "nw-gmsa__MFT-EPIC-OML_O21-native-CR.hl7")
    # The NHS number (type NH) is a national id the office never needs: minimum necessary.
    assert [(i.value, i.authority, i.type_code) for i in event.patient_ids] == [("633", "R0A", "MR")]


def test_assigning_facility_stands_in_for_an_empty_assigning_authority(corpus_dir: Path) -> None:
    raw = _read(corpus_dir, "hapi-hl7v2__InterRis-ORM_O01-v231-radiology.hl7")
    event = to_events(raw.replace(b"ORC|AF|", b"ORC|NW|"), SETTINGS)  # AF alone is skipped
    assert isinstance(event, list)
    assert [i.authority for i in event[0].patient_ids] == ["BIS", "HIS", "KZZZ"]


def test_the_stray_newline_inside_obr17_is_rejoined_into_one_obr(corpus_dir: Path) -> None:
    name = "node-hl7-complete__catalyze-EPIC-ORM_O01-xray-ankle-LF-inside-OBR.hl7"
    lines = segment_lines(_read(corpus_dir, name))
    assert not any(line.startswith("8866") for line in lines)
    obr = next(line for line in lines if line.startswith("OBR"))
    assert obr.split("|")[17] == "(608)258-8866"
    assert obr.split("|")[27] == "^^^20140418170014^^^^"


def test_sch25_status_is_kept_as_the_senders_status_code(corpus_dir: Path) -> None:
    event = _first(corpus_dir, "hapi-hl7v2-json__athenahealth-ATHENANET-SIU_S15-status-NOSHOW.hl7")
    assert (event.trigger, event.status_code) == ("SIU^S15", "NOSHOW")


def test_z_segments_are_kept_verbatim(corpus_dir: Path) -> None:
    event = _first(corpus_dir, "nw-gmsa__MFT-EpicCare-ORM_O01-genomics-ZPD-PRT-SPM.hl7")
    assert event.extra["z_segments"].startswith("ZPD||MYCH~Post||ACTIVATED|||Y|20250729")


def test_no_corpus_file_puts_a_patient_name_or_birth_date_into_an_event(corpus_dir: Path) -> None:
    checked = 0
    for path in sorted((corpus_dir / "hl7").glob("*.hl7")):
        result = to_events(path.read_bytes(), SETTINGS)
        if not isinstance(result, list):
            continue
        pid = next(line.split("|") for line in segment_lines(path.read_bytes()) if line.startswith("PID"))
        family = pid[5].split("^")[0].split("&")[0] if len(pid) > 5 else ""
        birth = pid[7][:8] if len(pid) > 7 else ""
        checked += 1
        for event in result:
            text = repr(event)
            if len(family) > 3:
                assert family not in text, path.name
            if len(birth) == 8:
                assert birth not in text, path.name
    assert checked >= 30


def _first(corpus_dir: Path, name: str) -> ScheduleEvent:
    result = to_events(_read(corpus_dir, name), SETTINGS)
    assert isinstance(result, list)
    return result[0]


def test_times_are_utc_aware(corpus_dir: Path) -> None:
    event = _first(corpus_dir, "renalware-core__BartsHealth-BLT_TIE-SIU_S12.hl7")
    assert event.start == datetime.fromisoformat("2024-11-06T12:00:00-06:00")
