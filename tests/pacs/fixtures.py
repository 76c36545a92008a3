"""The test PACS: one Orthanc for the session (skipped where Orthanc is not installed), emptied
before each test that asks for ``pacs``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from monitor.pacs.orthanc import DICOM_AET, OrthancServer, orthanc_available


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


@pytest.fixture(scope="session")
def core_lab_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """A second Orthanc standing in for a sponsor's core lab: AE title ``CORELAB``, taking
    C-STORE from the test PACS (and STOW-RS on its DICOMweb root)."""
    reason = orthanc_available()
    if reason is not None:
        pytest.skip(reason)
    with OrthancServer(tmp_path_factory.mktemp("core-lab"), aet="CORELAB", store_from=(DICOM_AET,)) as server:
        yield server


@pytest.fixture
def core_lab(core_lab_node: OrthancServer) -> OrthancServer:
    """The core lab's node, empty."""
    core_lab_node.clear()
    return core_lab_node
