"""The test PACS works, and what its DICOMweb answers hold (Orthanc 1.10, DICOMweb plugin 1.7).

What the acquisition check can rely on, as these tests show:
- QIDO-RS returns attributes asked for with ``includefield`` even when Orthanc does not index
  them (SliceThickness, KVP, ImageType, DeviceSerialNumber, AcquisitionTime), at instance and
  series level alike: the plugin reads them from the stored files. An empty (Type 2) attribute
  comes back as ``{"vr": ...}`` with no "Value".
- QIDO-RS never returns sequences (RadiopharmaceuticalInformationSequence), at any level,
  with any ``includefield``; WADO-RS metadata (``retrieve_series_metadata``) returns the whole
  dataset, sequences included, with the pixel data left as a BulkDataURI.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.datadict import tag_for_keyword

from monitor.pacs.orthanc import OrthancServer, orthanc_available
from monitor.pacs.synthetic import (
    FDG,
    ct_study,
    datasets,
    mr_study,
    pet_study,
    series_instance_uid,
    study_instance_uid,
)

Answer = dict[str, Any]  # one DICOM JSON object of a DICOMweb answer
INSTANCE_FIELDS = ["SliceThickness", "KVP", "ImageType", "DeviceSerialNumber", "AcquisitionTime"]


def values(answer: Answer, keyword: str) -> list[Any] | None:
    """The attribute's values in a DICOM JSON object, None when absent or empty."""
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    value: list[Any] | None = answer.get(f"{tag:08X}", {}).get("Value")
    return value


def value(answer: Answer, keyword: str) -> Any:
    """The attribute's single value in a DICOM JSON object."""
    found = values(answer, keyword)
    assert found is not None and len(found) == 1, (keyword, found)
    return found[0]


def test_store_counts_instances_and_a_study_made_again_has_the_same_uids(pacs: OrthancServer) -> None:
    assert pacs.store(datasets(ct_study())) == 42
    assert pacs.store(datasets(ct_study())) == 42  # the same UIDs: Orthanc answers AlreadyStored
    statistics = pacs.session.get(f"{pacs.url}/statistics", timeout=10).json()
    assert (statistics["CountStudies"], statistics["CountSeries"], statistics["CountInstances"]) == (1, 2, 42)


def test_clear_empties_the_pacs(pacs: OrthancServer) -> None:
    pacs.store(datasets(mr_study(instances=2)))
    client = DICOMwebClient(url=pacs.dicomweb_url)
    assert len(client.search_for_studies()) == 1
    pacs.clear()
    assert client.search_for_studies() == []


def test_a_study_is_found_by_its_accession_number(pacs: OrthancServer) -> None:
    ct = ct_study()
    pacs.store(datasets(ct))
    pacs.store(datasets(mr_study(instances=2)))
    client = DICOMwebClient(url=pacs.dicomweb_url)

    studies = client.search_for_studies(search_filters={"AccessionNumber": "TESTACC-CT-0001"})

    assert len(studies) == 1
    study = studies[0]
    assert value(study, "StudyInstanceUID") == study_instance_uid(ct)
    assert value(study, "PatientID") == "TEST-CT-0001"
    assert value(study, "StudyDate") == "20240304"
    assert values(study, "ModalitiesInStudy") == ["CT"]
    assert value(study, "NumberOfStudyRelatedSeries") == 2
    assert value(study, "NumberOfStudyRelatedInstances") == 42
    assert client.search_for_studies(search_filters={"AccessionNumber": "NO-SUCH-ACCESSION"}) == []


def test_series_have_their_description_and_instance_count(pacs: OrthancServer) -> None:
    ct = ct_study()
    pacs.store(datasets(ct))
    client = DICOMwebClient(url=pacs.dicomweb_url)

    series = client.search_for_series(str(study_instance_uid(ct)))

    found = {
        value(answer, "SeriesInstanceUID"): (
            value(answer, "SeriesNumber"),
            value(answer, "SeriesDescription"),
            value(answer, "NumberOfSeriesRelatedInstances"),
        )
        for answer in series
    }
    scout, axial = ct.series
    assert found == {
        series_instance_uid(ct, scout): (1, "Scout", 2),
        series_instance_uid(ct, axial): (2, "PORTAL VENOUS 2.5mm", 40),
    }


def test_instance_level_includefield_returns_attributes_orthanc_does_not_index(pacs: OrthancServer) -> None:
    ct = ct_study()
    pacs.store(datasets(ct))
    client = DICOMwebClient(url=pacs.dicomweb_url)

    answers = client.search_for_instances(
        study_instance_uid=str(study_instance_uid(ct)), fields=INSTANCE_FIELDS
    )

    def attributes(answer: Answer) -> tuple[list[Any] | None, ...]:
        return tuple(values(answer, keyword) for keyword in INSTANCE_FIELDS)

    found = {value(answer, "SOPInstanceUID"): attributes(answer) for answer in answers}
    made = {ds.SOPInstanceUID: attributes(ds.to_json_dict()) for ds in datasets(ct)}
    assert found == made
    # The same, spelled out: the scout's empty SliceThickness comes back without a value.
    scout = (None, [120], ["ORIGINAL", "PRIMARY", "LOCALIZER"], ["SYN-CT-0001"], ["093000"])
    axial = ([2.5], [120], ["ORIGINAL", "PRIMARY", "AXIAL"], ["SYN-CT-0001"], ["093200"])
    assert (list(found.values()).count(scout), list(found.values()).count(axial)) == (2, 40)


def test_series_level_includefield_returns_attributes_orthanc_does_not_index(pacs: OrthancServer) -> None:
    ct = ct_study(slice_thickness=5.0)
    pacs.store(datasets(ct))
    client = DICOMwebClient(url=pacs.dicomweb_url)

    series = client.search_for_series(
        str(study_instance_uid(ct)),
        search_filters={"SeriesNumber": "2"},
        fields=["SliceThickness", "KVP", "ContrastBolusAgent", "DeviceSerialNumber"],
    )

    assert len(series) == 1
    assert value(series[0], "SeriesDescription") == "PORTAL VENOUS 5mm"
    assert value(series[0], "SliceThickness") == 5
    assert value(series[0], "KVP") == 120
    assert value(series[0], "ContrastBolusAgent") == "IOHEXOL"
    assert value(series[0], "DeviceSerialNumber") == "SYN-CT-0001"


def test_qido_leaves_sequences_out(pacs: OrthancServer) -> None:
    # Orthanc's DICOMweb plugin 1.7 answers QIDO-RS without sequences, even when asked for one
    # (by keyword or tag) and with includefield=all: the radiopharmaceutical needs WADO-RS.
    pet = pet_study()
    pacs.store(datasets(pet))
    client = DICOMwebClient(url=pacs.dicomweb_url)
    study_uid = str(study_instance_uid(pet))

    for fields in (["RadiopharmaceuticalInformationSequence"], ["00540016"], ["all"]):
        answers = client.search_for_instances(
            study_instance_uid=study_uid, search_filters={"Modality": "PT"}, fields=fields
        )
        assert len(answers) == 20
        assert all(values(answer, "RadiopharmaceuticalInformationSequence") is None for answer in answers)


def test_wado_rs_metadata_has_the_radiopharmaceutical_start_time(pacs: OrthancServer) -> None:
    pet = pet_study(injection_time="081500", uptake_minutes=60)
    pacs.store(datasets(pet))
    client = DICOMwebClient(url=pacs.dicomweb_url)
    pet_series = pet.series[1]

    metadata = client.retrieve_series_metadata(
        str(study_instance_uid(pet)), str(series_instance_uid(pet, pet_series))
    )

    assert len(metadata) == 20
    for instance in metadata:
        assert value(instance, "Modality") == "PT"
        assert value(instance, "AcquisitionTime") == "091700"
        injection = value(instance, "RadiopharmaceuticalInformationSequence")
        assert value(injection, "Radiopharmaceutical") == FDG
        assert value(injection, "RadiopharmaceuticalStartTime") == "081500"
        assert value(injection, "RadionuclideTotalDose") == 370_000_000
        assert "BulkDataURI" in instance["7FE00010"]  # the pixels are not inlined


def test_credentials_are_required_when_given(tmp_path_factory: pytest.TempPathFactory) -> None:
    reason = orthanc_available()
    if reason is not None:
        pytest.skip(reason)
    with OrthancServer(
        tmp_path_factory.mktemp("orthanc-auth"), username="tester", password="not-a-secret"
    ) as server:
        assert requests.get(f"{server.url}/system", timeout=10).status_code == 401
        assert server.store(datasets(mr_study(instances=1))) == 3
        session = requests.Session()
        session.auth = ("tester", "not-a-secret")
        client = DICOMwebClient(url=server.dicomweb_url, session=session)
        assert [value(study, "AccessionNumber") for study in client.search_for_studies()] == [
            "TESTACC-MR-0001"
        ]
