"""Synthetic HL7 messages for tests (invented patients only)."""

from __future__ import annotations

PATIENT_NAME = "TESTPATIENT^ALPHA"
BIRTH_DATE = "19610203"
MRN = "E100042"


def siu(
    trigger: str = "S12",
    *,
    control_id: str = "MSG0001",
    csn: str = "7000000001",
    start: str = "20261201093000",
    status: str = "Booked",
    mrn: str = MRN,
    code: str = "IMG1234",
    room: str = "CT3",
    modality: str = "CT",
    sent_at: str = "20261120080000",
    note: str = "Research exam",
) -> bytes:
    """An Epic-style SIU: SCH-1 '1', SCH-2 the CSN, start in SCH-11.4 and AIS-4, no zone."""
    segments = [
        f"MSH|^~\\&|EPIC|HOSP|HIRO|RIO|{sent_at}||SIU^{trigger}^SIU_{trigger}|{control_id}|P|2.5.1",
        f"SCH|1|{csn}|||||||30|MIN|^^30^{start}|||||||||||||{status}^{status}",
        f"PID|1||{mrn}^^^EPI^MR~99887766^^^EPIC^EPI||{PATIENT_NAME}||{BIRTH_DATE}|F",
        f"PV1|1|O|{room}^^^HOSP||||||||||||||||{csn}",
        "RGS|1|A",
        f"AIS|1|A|{code}^CT CHEST ABDOMEN PELVIS W CONTRAST^EAP|{start}|||30|MIN||{status}",
        f"AIL|1|A|{room}^^^HOSP|{modality}||{start}",
        f"NTE|1||{note}",
    ]
    return ("\r".join(segments) + "\r").encode()


def hold(control_id: str = "HOLD0001") -> bytes:
    """A schedule hold: SCH without a patient (Epic sends these for blocks)."""
    segments = [
        f"MSH|^~\\&|EPIC|HOSP|HIRO|RIO|20261120080000||SIU^S12^SIU_S12|{control_id}|P|2.5.1",
        "SCH|1|7009999999|||||||30|MIN|^^30^20261201100000|||||||||||||Booked^Booked",
        "RGS|1|A",
        "AIL|1|A|CT3^^^HOSP|||20261201100000",
    ]
    return ("\r".join(segments) + "\r").encode()
