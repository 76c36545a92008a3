"""One FHIR poll end to end: a real local FHIR server, a real store (SQLite file, PostgreSQL)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from monitor.config import FhirSettings, Settings
from monitor.feeds.fhir.poller import PollResult, poll_once
from monitor.store.database import make_engine
from monitor.store.schema import exam_events, exams, feed_polls, messages
from tests.monitor.feeds.fhir_fixtures import (
    BIRTH_DATE,
    FAMILY_NAME,
    MRN,
    MRN_SYSTEM,
    OTHER_MRN,
    PATIENT_ID,
    PATIENT_NAME,
    SSN,
    appointment,
    device,
    location,
    patient,
    service_request,
)
from tests.monitor.feeds.fhir_server import FhirTestServer

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def server() -> Iterator[FhirTestServer]:
    with FhirTestServer() as running:
        running.add(patient(), service_request(), location(), device(), appointment())
        yield running


def _settings(server: FhirTestServer, **fhir: Any) -> Settings:
    values: dict[str, Any] = {
        "enabled": True,
        "base_url": server.base_url,
        "mrn_system": MRN_SYSTEM,
        "max_retries": 0,
    }
    return Settings(fhir=FhirSettings(**{**values, **fhir}))


def _poll(
    engine: Engine, server: FhirTestServer, mrns: tuple[str, ...] = (MRN,), now: datetime = NOW, **fhir: Any
) -> PollResult:
    return poll_once(engine, _settings(server, **fhir), lambda: list(mrns), clock=lambda: now)


def _rows(engine: Engine, table: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(table).order_by(table.c.id)).mappings()]


def test_per_patient_poll_finds_the_patient_by_mrn_and_applies_the_appointment(
    engine: Engine, server: FhirTestServer
) -> None:
    result = _poll(engine, server)
    assert (result.ok, result.resources, result.accepted, result.applied, result.rejected) == (
        True,
        1,
        1,
        1,
        0,
    )
    [lookup] = server.requests_for("Patient")
    assert lookup.query["identifier"] == [f"{MRN_SYSTEM}|{MRN}"]
    [search] = server.requests_for("Appointment")
    assert search.query["patient"] == [PATIENT_ID]
    assert search.query["date"] == ["ge2026-11-23T12:00:00Z", "lt2027-03-25T12:00:00Z"]
    assert "Appointment:patient" in search.query["_include"]
    [exam] = _rows(engine, exams)
    assert (exam["source"], exam["external_id"], exam["status"], exam["mrn"]) == (
        "epic-fhir",
        "eAp.1-2026",
        "scheduled",
        MRN,
    )
    assert exam["start_at"] == datetime(2026, 12, 1, 15, 30, tzinfo=UTC)
    assert (exam["procedure_code"], exam["location"]) == ("418891003", "CT3 Main Radiology")
    [message] = _rows(engine, messages)
    assert (message["feed"], message["message_type"], message["control_id"], message["outcome"]) == (
        "epic-fhir",
        "Appointment",
        "eAp.1-2026/_history/1",
        "accepted",
    )
    assert json.loads(message["payload"]) == appointment()
    [poll] = _rows(engine, feed_polls)
    assert (poll["ok"], poll["resources"], poll["accepted"], poll["rejected"], poll["error"]) == (
        True,
        1,
        1,
        0,
        "",
    )
    assert poll["started_at"] == NOW and poll["finished_at"] == NOW


def test_re_polling_unchanged_resources_changes_nothing(engine: Engine, server: FhirTestServer) -> None:
    _poll(engine, server)
    before = [_rows(engine, t) for t in (messages, exams, exam_events)]
    again = _poll(engine, server, now=NOW + timedelta(minutes=5))
    assert (again.ok, again.accepted, again.applied, again.unchanged) == (True, 1, 0, 1)
    assert [_rows(engine, t) for t in (messages, exams, exam_events)] == before


def test_a_new_version_with_a_moved_start_is_applied_as_a_reschedule(
    engine: Engine, server: FhirTestServer
) -> None:
    _poll(engine, server)
    server.add(appointment(version="2", start="2026-12-02T09:30:00-06:00", end="2026-12-02T10:15:00-06:00"))
    result = _poll(engine, server, now=NOW + timedelta(minutes=5))
    assert result.applied == 1
    [exam] = _rows(engine, exams)
    assert exam["start_at"] == datetime(2026, 12, 2, 15, 30, tzinfo=UTC)
    assert [e["kind"] for e in _rows(engine, exam_events)] == ["booked", "rescheduled"]


def test_a_change_in_a_referenced_order_is_applied_though_the_appointment_version_stayed(
    engine: Engine, server: FhirTestServer
) -> None:
    _poll(engine, server)
    server.add(service_request(code="IMG9999"))
    changed = _poll(engine, server, now=NOW + timedelta(minutes=5))
    server.add(service_request())
    flipped_back = _poll(engine, server, now=NOW + timedelta(minutes=10))
    assert (changed.applied, flipped_back.applied) == (1, 1)
    rows = _rows(engine, messages)
    assert [(r["dedupe_key"] is None, r["key_reused"], r["original_id"]) for r in rows] == [
        (False, 0, None),
        (True, 1, rows[0]["id"]),
        (True, 1, rows[0]["id"]),
    ]
    assert _rows(engine, exams)[0]["extra"]["order_code"] == "IMG5521"
    assert _poll(engine, server, now=NOW + timedelta(minutes=15)).applied == 0


def test_one_bad_resource_never_stops_the_poll(engine: Engine, server: FhirTestServer) -> None:
    server.add(
        appointment("bad.status-1", status="tentative"),
        appointment("no.patient", patient_ref="Practitioner/pr-9"),
    )
    server.extra_entries += [
        {"fullUrl": "x", "resource": {"fullUrl": "y", "resource": appointment("nested.1")}},
        {**appointment("unwrapped.2"), "search": {"mode": "match"}},
    ]
    result = _poll(engine, server, mode="date_range")  # a hold has no patient to search by
    assert result.ok
    assert (result.resources, result.accepted, result.rejected, result.skipped) == (5, 1, 3, 1)
    assert sorted(str(p) for p in result.problems) == [
        "Appointment/bad.status-1: Appointment.status 'tentative' is not an appointment status",
        "Appointment/nested.1: bundle entry nested inside an entry",
        "Appointment/unwrapped.2: bundle entry without its resource wrapper",
    ]
    outcomes = sorted((r["control_id"], r["outcome"], r["error_code"]) for r in _rows(engine, messages))
    assert outcomes == [
        ("bad.status-1/_history/1", "rejected", "103"),
        ("eAp.1-2026/_history/1", "accepted", ""),
        ("nested.1", "rejected", "100"),
        ("no.patient/_history/1", "skipped", ""),
        ("unwrapped.2", "rejected", "100"),
    ]
    again = _poll(engine, server, now=NOW + timedelta(minutes=5), mode="date_range")
    # Both of its searches return the malformed entries: reported once, not stored again (the
    # bad status was not updated since, so the incremental search does not return it).
    assert (again.rejected, len(_rows(engine, messages))) == (2, 5)


@pytest.mark.corpus
def test_corpus_malformed_entries_are_skipped_beside_a_good_appointment(
    engine: Engine, server: FhirTestServer, corpus_dir: Path
) -> None:
    def entry(name: str) -> Any:
        return json.loads((corpus_dir / "fhir" / name).read_text())["entry"][0]

    server.extra_entries += [
        entry("cerner-millennium__Bundle-Appointment-searchset-nested-entry-docbug.json"),
        entry("nhs-bars__Bundle-ServiceRequest-searchset-MALFORMED-entry-without-resource-wrapper.json"),
    ]
    result = _poll(engine, server)
    assert (result.ok, result.accepted, result.rejected) == (True, 1, 2)
    assert {p.resource_id for p in result.problems} == {"4822366", "71d2b38e-b81c-4894-a522-6a65265b1d58"}


@pytest.mark.corpus
def test_invalid_json_for_one_patient_does_not_stop_the_others(
    engine: Engine, server: FhirTestServer, corpus_dir: Path
) -> None:
    server.add(patient("pt.2", OTHER_MRN))
    invalid = (
        corpus_dir / "fhir" / "ronin-interop-ehr__cerner-R4-Patient-INVALID-JSON-bad-escape.json"
    ).read_bytes()
    server.raw_searches[f"Patient?identifier={MRN_SYSTEM}|{OTHER_MRN}"] = invalid
    result = _poll(engine, server, mrns=(OTHER_MRN, MRN))
    assert not result.ok
    assert result.error == "Patient search for patient 1 of 2: invalid JSON (line 1264, column 28)"
    assert result.accepted == 1  # the second patient's appointment
    [poll] = _rows(engine, feed_polls)
    assert (poll["ok"], poll["accepted"]) == (False, 1) and "invalid JSON" in poll["error"]


def test_invalid_json_search_page_is_stored_as_rejected(engine: Engine, server: FhirTestServer) -> None:
    server.raw_searches[f"Appointment?patient={PATIENT_ID}"] = b'{"resourceType": "Bundle", "entry": [\\x]}'
    result = _poll(engine, server)
    assert not result.ok and "invalid JSON (line 1, column 38)" in result.error
    [row] = _rows(engine, messages)
    assert (row["message_type"], row["outcome"], row["payload"]) == (
        "Bundle",
        "rejected",
        b'{"resourceType": "Bundle", "entry": [\\x]}',
    )


def test_date_range_mode_searches_incrementally_after_a_successful_poll(
    engine: Engine, server: FhirTestServer
) -> None:
    first = _poll(engine, server, mode="date_range")
    assert first.accepted == 1
    [whole] = server.requests_for("Appointment")
    assert (
        whole.query["date"] == ["ge2026-11-23T12:00:00Z", "lt2027-03-25T12:00:00Z"]
        and "_lastUpdated" not in whole.query
    )
    server.seen.clear()
    server.add(appointment("later.1", last_updated="2026-11-25T12:30:00Z"))
    second = _poll(engine, server, now=NOW + timedelta(hours=1), mode="date_range")
    changed, new_days = server.requests_for("Appointment")
    assert changed.query["_lastUpdated"] == ["gt2026-11-25T11:59:00Z"]
    assert changed.query["date"] == [
        "ge2026-11-23T13:00:00Z"
    ]  # no upper bound: moves beyond the window are heard of
    assert new_days.query["date"] == ["ge2027-03-25T12:00:00Z", "lt2027-03-25T13:00:00Z"]
    assert (second.ok, second.resources, second.applied) == (True, 1, 1)


def test_failed_poll_does_not_move_the_incremental_start(engine: Engine, server: FhirTestServer) -> None:
    _poll(engine, server, mode="date_range")
    server.raw_searches["Appointment"] = b"not json"
    assert not _poll(engine, server, now=NOW + timedelta(hours=1), mode="date_range").ok
    del server.raw_searches["Appointment"]
    server.seen.clear()
    _poll(engine, server, now=NOW + timedelta(hours=2), mode="date_range")
    assert server.requests_for("Appointment")[0].query["_lastUpdated"] == ["gt2026-11-25T11:59:00Z"]


def test_without_include_support_each_reference_is_read_once_per_poll(engine: Engine) -> None:
    with FhirTestServer(includes=()) as server:
        server.add(patient(), service_request(), location(), device(), appointment(), appointment("eAp.2"))
        result = _poll(engine, server)
        assert result.accepted == 2
        assert "_include" not in server.requests_for("Appointment")[0].query
        reads = sorted(s.path for s in server.seen if s.path.count("/") == 1)
        assert reads == [
            "Device/dev.ct3",
            "Location/loc-CT3",
            "ServiceRequest/sr.1001",
        ]  # the Patient came from its search
        assert {e["mrn"] for e in _rows(engine, exams)} == {MRN}


def test_stu3_server_and_operation_outcomes_are_recorded_as_warnings(engine: Engine) -> None:
    with FhirTestServer(fhir_version="3.0.2") as server:
        server.add(patient(), appointment())
        server.extra_entries.append(
            {
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "warning", "code": "processing"}],
                },
                "search": {"mode": "outcome"},
            }
        )
        result = _poll(engine, server)
    assert result.ok and result.accepted == 1
    assert result.warnings == (
        "server speaks FHIR 3.0.2 (STU3), not R4: Appointments read as R4",
        "Appointment search: the server reported an issue (warning processing)",
    )
    [poll] = _rows(engine, feed_polls)
    assert poll["ok"] and poll["error"].startswith("warning: server speaks FHIR 3.0.2 (STU3)")


def test_an_unknown_patient_is_a_warning_and_a_missing_mrn_system_an_error(
    engine: Engine, server: FhirTestServer
) -> None:
    result = _poll(engine, server, mrns=("NOT-ENROLLED-HERE",))
    assert result.ok and result.resources == 0
    assert result.warnings[-1] == "an enrolled patient was not found by MRN"
    failed = _poll(engine, server, mrn_system="")
    assert not failed.ok and failed.error == "fhir.mrn_system is required in per_patient mode"


def test_a_server_that_ignores_the_identifier_never_makes_us_poll_other_patients(
    engine: Engine, server: FhirTestServer
) -> None:
    server.add(patient("pt.2", OTHER_MRN), appointment("other.1", patient_ref="Patient/pt.2"))
    server.ignored_params = {"identifier"}
    result = _poll(engine, server)
    assert [s.query["patient"] for s in server.requests_for("Appointment")] == [[PATIENT_ID]]
    assert "Patient search returned a patient without the MRN asked for: ignored" in result.warnings
    assert [e["external_id"] for e in _rows(engine, exams)] == ["eAp.1-2026"]


def test_a_server_that_ignores_the_patient_parameter_never_makes_us_store_other_schedules(
    engine: Engine, server: FhirTestServer
) -> None:
    server.add(patient("pt.2", OTHER_MRN), appointment("other.1", patient_ref="Patient/pt.2"))
    server.ignored_params = {"patient"}
    result = _poll(engine, server)
    assert (result.ok, result.resources, result.accepted) == (True, 1, 1)
    assert "Appointment search returned other patients' appointments: ignored" in result.warnings
    assert [e["external_id"] for e in _rows(engine, exams)] == ["eAp.1-2026"]
    assert all("other.1" not in str(m["payload"]) for m in _rows(engine, messages))


def test_mrn_is_escaped_in_the_identifier_search(engine: Engine, server: FhirTestServer) -> None:
    _poll(engine, server, mrns=("A|B,1",))
    assert server.requests_for("Patient")[0].query["identifier"] == [f"{MRN_SYSTEM}|A\\|B\\,1"]


def test_a_server_that_is_down_fails_the_poll_and_records_why(engine: Engine) -> None:
    with FhirTestServer() as server:
        settings = _settings(server)
    result = poll_once(engine, settings, lambda: [MRN], clock=lambda: NOW)
    assert not result.ok and "connection failed after 1 attempts" in result.error
    [poll] = _rows(engine, feed_polls)
    assert not poll["ok"] and poll["finished_at"] == NOW


def test_poll_logs_and_stored_errors_carry_no_phi(
    engine: Engine, server: FhirTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.add(appointment("bad.status-1", status="tentative"))
    server.raw_searches[f"Patient?identifier={MRN_SYSTEM}|{OTHER_MRN}"] = b"{broken"
    _poll(engine, server, mrns=(MRN, OTHER_MRN))
    stored = " ".join(str(r["error"]) for t in (messages, feed_polls) for r in _rows(engine, t))
    for secret in (MRN, OTHER_MRN, PATIENT_ID, PATIENT_NAME, FAMILY_NAME, BIRTH_DATE, SSN):
        assert secret not in caplog.text
        assert secret not in stored
