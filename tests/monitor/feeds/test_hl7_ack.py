"""HL7 ACKs, and the cheap MSH reads used for duplicate detection."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import hl7  # type: ignore[import-untyped]
import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.feeds.hl7.ack import build_ack, message_key, message_type

NOW = datetime(2026, 3, 12, 15, 4, 5, tzinfo=UTC)
SIU = (
    "MSH|^~\\&|EPIC|HIRO_HOSP^1.2.3^ISO|HIRO_MONITOR|RESEARCH|20260310081500||SIU^S12^SIU_S12|EPIC000123|P|2.3\r"
    "SCH|1|4455667788\r"
    "PID|1||E1234567^^^EPI^MR||TEST^PATIENT||19800101\r"
)


def parsed(ack: bytes) -> hl7.Message:
    assert ack.endswith(b"\r")
    return hl7.parse(ack.decode("utf-8"))


def segment(ack: bytes, name: str) -> list[str]:
    """A segment's fields as text, indexed like HL7 (MSH: [10] is MSH-10)."""
    line = next(line for line in ack.decode().split("\r") if line.startswith(name))
    fields = line.split(line[3]) if name == "MSH" else line.split("|")
    return ["MSH", line[3], *fields[1:]] if name == "MSH" else fields


def test_msa2_echoes_the_original_control_id() -> None:
    ack = build_ack(SIU, "AA", now=NOW)
    assert segment(ack, "MSA")[1:3] == ["AA", "EPIC000123"]


def test_msa2_echoes_a_leading_space_exactly_as_received() -> None:
    orsos = SIU.replace("|EPIC000123|", "| 38762|")
    assert segment(build_ack(orsos, "AA", now=NOW), "MSA")[2] == " 38762"


def test_sending_and_receiving_application_and_facility_are_swapped() -> None:
    msh = segment(build_ack(SIU, "AA", now=NOW), "MSH")
    assert msh[3:7] == ["HIRO_MONITOR", "RESEARCH", "EPIC", "HIRO_HOSP^1.2.3^ISO"]


def test_msh_carries_time_type_new_control_id_processing_id_and_version() -> None:
    msh = segment(build_ack(SIU, "AA", now=NOW, control_id="ACK0001"), "MSH")
    assert msh[7] == "20260312150405+0000"
    assert msh[9] == "ACK^S12^ACK"
    assert msh[10:13] == ["ACK0001", "P", "2.3"]


def test_the_derived_control_id_is_new_stable_and_fits_msh10() -> None:
    first = segment(build_ack(SIU, "AA", now=NOW), "MSH")[10]
    assert first == segment(build_ack(SIU, "AA", now=NOW), "MSH")[10]
    assert first != "EPIC000123"
    assert len(first) == 20
    assert first != segment(build_ack(SIU, "AA", now=NOW + timedelta(seconds=1)), "MSH")[10]


def test_msh7_keeps_the_offset_of_now() -> None:
    local = NOW.astimezone(timezone(timedelta(hours=-6)))
    assert segment(build_ack(SIU, "AA", now=local), "MSH")[7] == "20260312090405-0600"


def test_an_aa_has_no_err_segment() -> None:
    assert b"\rERR|" not in build_ack(SIU, "AA", now=NOW)


def test_an_ae_carries_err3_from_table_0357_severity_and_the_reason() -> None:
    ack = build_ack(SIU, "AE", error_code="102", text="SCH-11.4: invalid timestamp", now=NOW)
    err = segment(ack, "ERR")
    assert err[3] == "102^Data type error^HL70357"
    assert err[4] == "E"
    assert err[8] == "SCH-11.4: invalid timestamp"
    assert segment(ack, "MSA")[1] == "AE"


def test_an_ae_without_a_code_defaults_to_207() -> None:
    assert segment(build_ack(SIU, "AE", now=NOW), "ERR")[3] == "207^Application internal error^HL70357"


def test_a_v23_sender_also_gets_the_text_in_msa3_a_v25_sender_does_not() -> None:
    ack = build_ack(SIU, "AE", error_code="100", text="no SCH", now=NOW)
    assert segment(ack, "MSA")[3] == "no SCH"
    v25 = build_ack(SIU.replace("|P|2.3\r", "|P|2.5.1\r"), "AE", error_code="100", text="no SCH", now=NOW)
    assert len(segment(v25, "MSA")) == 3


def test_separators_in_the_text_are_escaped() -> None:
    ack = build_ack(SIU, "AR", error_code="200", text="type A|B^C&D~E\\F\rG", now=NOW)
    assert segment(ack, "ERR")[8] == "type A\\F\\B\\S\\C\\T\\D\\R\\E\\E\\F G"


def test_the_ack_parses_back_with_python_hl7() -> None:
    message = parsed(build_ack(SIU, "AE", error_code="101", text="no id", now=NOW))
    assert str(message.segment("MSH")[9]) == "ACK^S12^ACK"
    assert str(message.segment("MSA")[2]) == "EPIC000123"
    assert str(message.segment("ERR")[3]) == "101^Required field missing^HL70357"


def test_the_originals_encoding_characters_are_used_when_valid() -> None:
    radresults = (
        "MSH|^~\\}|RAD RESULTS|RIQ1|RAD RESULTS|RIQ1|19940113085842||QRY^Q01|161875RIQ40113085843|P|2.1\r"
    )
    ack = build_ack(radresults, "AR", error_code="200", text="a & b", now=NOW)
    assert ack.startswith(b"MSH|^~\\}|")
    assert segment(ack, "ERR")[8] == "a & b"  # '&' is text here; '}' is the subcomponent separator
    assert segment(ack, "MSA")[2] == "161875RIQ40113085843"


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"hello world", id="no-MSH"),
        pytest.param(b"\x00\xff\xfe\x0b", id="binary"),
        pytest.param(b"MSH", id="MSH-alone"),
        pytest.param(b"MSH|^|||||||^A|||2.2\r^AA", id="nhapi-lone-caret"),
        pytest.param(b"MSH|0000|||||||00|||2.8.1\rIN2|0", id="nhapi-digit-encoding"),
    ],
)
def test_garbage_still_gets_a_minimal_ack_that_parses(garbage: bytes) -> None:
    ack = build_ack(garbage, "AE", error_code="100", text="not HL7", now=NOW)
    message = parsed(ack)
    assert ack.startswith(b"MSH|^~\\&|")
    assert str(message.segment("MSA")[1]) == "AE"
    assert str(message.segment("MSA")[2]) == ""


def test_a_str_with_lone_surrogates_still_gets_an_ack() -> None:
    ack = build_ack(SIU.replace("EPIC000123", "X\ud800Y"), "AE", now=NOW)
    assert segment(ack, "MSA")[2] == "X?Y"


def test_with_unusable_encoding_characters_echoed_values_are_escaped() -> None:
    ack = build_ack(b"MSH|^|A^B|F|||||^A|ID^1|P|2.2\r", "AE", now=NOW)
    msh = segment(ack, "MSH")
    assert msh[5] == "A\\S\\B"
    assert segment(ack, "MSA")[2] == "ID\\S\\1"
    assert msh[9] == "ACK^^ACK"


def test_corpus_orsos_ack_echoes_the_leading_space_control_id(corpus_dir: Path) -> None:
    raw = (corpus_dir / "hl7" / "hapi-hl7v2__ORSOS-SIU_S14-4-RGS-groups.hl7").read_bytes()
    assert segment(build_ack(raw, "AA", now=NOW), "MSA")[2] == " 38762"
    assert message_key(raw) == ("ORSOS", "G", "38762")


def test_build_ack_refuses_an_unknown_code_or_a_naive_now() -> None:
    with pytest.raises(ValueError, match="AA, AE or AR"):
        build_ack(SIU, "CA", now=NOW)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="aware"):
        build_ack(SIU, "AA", now=datetime(2026, 3, 12))


def test_no_patient_data_from_the_message_goes_into_the_ack() -> None:
    ack = build_ack(SIU, "AE", error_code="207", text="internal error", now=NOW)
    for value in (b"TEST", b"PATIENT", b"19800101", b"E1234567"):
        assert value not in ack


# --- message_key and message_type ----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        pytest.param(SIU, ("EPIC", "HIRO_HOSP^1.2.3^ISO", "EPIC000123"), id="str"),
        pytest.param(SIU.encode(), ("EPIC", "HIRO_HOSP^1.2.3^ISO", "EPIC000123"), id="bytes"),
        pytest.param(b"\xef\xbb\xbf" + SIU.encode(), ("EPIC", "HIRO_HOSP^1.2.3^ISO", "EPIC000123"), id="BOM"),
        pytest.param(
            b"\x0b" + SIU.encode() + b"\x1c\r", ("EPIC", "HIRO_HOSP^1.2.3^ISO", "EPIC000123"), id="MLLP"
        ),
        pytest.param(
            "MSH|^~\\&|DMCOE ||RADIS1||199405031515||ORM^O01|940503151537000|D|2.2\n",
            ("DMCOE", "", "940503151537000"),
            id="dmcoe-trailing-space-LF",
        ),
        pytest.param("MSH|^~\\&|A|B|C|D|2026||SIU^S12||P|2.3\r", None, id="empty-control-id"),
        pytest.param(b"PID|1||X\r", None, id="no-MSH"),
        pytest.param(b"", None, id="empty"),
        pytest.param(b"MSH1^~\\&|A", None, id="alphanumeric-field-separator"),
    ],
)
def test_message_key_is_the_stripped_sender_and_control_id(
    raw: str | bytes, key: tuple[str, str, str] | None
) -> None:
    assert message_key(raw) == key


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        pytest.param(SIU, "SIU^S12", id="three-components"),
        pytest.param("MSH|^~\\&|A|B|C|D|2026||ORM^O01|1|P|2.3", "ORM^O01", id="two-components"),
        pytest.param("MSH|^~\\&|A|B|C|D|2026||ACK|1|P|2.3", "ACK", id="one-component"),
        pytest.param("MSH|^~\\&|A|B|C|D|2026|||1|P|2.3", "", id="empty"),
        pytest.param(b"garbage", "", id="garbage"),
        pytest.param(b"MSH|0000|||||||00|||2.8.1", "00", id="fuzz"),
    ],
)
def test_message_type_reads_msh9_cheaply(raw: str | bytes, kind: str) -> None:
    assert message_type(raw) == kind


control_ids = st.text(
    alphabet=st.sampled_from([c for c in string.printable if c not in "|^~\\&\r\n\t\x0b\x0c"]),
    min_size=1,
    max_size=40,
)


@given(control_id=control_ids)
def test_msa2_equals_the_original_msh10_for_any_control_id(control_id: str) -> None:
    original = SIU.replace("|EPIC000123|", f"|{control_id}|")
    message = parsed(build_ack(original, "AE", text="x", now=NOW))
    assert str(message.segment("MSA")[2]) == control_id
    key = message_key(original)
    assert (
        key is None if not control_id.strip() else key == ("EPIC", "HIRO_HOSP^1.2.3^ISO", control_id.strip())
    )
