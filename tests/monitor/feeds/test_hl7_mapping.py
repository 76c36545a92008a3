"""SIU and order mapping on synthetic Epic-style messages (hl7_fixtures/, patients are TEST^PATIENT)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.config import Hl7Settings
from monitor.events import EventKind, Rejection, ScheduleEvent
from monitor.feeds.hl7 import mapping, siu
from monitor.feeds.hl7.mapping import DEFAULT_STATUS_CODES, MappingSettings, to_event, to_events

FIXTURES = Path(__file__).parent / "hl7_fixtures"
EPIC_SIU = (FIXTURES / "epic_siu_s12.hl7").read_bytes().decode("ascii")  # keep the CRs
CHICAGO = ZoneInfo("America/Chicago")
EPIC = MappingSettings(source="epic", zone=CHICAGO, mrn_authorities=("EPI",))


def epic(**segments: str | None) -> str:
    """The Epic fixture with whole segments replaced (``SCH="SCH|..."``) or removed (None)."""
    lines = EPIC_SIU.rstrip("\r").split("\r")
    out: list[str] = []
    for line in lines:
        name = line[:3]
        if name in segments:
            replacement = segments[name]
            if replacement is not None:
                out.append(replacement)
        else:
            out.append(line)
    return "\r".join(out) + "\r"


def with_field(segment: str, number: int, value: str) -> str:
    """A fixture segment with field ``number`` set (MSH fields count from MSH-1)."""
    line = next(line for line in EPIC_SIU.split("\r") if line.startswith(segment))
    parts = line.split("|")
    index = number - 1 if segment == "MSH" else number
    parts += [""] * (index + 1 - len(parts))
    parts[index] = value
    return "|".join(parts)


def one(raw: str | bytes, settings: MappingSettings = EPIC) -> ScheduleEvent:
    result = to_events(raw, settings)
    assert isinstance(result, list), result
    assert len(result) == 1
    return result[0]


def rejected(raw: str | bytes, settings: MappingSettings = EPIC) -> Rejection:
    result = to_events(raw, settings)
    assert isinstance(result, Rejection), result
    return result


# --- identity, patient, time ---------------------------------------------------------------


def test_epic_csn_in_sch2_is_the_appointment_id_and_the_placeholder_sch1_is_ignored() -> None:
    event = one(EPIC_SIU)
    assert event.external_id == "4455667788"
    assert (event.kind, event.trigger, event.source) == (EventKind.BOOKED, "SIU^S12", "epic")


def test_without_sch2_the_csn_comes_from_pv1_19_not_from_the_placeholder_sch1() -> None:
    assert one(epic(SCH=with_field("SCH", 2, ""))).external_id == "4455667788"


def test_a_placeholder_sch1_and_nothing_else_is_rejected_as_missing_id() -> None:
    problem = rejected(epic(SCH=with_field("SCH", 2, ""), PV1=None))
    assert (problem.error_code, problem.skipped) == ("101", False)
    assert "appointment id" in problem.reason


def test_a_real_placer_id_in_sch1_is_used_when_sch2_is_empty() -> None:
    sch = with_field("SCH", 2, "").replace("SCH|1|", "SCH|PL-777^EPIC|")
    assert one(epic(SCH=sch, PV1=None)).external_id == "PL-777"


@pytest.mark.parametrize(
    ("authorities", "types", "mrn"),
    [
        pytest.param(("EPI",), ("MR",), "E1234567", id="by-authority-and-type"),
        pytest.param(("researchreg",), (), "998877", id="by-authority-ignoring-case"),
        pytest.param((), ("RRN",), "998877", id="by-type"),
        pytest.param(("NOWHERE",), ("NONE",), "E1234567", id="nothing-matches-first-identifier"),
        pytest.param(("RESEARCHREG",), ("MR",), "998877", id="authority-beats-type"),
    ],
)
def test_mrn_is_chosen_by_assigning_authority_and_type(
    authorities: tuple[str, ...], types: tuple[str, ...], mrn: str
) -> None:
    settings = MappingSettings("epic", CHICAGO, mrn_authorities=authorities, mrn_type_codes=types)
    assert one(EPIC_SIU, settings).mrn == mrn


def test_every_pid3_identifier_is_kept_except_government_numbers() -> None:
    event = one(EPIC_SIU)
    assert [(i.value, i.authority, i.type_code) for i in event.patient_ids] == [
        ("E1234567", "EPI", "MR"),
        ("998877", "RESEARCHREG", "RRN"),
    ]
    assert "555001234" not in repr(event)  # the SSN never reaches the event, hence the store


def test_times_without_a_zone_are_read_in_the_feed_zone() -> None:
    assert one(EPIC_SIU).start == datetime(2026, 3, 12, 14, 30, tzinfo=UTC)  # 09:30 CDT
    new_york = MappingSettings("epic", ZoneInfo("America/New_York"))
    assert one(EPIC_SIU, new_york).start == datetime(2026, 3, 12, 13, 30, tzinfo=UTC)


def test_a_start_in_the_spring_forward_gap_is_shifted_forward() -> None:
    ais = with_field("AIS", 4, "20260308023000")  # 02:30 does not exist in Chicago that night
    assert one(epic(AIS=ais)).start == datetime(2026, 3, 8, 8, 30, tzinfo=UTC)  # = 03:30 CDT


@pytest.mark.parametrize(
    ("segments", "start"),
    [
        pytest.param({}, datetime(2026, 3, 12, 14, 30, tzinfo=UTC), id="AIS-4"),
        pytest.param(
            {"AIS": with_field("AIS", 4, "")}, datetime(2026, 3, 12, 14, 30, tzinfo=UTC), id="SCH-11.4"
        ),
        pytest.param(
            {"AIS": None, "SCH": with_field("SCH", 11, ""), "AIL": with_field("AIL", 6, "202603121000")},
            datetime(2026, 3, 12, 15, tzinfo=UTC),
            id="AIL-6-when-nothing-else",
        ),
        pytest.param(
            {"AIS": None, "SCH": with_field("SCH", 11, ""), "AIL": with_field("AIL", 6, ""), "AIP": None},
            datetime(2026, 3, 12, 14, 30, tzinfo=UTC),
            id="AIG-8-after-AIL-6",
        ),
    ],
)
def test_start_falls_back_from_ais4_to_sch11_to_resource_starts(
    segments: dict[str, str | None], start: datetime
) -> None:
    assert one(epic(**segments)).start == start


def test_tq1_start_comes_before_sch11() -> None:
    tq1 = "TQ1|1||||||202603121100|202603121145"
    raw = epic(AIS=with_field("AIS", 4, "")).replace("\rPID|", f"\r{tq1}\rPID|")
    assert one(raw).start == datetime(2026, 3, 12, 16, tzinfo=UTC)


@pytest.mark.parametrize(
    ("segments", "minutes"),
    [
        pytest.param({}, 30, id="AIS-7-MIN"),
        pytest.param({"AIS": with_field("AIS", 8, "H^Hours")}, 30 * 60, id="AIS-8-hours"),
        pytest.param({"AIS": with_field("AIS", 7, "")}, 30, id="SCH-9-and-SCH-10"),
        pytest.param(
            {"AIS": None, "SCH": with_field("SCH", 9, "").replace("^^30^", "^^45^")}, 45, id="SCH-11.3-TQ"
        ),
        pytest.param(
            {
                "AIS": None,
                "SCH": with_field("SCH", 9, "").replace("^^30^20260312093000", "^^^2026031209^2026031211"),
            },
            120,
            id="SCH-11-end-minus-start",
        ),
    ],
)
def test_duration_falls_back_through_ais_sch_and_tq(segments: dict[str, str | None], minutes: int) -> None:
    assert one(epic(**segments)).duration_minutes == minutes


def test_procedure_location_resources_and_comments_come_from_the_ais_ail_aig_aip_and_nte() -> None:
    event = one(EPIC_SIU)
    assert (event.procedure_code, event.procedure_text, event.procedure_system) == (
        "IMG123",
        "CT CHEST W CONTRAST",
        "EAP",
    )
    assert event.location == "RAD CT / CT3 / HIRO HOSPITAL"
    assert event.resources == ("CT3SCAN", "5555")
    assert event.comments == ("Research scan: ONC-123 week 12; give oral contrast at 08:30",)
    assert event.extra == {}


def test_several_rgs_groups_are_still_one_appointment_event() -> None:
    second = (
        "RGS|2|A\rAIS|2|A|IMG456^MR BRAIN^EAP|20260312103000|||45|MIN\rAIL|2|A|RAD MR^MR1|||20260312103000"
    )
    raw = EPIC_SIU.rstrip("\r") + "\r" + second + "\r"
    event = one(raw)
    assert event.procedure_code == "IMG123"
    assert event.extra["services"] == "IMG123~IMG456"


def test_ampersand_subcomponents_packed_into_ail3_point_of_care_read_as_code_and_text() -> None:
    assert one(epic(AIL="AIL|1|A|11&X-Ray Room&L")).location == "11 X-Ray Room"


def test_explicit_nulls_read_as_empty() -> None:
    event = one(epic(AIL='AIL|1|A|""', NTE='NTE|1||""'))
    assert event.location == "RAD CT / CT3 / HIRO HOSPITAL"  # from PV1-3
    assert event.comments == ()


def test_escaped_separators_in_comments_are_undone() -> None:
    event = one(epic(NTE="NTE|1||Bring \\T\\ sign consent\\.br\\Line \\F\\ two~second line"))
    assert event.comments == ("Bring & sign consent\nLine | two\nsecond line",)


# --- kind ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger", "status", "kind"),
    [
        pytest.param("S12", "", EventKind.BOOKED, id="S12-booked"),
        pytest.param("S13", "", EventKind.RESCHEDULED, id="S13-rescheduled"),
        pytest.param("S14", "", EventKind.MODIFIED, id="S14-modified"),
        pytest.param("S14", "Checked In", EventKind.ARRIVED, id="S14-checked-in-is-arrived"),
        pytest.param("S14", "Complete", EventKind.COMPLETED, id="S14-complete-is-completed"),
        pytest.param("S14", "Booked", EventKind.MODIFIED, id="S14-booked-stays-modified"),
        pytest.param("S15", "", EventKind.CANCELLED, id="S15-cancelled"),
        pytest.param("S15", "NOSHOW", EventKind.NO_SHOW, id="S15-noshow-is-no-show"),
        pytest.param("S15", "Arrived", EventKind.CANCELLED, id="S15-arrived-stays-cancelled"),
        pytest.param("S16", "", EventKind.CANCELLED, id="S16-discontinued-is-cancelled"),
        pytest.param("S17", "Complete", EventKind.DELETED, id="S17-deleted-whatever-the-status"),
        pytest.param("S26", "", EventKind.NO_SHOW, id="S26-no-show"),
        pytest.param("S20", "", EventKind.MODIFIED, id="S20-service-cancelled-appointment-modified"),
    ],
)
def test_kind_comes_from_the_trigger_and_sch25_where_it_says_more(
    trigger: str, status: str, kind: EventKind
) -> None:
    raw = epic(MSH=with_field("MSH", 9, f"SIU^{trigger}"), SCH=with_field("SCH", 25, status))
    assert one(raw).kind is kind


def test_an_epic_sch25_code_maps_through_the_site_table() -> None:
    raw = epic(MSH=with_field("MSH", 9, "SIU^S14"), SCH=with_field("SCH", 25, "6^SCH"))
    assert one(raw).kind is EventKind.MODIFIED  # unknown code: the trigger decides
    site = MappingSettings.from_settings(
        Hl7Settings(
            feed="epic", timezone="America/Chicago", status_codes={"6^sch": "arrived", "1^SCH": "booked"}
        )
    )
    event = one(raw, site)
    assert (event.kind, event.status_code) == (EventKind.ARRIVED, "6^SCH")


def test_the_fixtures_epic_1_sch_status_is_read_through_the_site_table() -> None:
    assert one(EPIC_SIU).status_code == "1^SCH"
    site = MappingSettings("epic", CHICAGO, status_codes={"1^SCH": EventKind.COMPLETED})
    assert one(EPIC_SIU, site).kind is EventKind.COMPLETED  # a completion overrides S12's booked


def test_a_site_code_matches_on_the_code_alone_and_in_standard_ce_layout() -> None:
    site = MappingSettings("epic", CHICAGO, status_codes={**DEFAULT_STATUS_CODES, "6": EventKind.COMPLETED})
    for status in ("6^SCH", "6^^SCH", "6"):
        raw = epic(MSH=with_field("MSH", 9, "SIU^S14"), SCH=with_field("SCH", 25, status))
        assert one(raw, site).kind is EventKind.COMPLETED, status


def test_from_settings_refuses_a_status_that_is_not_an_event_kind() -> None:
    # Hl7Settings validates this already; from_settings still checks what it is handed.
    bad = Hl7Settings.model_construct(feed="epic", timezone="UTC", status_codes={"6^SCH": "checked-out"})
    with pytest.raises(ValueError, match=r"hl7.status_codes\['6\^SCH'\]"):
        MappingSettings.from_settings(bad)


def test_from_settings_carries_feed_zone_and_mrn_rules() -> None:
    made = MappingSettings.from_settings(
        Hl7Settings(feed="west", timezone="America/Denver", mrn_authorities=("EPI",), mrn_type_codes=("MR",))
    )
    assert (made.source, made.zone, made.mrn_authorities, made.mrn_type_codes) == (
        "west",
        ZoneInfo("America/Denver"),
        ("EPI",),
        ("MR",),
    )
    assert made.status_codes["NOSHOW"] is EventKind.NO_SHOW


# --- what is not an appointment ------------------------------------------------------------


def test_a_hold_or_block_without_a_patient_is_skipped_not_an_error() -> None:
    problem = rejected(epic(PID=None, PV1=None))
    assert (problem.skipped, problem.reason) == (True, "no patient: hold or block")


def test_a_siu_with_neither_patient_nor_any_resource_is_a_segment_error() -> None:
    problem = rejected(epic(PID=None, PV1=None, RGS=None, AIS=None, AIG=None, AIL=None, AIP=None))
    assert (problem.error_code, problem.skipped) == ("100", False)


def test_an_unknown_siu_trigger_is_an_unsupported_event() -> None:
    assert rejected(epic(MSH=with_field("MSH", 9, "SIU^S99"))).error_code == "201"


def test_a_non_scheduling_message_is_an_unsupported_type_not_skipped() -> None:
    adt = "MSH|^~\\&|EPIC|HOSP|HIRO|RI|20260310||ADT^A04|X1|P|2.3\rPID|1||E1^^^EPI^MR||TEST^PATIENT\r"
    problem = rejected(adt)
    assert (problem.error_code, problem.skipped) == ("200", False)


def test_text_without_msh_is_a_segment_sequence_error() -> None:
    assert rejected(b"hello, not hl7").error_code == "100"
    assert rejected(b"").error_code == "100"


def test_an_invalid_timestamp_names_the_field_but_not_the_value() -> None:
    problem = rejected(epic(AIS=with_field("AIS", 4, "20261340093000")))
    assert (problem.error_code, problem.reason) == ("102", "AIS-4: invalid timestamp")


def test_an_exception_inside_the_mapping_becomes_a_207_rejection_without_phi(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(*_: object) -> None:
        raise RuntimeError("E1234567 TEST^PATIENT 19800101")

    monkeypatch.setattr(siu.common, "choose_mrn", explode)
    problem = rejected(EPIC_SIU)
    assert problem.error_code == "207"
    assert "RuntimeError" in problem.reason
    assert "E1234567" not in problem.reason and "PATIENT" not in problem.reason


# --- normalisation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(lambda m: m.replace("\r", "\r\n"), id="CRLF"),
        pytest.param(lambda m: m.replace("\r", "\n"), id="LF"),
        pytest.param(lambda m: "\ufeff" + m, id="BOM"),
        pytest.param(lambda m: "\x0b" + m + "\x1c\r", id="MLLP-framing"),
        pytest.param(lambda m: m.replace("\r", "\r\r"), id="blank-lines"),
        pytest.param(lambda m: m.replace("give oral", "give\noral"), id="stray-newline-inside-NTE"),
    ],
)
def test_line_end_variants_bom_and_framing_give_the_same_event(variant: object) -> None:
    changed = variant(EPIC_SIU)  # type: ignore[operator]
    expected = one(EPIC_SIU)
    event = one(changed.encode("utf-8"))
    assert event == expected or event.comments[0].replace("giveoral", "give oral") == expected.comments[0]


def test_a_stray_newline_is_rejoined_to_the_segment_it_broke() -> None:
    event = one(EPIC_SIU.replace("give oral", "give\noral"))
    assert event.comments == ("Research scan: ONC-123 week 12; giveoral contrast at 08:30",)


def test_latin1_text_is_read_when_it_is_not_utf8() -> None:
    raw = epic(NTE="NTE|1||Bitte nüchtern kommen").encode("latin-1")
    assert one(raw).comments == ("Bitte nüchtern kommen",)


def test_to_event_returns_the_first_event_or_the_rejection() -> None:
    assert isinstance(to_event(EPIC_SIU, EPIC), ScheduleEvent)
    assert isinstance(to_event(b"garbage", EPIC), Rejection)


# --- orders --------------------------------------------------------------------------------


def _obr(*fields: tuple[int, str]) -> str:
    values = dict(fields)
    return "OBR|" + "|".join(values.get(i, "") for i in range(1, max(values) + 1))


ORM = (
    "MSH|^~\\&|EPIC|HOSP|HIRO|RI|20260310081500||ORM^O01|ORD1|P|2.3\r"
    "PID|1||E1234567^^^EPI^MR||TEST^PATIENT||19800101|F\r"
    "ORC|NW|PL100^EPIC|FL200^RAD|||||||||||||||\r"
    + _obr(
        (1, "1"),
        (2, "PL100^EPIC"),
        (3, "FL200^RAD"),
        (4, "IMG123^CT CHEST W CONTRAST^EAP"),
        (24, "CT"),
        (27, "^^^20260312093000"),
    )
    + "\r"
    "NTE|1||Trial ONC-123\r"
    "CTI|ONC-123^Oncology trial|C1D1\r"
    "ORC|CA|PL101^EPIC|FL201^RAD|||||||||||||||\r"
    "OBR|1|PL101^EPIC|FL201^RAD|IMG456^MR BRAIN^EAP\r"
)


def test_an_order_message_with_two_orders_gives_two_events() -> None:
    result = to_events(ORM, EPIC)
    assert isinstance(result, list)
    first, second = result
    assert (first.kind, first.external_id, first.accession, first.order_number) == (
        EventKind.ORDERED,
        "FL200",
        "FL200",
        "PL100",
    )
    assert (first.modality, first.start) == ("CT", datetime(2026, 3, 12, 14, 30, tzinfo=UTC))
    assert (first.comments, first.extra["cti_study"]) == (("Trial ONC-123",), "ONC-123")
    assert (second.kind, second.external_id, second.procedure_code) == (
        EventKind.CANCELLED,
        "FL201",
        "IMG456",
    )
    assert second.comments == ()


@pytest.mark.parametrize(
    ("control", "status", "kind"),
    [
        pytest.param("NW", "", EventKind.ORDERED, id="NW-ordered"),
        pytest.param("XO", "", EventKind.MODIFIED, id="XO-change-keeps-status"),
        pytest.param("SC", "CM", EventKind.COMPLETED, id="SC-with-ORC5-CM-completed"),
        pytest.param("SC", "IP", EventKind.MODIFIED, id="SC-in-process-modified"),
        pytest.param("OC", "", EventKind.CANCELLED, id="OC-cancelled"),
        pytest.param("DC", "", EventKind.CANCELLED, id="DC-discontinued-cancelled"),
    ],
)
def test_order_kind_comes_from_orc1_and_orc5(control: str, status: str, kind: EventKind) -> None:
    raw = ORM.split("ORC|CA")[0].replace(
        "ORC|NW|PL100^EPIC|FL200^RAD||", f"ORC|{control}|PL100^EPIC|FL200^RAD||{status}"
    )
    result = to_events(raw, EPIC)
    assert isinstance(result, list)
    assert result[0].kind is kind


@pytest.mark.parametrize(
    ("result_status", "kind"),
    [
        pytest.param("F", EventKind.COMPLETED, id="OBR25-F-final-result-performed"),
        pytest.param("P", EventKind.COMPLETED, id="OBR25-P-preliminary-performed"),
        pytest.param("C", EventKind.COMPLETED, id="OBR25-C-corrected-performed"),
        pytest.param("O", EventKind.MODIFIED, id="OBR25-O-order-received-not-evidence"),
        pytest.param("", EventKind.MODIFIED, id="OBR25-empty"),
    ],
)
def test_a_result_status_in_obr25_is_evidence_the_exam_was_performed(
    result_status: str, kind: EventKind
) -> None:
    order = ORM.split("ORC|CA")[0].replace("ORC|NW|", "ORC|SC|")
    order = order.replace("|CT|||^^^20260312093000", f"|CT|{result_status}||^^^20260312093000")
    result = to_events(order, EPIC)
    assert isinstance(result, list)
    assert result[0].kind is kind


def test_an_order_without_any_number_is_rejected() -> None:
    raw = "MSH|^~\\&|A|B|C|D|2026||ORM^O01|1|P|2.3\rPID|1||E1^^^EPI^MR\rORC|NW\rOBR|1|||X^Y\r"
    assert rejected(raw).error_code == "101"


def test_an_oru_result_is_not_taken_for_an_order() -> None:
    raw = "MSH|^~\\&|A|B|C|D|2026||ORU^R01|1|P|2.3\rPID|1||E1^^^EPI^MR\rORC|RE|1|2\rOBR|1|1|2|X^Y\r"
    assert rejected(raw).error_code == "200"


# --- PHI and robustness --------------------------------------------------------------------


def test_no_name_birth_date_address_or_phone_appears_in_the_event() -> None:
    for raw in (EPIC_SIU, ORM):
        result = to_events(raw, EPIC)
        assert isinstance(result, list)
        for event in result:
            text = repr(event)
            for value in ("TEST^PATIENT", "PATIENT", "19800101", "1 TEST STREET", "TESTTOWN", "555-0100"):
                assert value not in text


mutations = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=len(EPIC_SIU) - 1), st.sampled_from(list('|^~\\&\r\n x0"+.-'))
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(changes=mutations)
def test_to_events_never_raises_whatever_the_damage(changes: list[tuple[int, str]]) -> None:
    chars = list(EPIC_SIU)
    for at, char in changes:
        chars[at] = char
    result = to_events("".join(chars), EPIC)
    assert isinstance(result, list | Rejection)
    if isinstance(result, Rejection):
        assert "TEST" not in result.reason and "19800101" not in result.reason


def test_the_module_exports_the_api() -> None:
    assert mapping.to_events is to_events


def test_modality_comes_from_the_scheduled_room_type_when_no_order_names_it() -> None:
    from tests.monitor.hl7_messages import siu

    event = one(siu(modality="MR", room="MR2"))
    assert (event.modality, event.location) == ("MR", "MR2 / HOSP")
    assert one(siu(modality="ROOM")).modality is None  # not a DICOM modality code: unknown
