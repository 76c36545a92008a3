"""``hiro-monitor check-config`` with ``[pacs] enabled``: the settings are complete and the PACS
answers one ping (a QIDO-RS search for no study, or a C-ECHO), over DICOMweb and DIMSE, with
a clear line when it does not; never a patient's data in the output."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from pynetdicom import AE

from monitor.config import PacsSettings
from monitor.pacs.dimse import dimse_reader
from monitor.pacs.orthanc import CALLING_AET, DICOM_AET, OrthancServer, orthanc_available
from monitor.pacs.reader import PacsError, dicomweb_reader
from monitor.pacs.synthetic import ct_study, datasets
from monitor.store.database import make_engine, upgrade
from monitor.store.registry import store_protocol
from rules import load_protocol
from tests.monitor.trial_setup import EXAMPLES, NOW, cli

DAY = date(2026, 12, 1)
PHI = ("TEST-CT-0001", "TESTACC-CT-0001", "20261201", "2026-12-01")  # the stored study's identifiers
VERIFICATION = "1.2.840.10008.1.1"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"


@pytest.fixture(autouse=True)
def _no_pacs_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HIRO_PACS_PASSWORD", "HIRO_PACS_PASSWORD_FILE", "HIRO_PACS_TOKEN", "HIRO_PACS_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)


def _check(capsys: pytest.CaptureFixture[str], tmp_path: Path, pacs: str, url: str = "") -> tuple[int, str]:
    """``hiro-monitor check-config`` with ``[pacs]`` = ``pacs`` (TOML lines); the store at
    ``url``, else a SQLite file not created yet (a note, not a problem)."""
    config = tmp_path / "config.toml"
    config.write_text(f"[pacs]\nenabled = true\n{pacs}", encoding="utf-8")
    code, out, err = cli(
        capsys, url or f"sqlite:///{tmp_path / 'new.db'}", "--config", str(config), "check-config"
    )
    for value in PHI:
        assert value not in out and value not in err
    return code, out


def _dicomweb(url: str, more: str = "") -> str:
    return f'protocol = "dicomweb"\ndicomweb_url = "{url}"\n{more}'


def _dimse(port: int, more: str = "") -> str:
    return (
        f'protocol = "dimse"\nhost = "127.0.0.1"\nport = {port}\n'
        f'called_ae = "{DICOM_AET}"\ncalling_ae = "{CALLING_AET}"\n{more}'
    )


def _closed_port() -> int:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port: int = closed.getsockname()[1]
    closed.close()
    return port


def _pacs_lines(out: str) -> list[str]:
    """The lines of the PACS check and the PACS line of the plan."""
    return [line for line in out.splitlines() if re.match(r"(\w+ +pacs\b| +PACS poll\b)", line)]


def test_the_live_pacs_answers_over_dicomweb(
    pacs: OrthancServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pacs.store(datasets(ct_study(study_date=DAY)))
    code, out = _check(capsys, tmp_path, _dicomweb(pacs.dicomweb_url))
    assert code == 0, out
    assert f"ok       pacs {pacs.dicomweb_url} (DICOMweb): answers a QIDO-RS study search\n" in out
    assert f"  PACS poll of {pacs.dicomweb_url} (DICOMweb): every 60 s\n" in out
    assert "configuration OK" in out


def test_the_live_pacs_answers_over_dimse(
    pacs: OrthancServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pacs.store(datasets(ct_study(study_date=DAY)))
    code, out = _check(capsys, tmp_path, _dimse(pacs.dicom_port))
    assert code == 0, out
    where = f"pacs {DICOM_AET}@127.0.0.1:{pacs.dicom_port} (DIMSE, as {CALLING_AET})"
    assert f"ok       {where}: accepts our AE titles and answers a C-ECHO\n" in out
    assert "configuration OK" in out


def test_an_ae_title_the_pacs_does_not_know_is_a_problem(
    pacs: OrthancServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _check(capsys, tmp_path, _dimse(pacs.dicom_port).replace(CALLING_AET, "STRANGER"))
    assert code == 1, out
    where = f"pacs {DICOM_AET}@127.0.0.1:{pacs.dicom_port} (DIMSE, as STRANGER)"
    assert f"PROBLEM  {where}: the PACS rejected the association: Calling AE title not recognised\n" in out


def test_a_pacs_that_is_down_is_a_problem_over_either_protocol(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _closed_port()
    url = f"http://127.0.0.1:{port}/dicom-web"
    code, out = _check(capsys, tmp_path, _dicomweb(url, "request_timeout_seconds = 2\n"))
    assert code == 1, out
    assert f"PROBLEM  pacs {url} (DICOMweb): the PACS cannot be reached\n" in out
    assert "1 problem(s)" in out
    code, out = _check(capsys, tmp_path, _dimse(port, "request_timeout_seconds = 2\n"))
    assert code == 1, out
    where = f"pacs {DICOM_AET}@127.0.0.1:{port} (DIMSE, as {CALLING_AET})"
    assert f"PROBLEM  {where}: the PACS cannot be reached\n" in out
    assert "1 problem(s)" in out


def test_a_wrong_password_is_named_by_its_http_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = orthanc_available()
    if reason is not None:
        pytest.skip(reason)
    with OrthancServer(tmp_path / "orthanc", username="hiro", password="s3cret") as server:
        server.store(datasets(ct_study(study_date=DAY)))
        settings = _dicomweb(server.dicomweb_url, 'auth = "basic"\nusername = "hiro"\n')
        monkeypatch.setenv("HIRO_PACS_PASSWORD", "wrong-pass")
        code, out = _check(capsys, tmp_path, settings)
        assert code == 1, out
        assert f"PROBLEM  pacs {server.dicomweb_url} (DICOMweb): the PACS answered HTTP 401\n" in out
        assert "wrong-pass" not in out
        monkeypatch.setenv("HIRO_PACS_PASSWORD", "s3cret")
        code, out = _check(capsys, tmp_path, settings)
        assert code == 0, out
        assert "(DICOMweb): answers a QIDO-RS study search with our basic credentials\n" in out
        assert "s3cret" not in out


def test_incomplete_settings_are_problems_and_the_pacs_is_not_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _check(capsys, tmp_path, 'protocol = "dicomweb"\n')
    assert code == 1 and _pacs_lines(out) == [
        "PROBLEM  pacs: enabled but dicomweb_url is empty",
        "  PACS poll of (no dicomweb_url!) (DICOMweb): every 60 s",
    ], out
    code, out = _check(capsys, tmp_path, 'protocol = "dimse"\n')
    assert code == 1 and "PROBLEM  pacs: enabled, protocol = dimse, but host is empty\n" in out, out
    assert "C-ECHO" not in out
    url = f"http://127.0.0.1:{_closed_port()}/dicom-web"
    code, out = _check(capsys, tmp_path, _dicomweb(url, 'auth = "basic"\n'))
    assert code == 1, out
    assert "PROBLEM  pacs: auth = basic but username is empty\n" in out
    assert "PROBLEM  pacs: auth = basic but HIRO_PACS_PASSWORD is not set\n" in out
    assert "cannot be reached" not in out
    code, out = _check(capsys, tmp_path, _dicomweb(url, 'auth = "bearer"\n'))
    assert code == 1 and "PROBLEM  pacs: auth = bearer but HIRO_PACS_TOKEN is not set\n" in out, out


def test_a_disabled_pacs_is_not_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[pacs]\nenabled = false\ndicomweb_url = "http://127.0.0.1:1/x"\n', encoding="utf-8")
    code, out, _ = cli(capsys, f"sqlite:///{tmp_path / 'new.db'}", "--config", str(config), "check-config")
    assert code == 0, out
    assert _pacs_lines(out) == ["  PACS poll: off"]


@pytest.fixture
def pet_store(tmp_path: Path) -> str:
    """A store holding the LYM-3302 example protocol (a PET uptake rule: the injection time)."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url)
    upgrade(engine)
    path = EXAMPLES / "trials" / "lym-3302-fdg-pet.toml"
    text = path.read_text(encoding="utf-8")
    with engine.begin() as conn:
        store_protocol(conn, load_protocol(text, path.name), text, path.name, NOW)
    engine.dispose()
    return url


def test_rules_that_read_a_sequence_are_a_warning_over_dimse_only(
    tmp_path: Path, pet_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _closed_port()
    _, out = _check(capsys, tmp_path, _dimse(port, "request_timeout_seconds = 2\n"), pet_store)
    (warning,) = [line for line in out.splitlines() if line.startswith("WARNING  pacs:")]
    assert "protocol = dimse, and the acquisition rules of LYM-3302 fdg_pet_ct read" in warning
    assert "RadiopharmaceuticalStartTime" in warning and "RadiopharmaceuticalInformationSequence" in warning
    assert 'use protocol = "dicomweb"' in warning
    _, out = _check(capsys, tmp_path, _dicomweb(f"http://127.0.0.1:{port}/dicom-web"), pet_store)
    assert "WARNING  pacs:" not in out


class _FakePacs:
    """pynetdicom as a PACS that supports only ``services``."""

    def __init__(self, *services: str) -> None:
        ae = AE(ae_title=DICOM_AET)
        for uid in services:
            ae.add_supported_context(uid)
        self.server = ae.start_server(("127.0.0.1", 0), block=False)
        self.port: int = self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def fakes() -> Iterator[list[_FakePacs]]:
    made = [_FakePacs(FIND), _FakePacs(VERIFICATION), _FakePacs(FIND, VERIFICATION)]
    yield made
    for fake in made:
        fake.close()


def _dimse_settings(port: int) -> PacsSettings:
    return PacsSettings(
        enabled=True,
        protocol="dimse",
        host="127.0.0.1",
        port=port,
        called_ae=DICOM_AET,
        calling_ae=CALLING_AET,
    )


def test_a_dimse_ping_needs_both_c_echo_and_c_find_and_counts_its_requests(fakes: list[_FakePacs]) -> None:
    find_only, echo_only, both = fakes
    with pytest.raises(PacsError, match=r"accepts no C-ECHO \(Verification\) from this AE"):
        dimse_reader(_dimse_settings(find_only.port)).ping()
    with pytest.raises(PacsError, match="accepts no Study Root C-FIND from this AE"):
        dimse_reader(_dimse_settings(echo_only.port)).ping()
    reader = dimse_reader(_dimse_settings(both.port))
    reader.ping()
    assert reader.requests == 2  # the association and its C-ECHO


def test_a_dicomweb_ping_is_one_request_that_lists_no_study(pacs: OrthancServer) -> None:
    pacs.store(datasets(ct_study(study_date=DAY)))
    reader = dicomweb_reader(PacsSettings(enabled=True, dicomweb_url=pacs.dicomweb_url))
    reader.ping()
    assert reader.requests == 1
    assert reader.client.search_for_studies(search_filters={"StudyInstanceUID": "2.25.0"}, limit=1) == []
    with pytest.raises(PacsError, match="HTTP 400"):  # the server's root, not its DICOMweb root
        dicomweb_reader(PacsSettings(enabled=True, dicomweb_url=pacs.url)).ping()


@pytest.fixture
def core_lab_store(tmp_path: Path) -> Iterator[str]:
    """A store whose one trial (ONC-2101) sends its images to a core lab, with dates shifted."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url)
    upgrade(engine)
    path = EXAMPLES / "trials" / "onc-2101-recist-ct.toml"
    text = path.read_text(encoding="utf-8").replace('dates = "keep"', 'dates = "shift"\nshift_up_to = "90d"')
    with engine.begin() as conn:
        store_protocol(conn, load_protocol(text, path.name), text, path.name, NOW)
    engine.dispose()
    yield url


def test_the_core_labs_need_orthanc_answering_and_the_date_shift_key(
    pacs: OrthancServer,
    tmp_path: Path,
    core_lab_store: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def core_lab_lines(orthanc: str) -> list[str]:
        _, out = _check(
            capsys, tmp_path, _dicomweb(pacs.dicomweb_url, f'orthanc_url = "{orthanc}"'), core_lab_store
        )
        return [line for line in out.splitlines() if "core lab:" in line]

    monkeypatch.delenv("HIRO_DATE_SHIFT_KEY", raising=False)
    lines = core_lab_lines(pacs.url)
    assert any(
        re.match(r"ok +core lab: Orthanc 1\.\d+\.\d+ at http://127\.0\.0\.1:\d+ answers", line)
        for line in lines
    )
    assert "PROBLEM  core lab: ONC-2101 shift dates, but HIRO_DATE_SHIFT_KEY is not set" in "\n".join(lines)
    assert "ok       core lab: ONC-2101's transmittal form transmittal/default.html renders" in lines

    monkeypatch.setenv("HIRO_DATE_SHIFT_KEY", "site-secret")
    closed = f"http://127.0.0.1:{_closed_port()}"
    assert f"PROBLEM  core lab: Orthanc at {closed} cannot be reached (ConnectionError)" in core_lab_lines(
        closed
    )
    assert not [line for line in core_lab_lines(pacs.url) if line.startswith("PROBLEM")]
