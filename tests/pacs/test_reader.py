"""Reading study metadata over DICOMweb from a live Orthanc, and failing clearly when the PACS does."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from monitor.config import PacsSettings
from monitor.pacs.orthanc import OrthancServer, orthanc_available
from monitor.pacs.reader import PacsError, dicomweb_reader
from monitor.pacs.synthetic import ct_study, datasets, mr_study, pet_study
from rules import load_protocol
from rules.acquisition import check_study

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "trials"
DAY = date(2026, 12, 1)


def _rules(name: str, exam: str):  # type: ignore[no-untyped-def]
    trial = load_protocol((EXAMPLES / name).read_text(), name)
    acquisition = trial.versions[-1].exams[exam].acquisition
    assert acquisition is not None
    return acquisition


def _settings(url: str, **more: object) -> PacsSettings:
    return PacsSettings.model_validate({"enabled": True, "dicomweb_url": url, **more})


def test_the_studies_of_a_date_range_are_listed_with_their_numbers(pacs: OrthancServer) -> None:
    pacs.store(datasets(ct_study(study_date=DAY)))
    pacs.store(datasets(mr_study(study_date=date(2026, 11, 20), instances=2)))
    reader = dicomweb_reader(_settings(pacs.dicomweb_url))
    (listing,) = reader.studies(date(2026, 11, 29), DAY)
    assert (listing.accession, listing.patient_id, listing.study_date) == (
        "TESTACC-CT-0001",
        "TEST-CT-0001",
        DAY,
    )
    assert (listing.modalities, listing.instances, listing.series) == (("CT",), 42, 2)
    assert len(list(reader.studies(date(2026, 11, 1), DAY))) == 2


def test_a_ct_with_thick_slices_is_read_page_by_page_and_breaks_the_example_rule(pacs: OrthancServer) -> None:
    pacs.store(datasets(ct_study(study_date=DAY, slice_thickness=7.5, axial_instances=25)))
    reader = dicomweb_reader(_settings(pacs.dicomweb_url, page_size=10))
    (listing,) = reader.studies(DAY, DAY)
    acquisition = _rules("onc-2101-recist-ct.toml", "ct_cap")
    before = reader.requests
    study = reader.study(listing, acquisition.attributes())
    assert reader.requests - before == 1 + 3  # the series, then 27 images in pages of 10
    scout, axial = study.series
    assert (scout.name, scout.instances, axial.name, axial.instances) == (
        "1 Scout",
        2,
        "2 PORTAL VENOUS 7.5mm",
        25,
    )
    assert axial.values["SliceThickness"] == (("7.5",),)
    assert axial.values["KVP"] == (("120",),) and axial.values["DeviceSerialNumber"] == (("SYN-CT-0001",),)
    assert scout.values["SliceThickness"] == ((),)  # Type 2, empty: present but without a value
    (deviation,) = check_study(acquisition, study).deviations
    assert (deviation.series, deviation.attribute, deviation.actual) == (
        "2 PORTAL VENOUS 7.5mm",
        "SliceThickness",
        "7.5",
    )


def test_pet_uptake_comes_from_the_injection_time_inside_its_sequence(pacs: OrthancServer) -> None:
    pacs.store(datasets(pet_study(study_date=DAY, injection_time="081500", uptake_minutes=85)))
    reader = dicomweb_reader(_settings(pacs.dicomweb_url))
    (listing,) = reader.studies(DAY, DAY)
    acquisition = _rules("lym-3302-fdg-pet.toml", "fdg_pet_ct")
    study = reader.study(listing, acquisition.attributes())
    rows = {(c.series, c.attribute): (c.actual, c.passed) for c in check_study(acquisition, study).checks}
    assert rows[("2 PET WB AC", "UptakeMinutes")] == ("87.0", False)  # the PET starts 2 minutes in
    assert rows[("2 PET WB AC", "Radiopharmaceutical")][1] is True


def test_the_mr_example_rules_pass_on_a_conforming_brain_mr(pacs: OrthancServer) -> None:
    pacs.store(datasets(mr_study(study_date=DAY, slice_thickness=1.0, instances=3)))
    reader = dicomweb_reader(_settings(pacs.dicomweb_url))
    (listing,) = reader.studies(DAY, DAY)
    acquisition = _rules("neu-4405-mri-rano.toml", "mri_brain")
    assert check_study(acquisition, reader.study(listing, acquisition.attributes())).deviations == ()


def test_credentials_come_from_the_environment(tmp_path: Path) -> None:
    reason = orthanc_available()
    if reason is not None:
        pytest.skip(reason)
    with OrthancServer(tmp_path, username="hiro", password="s3cret") as server:
        server.store(datasets(mr_study(study_date=DAY, instances=1)))
        basic = _settings(server.dicomweb_url, auth="basic", username="hiro")
        assert len(list(dicomweb_reader(basic, {"HIRO_PACS_PASSWORD": "s3cret"}).studies(DAY, DAY))) == 1
        with pytest.raises(PacsError, match="HTTP 401"):
            list(dicomweb_reader(basic, {"HIRO_PACS_PASSWORD": "wrong"}).studies(DAY, DAY))


class _Garbage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>proxy error</html>" if "studies" in self.path else b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def garbage() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent() -> Iterator[str]:
    """A port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/dicom-web"
    listener.close()


def test_a_pacs_that_is_down_slow_or_answers_garbage_is_a_pacs_error_without_the_query(
    garbage: str, silent: str
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    down = f"http://127.0.0.1:{closed.getsockname()[1]}/dicom-web"
    closed.close()
    cases = [
        (_settings(down), "cannot be reached"),
        (_settings(silent, request_timeout_seconds=0.3), "did not answer in time"),
        (_settings(garbage), "not DICOM JSON"),
    ]
    for settings, words in cases:
        with pytest.raises(PacsError) as raised:
            list(dicomweb_reader(settings).studies(date(2026, 11, 30), DAY))
        assert words in str(raised.value) and "2026" not in str(raised.value)
