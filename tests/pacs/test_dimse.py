"""Reading study metadata over DIMSE C-FIND from a live Orthanc: the same studies, series and
values as over DICOMweb, and failing clearly when the PACS does."""

from __future__ import annotations

import argparse
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from pydicom.dataset import Dataset
from pynetdicom import AE, evt

from monitor.commands.pacs import cmd_poll
from monitor.config import PacsSettings, Settings
from monitor.pacs.dimse import DimseReader, dimse_reader
from monitor.pacs.orthanc import CALLING_AET, DICOM_AET, OrthancServer, orthanc_available
from monitor.pacs.reader import DicomWebReader, PacsError, dicomweb_reader
from monitor.pacs.readers import pacs_reader
from monitor.pacs.synthetic import StudySpec, ct_study, datasets, mr_study, pet_study
from rules import load_protocol
from rules.acquisition import Acquisition, check_study
from tests.tls import make_certificate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "trials"
DAY = date(2026, 12, 1)
FIND = "1.2.840.10008.5.1.4.1.2.2.1"  # Study Root Query/Retrieve Information Model - FIND


def _rules(name: str, exam: str) -> Acquisition:
    trial = load_protocol((EXAMPLES / name).read_text(), name)
    acquisition = trial.versions[-1].exams[exam].acquisition
    assert acquisition is not None
    return acquisition


def _dimse(port: int, **more: object) -> PacsSettings:
    return PacsSettings.model_validate(
        {
            "enabled": True,
            "protocol": "dimse",
            "host": "127.0.0.1",
            "port": port,
            "called_ae": DICOM_AET,
            "calling_ae": CALLING_AET,
            **more,
        }
    )


def _readers(pacs: OrthancServer) -> tuple[DimseReader, DicomWebReader]:
    return dimse_reader(_dimse(pacs.dicom_port)), dicomweb_reader(
        PacsSettings(enabled=True, dicomweb_url=pacs.dicomweb_url)
    )


def test_the_studies_of_a_date_range_are_listed_as_over_dicomweb(pacs: OrthancServer) -> None:
    pacs.store(datasets(ct_study(study_date=DAY)))
    pacs.store(datasets(mr_study(study_date=date(2026, 11, 20), instances=2)))
    dimse, web = _readers(pacs)
    (listing,) = dimse.studies(date(2026, 11, 29), DAY)
    assert (listing.accession, listing.patient_id, listing.study_date) == (
        "TESTACC-CT-0001",
        "TEST-CT-0001",
        DAY,
    )
    assert (listing.modalities, listing.instances, listing.series) == (("CT",), 42, 2)
    assert dimse.requests == 2  # the association and its C-FIND
    assert sorted(dimse.studies(date(2026, 11, 1), DAY), key=lambda found: found.uid) == sorted(
        web.studies(date(2026, 11, 1), DAY), key=lambda found: found.uid
    )


def test_a_ct_with_thick_slices_reads_as_over_dicomweb_and_breaks_the_example_rule(
    pacs: OrthancServer,
) -> None:
    pacs.store(datasets(ct_study(study_date=DAY, slice_thickness=7.5, axial_instances=25)))
    dimse, web = _readers(pacs)
    (listing,) = dimse.studies(DAY, DAY)
    acquisition = _rules("onc-2101-recist-ct.toml", "ct_cap")
    before = dimse.requests
    study = dimse.study(listing, acquisition.attributes())
    assert dimse.requests - before == 1 + 1 + 2  # the association, the series, the images of each
    scout, axial = study.series
    assert (scout.name, scout.instances, axial.name, axial.instances) == (
        "1 Scout",
        2,
        "2 PORTAL VENOUS 7.5mm",
        25,
    )
    assert axial.values["SliceThickness"] == (("7.5",),)
    assert axial.values["KVP"] == (("120",),) and axial.values["DeviceSerialNumber"] == (("SYN-CT-0001",),)
    assert axial.values["ImageType"] == (("ORIGINAL", "PRIMARY", "AXIAL"),)
    assert scout.values["SliceThickness"] == ((),)  # Type 2, empty: present but without a value
    over_web = web.study(listing, acquisition.attributes())
    assert [(s.name, s.instances, s.modality) for s in study.series] == [
        (s.name, s.instances, s.modality) for s in over_web.series
    ]
    assert [dict(s.values) for s in study.series] == [dict(s.values) for s in over_web.series]
    (deviation,) = check_study(acquisition, study).deviations
    assert (deviation.series, deviation.attribute, deviation.actual) == (
        "2 PORTAL VENOUS 7.5mm",
        "SliceThickness",
        "7.5",
    )
    assert check_study(acquisition, over_web) == check_study(acquisition, study)


@pytest.mark.parametrize(
    ("spec", "protocol", "exam"),
    [
        (
            ct_study(study_date=DAY, slice_thickness=2.5, axial_instances=4),
            "onc-2101-recist-ct.toml",
            "ct_cap",
        ),
        (mr_study(study_date=DAY, slice_thickness=1.0, instances=3), "neu-4405-mri-rano.toml", "mri_brain"),
        (
            pet_study(
                study_date=DAY, injection_time="081500", uptake_minutes=85, ct_instances=2, pet_instances=3
            ),
            "lym-3302-fdg-pet.toml",
            "fdg_pet_ct",
        ),
    ],
    ids=["ct", "mr", "pet"],
)
def test_every_example_study_reads_and_checks_the_same_over_both_protocols(
    pacs: OrthancServer, spec: StudySpec, protocol: str, exam: str
) -> None:
    pacs.store(datasets(spec))
    dimse, web = _readers(pacs)
    (listing,) = dimse.studies(DAY, DAY)
    acquisition = _rules(protocol, exam)
    study = dimse.study(listing, acquisition.attributes())
    assert study == web.study(listing, acquisition.attributes())
    assert check_study(acquisition, study) == check_study(
        acquisition, web.study(listing, acquisition.attributes())
    )


def test_pet_uptake_comes_from_the_sequence_orthanc_returns_to_a_c_find(pacs: OrthancServer) -> None:
    pacs.store(datasets(pet_study(study_date=DAY, injection_time="081500", uptake_minutes=85)))
    dimse, _ = _readers(pacs)
    (listing,) = dimse.studies(DAY, DAY)
    acquisition = _rules("lym-3302-fdg-pet.toml", "fdg_pet_ct")
    study = dimse.study(listing, acquisition.attributes())
    assert study.series[1].values["RadiopharmaceuticalStartTime"] == (("081500",),)
    rows = {(c.series, c.attribute): (c.actual, c.passed) for c in check_study(acquisition, study).checks}
    assert rows[("2 PET WB AC", "UptakeMinutes")] == ("87.0", False)  # the PET starts 2 minutes in
    assert rows[("2 PET WB AC", "Radiopharmaceutical")][1] is True


def test_the_poll_reads_over_the_configured_protocol(pacs: OrthancServer) -> None:
    assert isinstance(pacs_reader(_dimse(pacs.dicom_port)), DimseReader)
    assert isinstance(pacs_reader(PacsSettings(dicomweb_url=pacs.dicomweb_url)), DicomWebReader)


@pytest.fixture
def silent() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


@pytest.fixture
def garbage() -> Iterator[int]:
    """A port that answers anything with an HTTP error."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def answer() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    listener.close()


def _closed_port() -> int:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port: int = closed.getsockname()[1]
    closed.close()
    return port


def _fails(settings: PacsSettings, words: str) -> None:
    with pytest.raises(PacsError) as raised:
        list(dimse_reader(settings).studies(date(2026, 11, 30), DAY))
    message = str(raised.value)
    assert words in message, message
    assert "2026" not in message and "1130" not in message


def test_a_pacs_that_is_down_slow_or_answers_garbage_is_a_pacs_error_without_the_query(
    silent: int, garbage: int
) -> None:
    _fails(_dimse(_closed_port()), "cannot be reached")
    _fails(_dimse(silent, request_timeout_seconds=0.3), "did not answer in time")
    _fails(_dimse(garbage), "not DICOM")


def test_a_pacs_that_does_not_know_our_ae_titles_is_a_pacs_error_without_the_query(
    pacs: OrthancServer,
) -> None:
    pacs.store(datasets(ct_study(study_date=DAY)))
    _fails(
        _dimse(pacs.dicom_port, called_ae="NOTHERE"),
        "rejected the association: Called AE title not recognised",
    )
    # Orthanc closes the connection right behind its A-ASSOCIATE-RJ for an unknown caller; on a
    # busy machine the close can overtake the rejection (seen once in CI). Either way the
    # query fails, without the query in the message.
    with pytest.raises(PacsError) as raised:
        list(dimse_reader(_dimse(pacs.dicom_port, calling_ae="STRANGER")).studies(date(2026, 11, 30), DAY))
    assert str(raised.value) in (
        "the PACS rejected the association: Calling AE title not recognised",
        "the PACS closed the connection",
    )


class _FakePacs:
    """pynetdicom as a PACS whose C-FIND answers are ``handler``'s (a thread of its own)."""

    def __init__(self, handler: Callable[[Any], Iterator[tuple[int, Dataset | None]]]) -> None:
        ae = AE(ae_title=DICOM_AET)
        ae.add_supported_context(FIND)
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_FIND, handler)])
        self.port: int = self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()


def test_a_query_that_fails_or_is_never_answered_is_a_pacs_error_without_the_query() -> None:
    release = threading.Event()

    def failing(_: Any) -> Iterator[tuple[int, Dataset | None]]:
        yield 0xC001, None  # Unable to process

    def stalling(_: Any) -> Iterator[tuple[int, Dataset | None]]:
        release.wait(10)
        yield 0x0000, None

    def invalid(_: Any) -> Iterator[tuple[int, Dataset | None]]:
        answer = Dataset()
        answer.StudyInstanceUID = "1.2.3"
        answer.add_new(0x00201208, "LO", "many")  # NumberOfStudyRelatedInstances, IS: not a number
        yield 0xFF00, answer
        yield 0x0000, None

    fakes = [_FakePacs(failing), _FakePacs(stalling), _FakePacs(invalid)]
    try:
        _fails(_dimse(fakes[0].port), "refused a query (C-FIND status 0xC001")
        _fails(_dimse(fakes[1].port, request_timeout_seconds=0.3), "did not answer in time")
        # A value that is not valid for its VR is left out, the rest of the answer is read.
        (listing,) = dimse_reader(_dimse(fakes[2].port)).studies(DAY, DAY)
        assert (listing.uid, listing.instances) == ("1.2.3", 0)
    finally:
        release.set()
        for fake in fakes:
            fake.close()


def test_dimse_over_tls_checks_the_pacs_and_shows_our_certificate(tmp_path: Path) -> None:
    reason = orthanc_available()
    if reason is not None:
        pytest.skip(reason)
    folders = {name: tmp_path / name for name in ("pacs", "ours", "stranger")}
    for folder in folders.values():
        folder.mkdir()
    pacs_cert, pacs_key = make_certificate(folders["pacs"])
    our_cert, our_key = make_certificate(folders["ours"])
    stranger_cert, stranger_key = make_certificate(folders["stranger"])
    with OrthancServer(tmp_path / "orthanc", dicom_tls=(pacs_cert, pacs_key, our_cert)) as server:
        server.store(datasets(mr_study(study_date=DAY, instances=1)))
        ours = {"certificate_file": str(our_cert), "private_key_file": str(our_key)}
        settings = _dimse(server.dicom_port, tls=True, ca_file=str(pacs_cert), **ours)
        assert len(list(dimse_reader(settings).studies(DAY, DAY))) == 1
        _fails(
            _dimse(server.dicom_port, tls=True, ca_file=str(stranger_cert), **ours),
            "cannot be reached (or the TLS handshake failed)",
        )
        strange = {"certificate_file": str(stranger_cert), "private_key_file": str(stranger_key)}
        _fails(
            _dimse(server.dicom_port, tls=True, ca_file=str(pacs_cert), **strange), "closed the connection"
        )
        _fails(_dimse(server.dicom_port), "closed the connection")  # no TLS to a TLS port


def test_dimse_settings_are_checked() -> None:
    for title in ("", " " * 4, "A" * 17, "BACK\\SLASH", "TAB\tBED", "ÉCHO"):
        with pytest.raises(ValidationError, match="AE title"):
            PacsSettings(calling_ae=title)
    with pytest.raises(ValidationError, match="AE title"):
        PacsSettings(called_ae="x" * 17)
    with pytest.raises(ValidationError, match="certificate_file and private_key_file"):
        PacsSettings(tls=True, certificate_file="cert.pem")
    with pytest.raises(ValidationError):
        PacsSettings(port=0)
    assert PacsSettings(protocol="dimse", called_ae="PACS 1", calling_ae="A").called_ae == "PACS 1"


def test_a_poll_over_dimse_needs_the_host(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(pacs=PacsSettings(enabled=True, protocol="dimse", dicomweb_url="http://x"))
    assert cmd_poll(settings, argparse.Namespace(once=True)) == 2
    assert "pacs.host is not set" in capsys.readouterr().out
