"""The test PACS: one Orthanc for the session (skipped where Orthanc is not installed), emptied
before each test that asks for ``pacs``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from monitor.pacs.orthanc import OrthancServer, orthanc_available


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """A started Orthanc with the DICOMweb plugin, shared by the session's tests."""
    reason = orthanc_available()
    if reason is not None:
        pytest.skip(reason)
    with OrthancServer(tmp_path_factory.mktemp("orthanc")) as server:
        yield server


@pytest.fixture
def pacs(orthanc: OrthancServer) -> OrthancServer:
    """The session's Orthanc, empty."""
    orthanc.clear()
    return orthanc
