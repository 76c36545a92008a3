"""Synthetic FHIR resources written for these tests (the corpus is read, never copied)."""

from __future__ import annotations

from typing import Any

MRN_SYSTEM = "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.14"
MRN = "E4410027"
OTHER_MRN = "E4410099"
PATIENT_ID = "eX1.pt-77a"
PATIENT_NAME = "Zebulon"
FAMILY_NAME = "Quixwright"
BIRTH_DATE = "1957-03-14"
SSN = "555-44-3210"


def patient(pid: str = PATIENT_ID, mrn: str = MRN) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"versionId": "1", "lastUpdated": "2026-11-01T08:00:00Z"},
        "identifier": [
            {"use": "usual", "system": "urn:oid:2.16.840.1.113883.4.1", "value": SSN},
            {"use": "usual", "type": {"text": "MRN"}, "system": MRN_SYSTEM, "value": mrn},
            {"system": "urn:oid:1.2.840.114350.1.13.0.1.7.2.698084", "value": f"EPI{mrn}"},
        ],
        "name": [{"family": FAMILY_NAME, "given": [PATIENT_NAME]}],
        "birthDate": BIRTH_DATE,
        "gender": "female",
    }


def service_request(srid: str = "sr.1001", code: str = "IMG5521") -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": srid,
        "status": "active",
        "intent": "order",
        "identifier": [
            {"type": {"coding": [{"code": "PLAC"}]}, "value": "ORD-88121"},
            {"type": {"coding": [{"code": "ACSN"}]}, "value": "ACC-55120"},
        ],
        "code": {
            "coding": [
                {
                    "system": "urn:oid:1.2.840.114350.1.13.0.1.7.2.696580",
                    "code": code,
                    "display": "CT CHEST W CONTRAST",
                }
            ],
            "text": "CT chest with contrast",
        },
        "subject": {"reference": f"Patient/{PATIENT_ID}", "display": f"{FAMILY_NAME}, {PATIENT_NAME}"},
        "note": [{"text": "Research scan: ONC-123 week 12"}],
    }


def location(lid: str = "loc-CT3", name: str = "CT3 Main Radiology") -> dict[str, Any]:
    return {"resourceType": "Location", "id": lid, "name": name}


def device(did: str = "dev.ct3") -> dict[str, Any]:
    return {"resourceType": "Device", "id": did, "identifier": [{"value": "SCANNER-CT3"}]}


def appointment(
    aid: str = "eAp.1-2026",
    *,
    status: str = "booked",
    start: str = "2026-12-01T09:30:00-06:00",
    end: str = "2026-12-01T10:15:00-06:00",
    version: str = "1",
    last_updated: str = "2026-11-20T12:00:00Z",
    patient_ref: str = f"Patient/{PATIENT_ID}",
    **fields: Any,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": aid,
        "meta": {"versionId": version, "lastUpdated": last_updated},
        "status": status,
        "serviceType": [
            {"coding": [{"system": "http://snomed.info/sct", "code": "418891003", "display": "CT of chest"}]}
        ],
        "start": start,
        "end": end,
        "minutesDuration": 45,
        "comment": "Arrive 30 minutes early for contrast",
        "participant": [
            {
                "actor": {"reference": patient_ref, "display": f"{FAMILY_NAME}, {PATIENT_NAME}"},
                "status": "accepted",
            },
            {"actor": {"reference": "Location/loc-CT3", "display": "CT3"}, "status": "accepted"},
            {"actor": {"reference": "Device/dev.ct3"}, "status": "accepted"},
            {"actor": {"reference": "Practitioner/pr-9", "display": "Dr Radiologist"}, "status": "accepted"},
        ],
        "basedOn": [{"reference": "ServiceRequest/sr.1001"}],
    }
    resource.update(fields)
    return resource
