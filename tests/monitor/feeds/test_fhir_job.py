"""A FHIR poll as the daemon and the CLI run it: only watched subjects, then re-evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from monitor.config import FhirSettings, Settings
from monitor.dispatch.fhir_poll import poll_and_evaluate
from monitor.evaluation import Evaluator, evaluate_all
from monitor.store.database import make_engine
from tests.monitor.feeds.fhir_fixtures import MRN_SYSTEM, appointment, location, patient
from tests.monitor.feeds.fhir_server import FhirTestServer
from tests.monitor.trial_setup import NOW, cli, finding_rows, load_examples

WEEK_72 = "ONC-2101:2101-001:extended_restaging#2"
RESEARCH_CT = {"coding": [{"system": "urn:oid:1.2.3.4", "code": "IMG1234", "display": "CT CAP W CONTRAST"}]}


@pytest.fixture
def store(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    load_examples(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def server() -> Iterator[FhirTestServer]:
    with FhirTestServer() as running:
        # E10001 is subject 2101-001 of ONC-2101 (and of NEU-4405); E99999 is enrolled nowhere.
        running.add(patient("pat.enrolled", "E10001"), patient("pat.other", "E99999"), location())
        running.add(appointment("ap.1", serviceType=[RESEARCH_CT], patient_ref="Patient/pat.enrolled"))
        running.add(appointment("ap.2", patient_ref="Patient/pat.other"))
        yield running


def _settings(server: FhirTestServer, url: str) -> Settings:
    fhir = FhirSettings(enabled=True, base_url=server.base_url, mrn_system=MRN_SYSTEM, max_retries=0)
    return Settings.model_validate({"database": {"url": url}, "fhir": fhir.model_dump()})


def test_a_polled_booking_for_an_enrolled_subject_opens_its_finding(
    store: Engine, database_url: str, server: FhirTestServer
) -> None:
    settings = _settings(server, database_url)
    evaluate_all(store, settings, NOW)
    assert {row.kind for row in finding_rows(store, occurrence_key=WEEK_72)} == {"due_unscheduled"}

    result = poll_and_evaluate(store, settings, Evaluator(store, settings), clock=lambda: NOW)

    assert result.ok and result.applied == 1
    asked = {seen.query["identifier"][0].split("|")[1] for seen in server.requests_for("Patient")}
    assert "E99999" not in asked and "E10001" in asked  # minimum necessary: watched subjects only
    rows = {row.kind: row.status for row in finding_rows(store, occurrence_key=WEEK_72)}
    assert rows == {"in_window": "open", "due_unscheduled": "resolved"}


def test_fhir_poll_once_prints_counts_without_identifiers(
    store: Engine,
    database_url: str,
    server: FhirTestServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "hiro.toml"
    config.write_text(
        f'[fhir]\nenabled = true\nbase_url = "{server.base_url}"\n'
        f'mrn_system = "{MRN_SYSTEM}"\nmax_retries = 0\n'
    )
    code, out, _ = cli(capsys, database_url, "--config", str(config), "fhir", "poll", "--once")
    assert code == 0
    assert "poll ok: 1 resources, 1 applied" in out
    assert "E10001" not in out and "pat.enrolled" not in out


def test_fhir_poll_without_a_server_says_so(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, database_url, "fhir", "poll", "--once")
    assert code == 2 and "fhir.base_url is not set" in out
