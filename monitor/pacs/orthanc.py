"""A real PACS for the tests and the demo: Debian's Orthanc with its DICOMweb plugin, on free
loopback ports (never a site's PACS: the site runs its own).

``OrthancServer`` writes a configuration into its own folder (storage, index, log), starts
``Orthanc`` with it, and waits until the REST API answers. ``store`` uploads instances over
REST, ``clear`` deletes every patient so one server serves many tests, and ``stop`` ends it.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import requests
from pydicom.dataset import Dataset

from monitor.pacs.synthetic import to_bytes

ORTHANC_BINARY = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
DICOM_AET = "HIROTEST"  # Orthanc's AE title: the called AE of a C-FIND
CALLING_AET = "HIROMONITOR"  # the one peer Orthanc answers C-FIND (and C-ECHO), from 127.0.0.1
START_TIMEOUT = 30.0  # seconds
STOP_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0


def orthanc_available() -> str | None:
    """Why Orthanc cannot be started here (binary or DICOMweb plugin missing), or None."""
    if not ORTHANC_BINARY.is_file():
        return f"Orthanc is not installed ({ORTHANC_BINARY}: apt-get install orthanc)"
    if not DICOMWEB_PLUGIN.exists():
        return f"the DICOMweb plugin is not installed ({DICOMWEB_PLUGIN}: apt-get install orthanc-dicomweb)"
    return None


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class OrthancServer:
    """An Orthanc process of its own, started by ``start`` (or ``with``), ended by ``stop``."""

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        dicom_tls: tuple[Path, Path, Path] | None = None,
        aet: str = DICOM_AET,
        store_from: tuple[str, ...] = (),
    ) -> None:
        """``dicom_tls``: DICOM over TLS only, with this certificate and private key, asking
        peers for a certificate among those of the third file. ``aet``: its AE title.
        ``store_from``: AE titles that may C-STORE to it from 127.0.0.1 (a core lab's node
        takes the copies another Orthanc sends)."""
        self.aet = aet
        self.store_from = store_from
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        self.dicom_tls = dicom_tls
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="hiro-orthanc-")) if workdir is None else workdir
        self.http_port, self.dicom_port = free_ports(2)
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.dicomweb_url = f"{self.url}/dicom-web"
        self.auth = None if username is None or password is None else (username, password)
        self.config_path = self.workdir / "orthanc.json"
        self.log_path = self.workdir / "orthanc.log"
        self.session = requests.Session()
        self.session.auth = self.auth
        self._process: subprocess.Popen[bytes] | None = None

    def config(self) -> dict[str, Any]:
        """The Orthanc configuration: everything in the work folder. Orthanc binds its ports on
        every interface, so HTTP refuses other hosts, and DICOM knows one peer: ``CALLING_AET``
        from 127.0.0.1, allowed C-ECHO and C-FIND only (no store, move or get), called by
        ``DICOM_AET`` (another called AE title is rejected)."""
        return {
            "Name": "hiro-test-pacs",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowEcho": False,
            "DicomAlwaysAllowFind": False,
            "DicomCheckModalityHost": True,
            "DicomCheckCalledAet": True,
            "DicomModalities": {
                "hiro-monitor": {
                    "AET": CALLING_AET,
                    "Host": "127.0.0.1",
                    "Port": 104,  # where Orthanc would send images: never (no peer may move or get)
                    "AllowEcho": True,
                    "AllowFind": True,
                    "AllowStore": False,
                    "AllowMove": False,
                    "AllowGet": False,
                    "AllowStorageCommitment": False,
                },
                **{
                    f"sender-{index}": {"AET": aet, "Host": "127.0.0.1", "Port": 104, "AllowStore": True}
                    for index, aet in enumerate(self.store_from)
                },
            },
            # C-FIND answers attributes outside Orthanc's database (SliceThickness, KVP and the
            # like, at IMAGE level) from the stored files; "Never" would answer them empty.
            # "Always" is the default since Orthanc 1.5.1: written here so it stays so.
            "StorageAccessOnFind": "Always",
            **self._tls_config(),
            "AuthenticationEnabled": self.auth is not None,
            "RegisteredUsers": {} if self.auth is None else {self.auth[0]: self.auth[1]},
            "SaveJobs": False,
            "HttpThreadsCount": 8,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            # Host: the RetrieveURL (0008,1190) of QIDO answers would otherwise lack the port.
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "EnableWado": False,
                "Host": f"127.0.0.1:{self.http_port}",
            },
        }

    def _tls_config(self) -> dict[str, Any]:
        if self.dicom_tls is None:
            return {}
        certificate, private_key, trusted = self.dicom_tls
        return {
            "DicomTlsEnabled": True,
            "DicomTlsCertificate": str(certificate),
            "DicomTlsPrivateKey": str(private_key),
            "DicomTlsTrustedCertificates": str(trusted),
            "DicomTlsRemoteCertificateRequired": True,
        }

    def start(self) -> None:
        """Start Orthanc and wait (at most ``START_TIMEOUT``) until its REST API answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.config(), indent=2))
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [str(ORTHANC_BINARY), "--no-jobs", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_until_up()
        except BaseException:
            self.stop()
            raise

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self._process.returncode}:\n{self.log_tail()}")
            try:
                if self.session.get(f"{self.url}/system", timeout=1).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"Orthanc did not answer within {START_TIMEOUT:g} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of Orthanc's log, for error messages."""
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def store(self, datasets: Iterable[Dataset]) -> int:
        """Upload each instance (POST /instances); the number stored, counting those already there."""
        stored = 0
        for dataset in datasets:
            response = self.session.post(
                f"{self.url}/instances",
                data=to_bytes(dataset),
                headers={"Content-Type": "application/dicom"},
                timeout=REQUEST_TIMEOUT,
            )
            response.raise_for_status()
            status = response.json().get("Status")
            if status not in ("Success", "AlreadyStored"):
                raise RuntimeError(f"Orthanc did not store {dataset.SOPInstanceUID}: {response.text}")
            stored += 1
        return stored

    def clear(self) -> None:
        """Delete every patient, and so every study, series and instance."""
        response = self.session.get(f"{self.url}/patients", timeout=REQUEST_TIMEOUT)
        response.raise_for_status()
        for patient in response.json():
            self.session.delete(f"{self.url}/patients/{patient}", timeout=REQUEST_TIMEOUT).raise_for_status()

    def stop(self) -> None:
        """End Orthanc (terminate, then kill if it lingers) and remove a work folder of its own."""
        self.session.close()  # first: Orthanc waits for open keep-alive connections to end
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
