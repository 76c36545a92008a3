"""Reading study metadata from a PACS over DICOMweb (QIDO-RS, WADO-RS metadata): never pixel data.

:class:`DicomWebReader` lists the studies of a date range (:meth:`~DicomWebReader.studies`)
and reads one study's series with the attributes the acquisition rules name
(:meth:`~DicomWebReader.study`), as a :class:`rules.acquisition.StudySeen`:

- the series and their instance counts come from QIDO-RS at series level;
- the attributes, per image, from one QIDO-RS search at instance level with ``includefield``
  (paged), reduced to each series' distinct values;
- attributes inside a sequence (``RadiopharmaceuticalStartTime``, which QIDO-RS does not
  return) from the WADO-RS metadata of one image per series that needs them.

:meth:`~DicomWebReader.ping` proves the PACS answers and accepts our credentials
(``hiro-monitor check-config``): one QIDO-RS study search for a study UID no PACS holds,
``limit=1``, so that nothing about any patient crosses the wire.

Every request has the configured timeout and is counted (:attr:`~DicomWebReader.requests`),
so a poll can stop at its budget. dicomweb-client's own retries are off: a PACS that fails
fails the poll, whose next run is the retry. Errors are raised as :class:`PacsError`, whose
message names the kind of failure and the HTTP status, never a query (queries hold
accession numbers and dates of patients).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType
from typing import Any, Protocol

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.datadict import tag_for_keyword

from monitor.config import PacsSettings, secret
from rules.acquisition import SeriesSeen, StudySeen

__all__ = [
    "SEQUENCE_ATTRIBUTES",
    "DicomWebReader",
    "PacsError",
    "PacsReader",
    "StudyListing",
    "dicomweb_reader",
]

log = logging.getLogger("monitor.pacs")
# dicomweb-client logs each request's URL at DEBUG: a query names accessions and dates.
logging.getLogger("dicomweb_client").setLevel(logging.WARNING)

# Attributes found only inside a sequence, by the sequence that holds them.
_IN_SEQUENCE = {
    "RadiopharmaceuticalStartTime": "RadiopharmaceuticalInformationSequence",
    "RadionuclideTotalDose": "RadiopharmaceuticalInformationSequence",
    "Radiopharmaceutical": "RadiopharmaceuticalInformationSequence",
}
# The same, for the checks (a C-FIND may leave sequences out: monitor.pacs.dimse).
SEQUENCE_ATTRIBUTES: Mapping[str, str] = MappingProxyType(_IN_SEQUENCE)
_NUCLEAR = frozenset({"PT", "NM"})  # the modalities whose images carry the sequence above
_STUDY_FIELDS = [
    "StudyInstanceUID", "AccessionNumber", "PatientID", "StudyDate", "ModalitiesInStudy",
    "NumberOfStudyRelatedInstances", "NumberOfStudyRelatedSeries",
]  # fmt: skip
# The study a ping searches for: a valid UID (2.25: a UUID as an integer) that no study has.
_NO_STUDY_UID = "2.25.0"
_SERIES_FIELDS = [
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "Modality",
    "NumberOfSeriesRelatedInstances",
]


class PacsError(Exception):
    """A PACS call failed: unreachable, timed out, refused or answered what is not DICOM JSON.
    The message never quotes the request."""


@dataclass(frozen=True, slots=True)
class StudyListing:
    """One study as a QIDO-RS study search lists it."""

    uid: str
    accession: str
    patient_id: str
    study_date: date | None
    modalities: tuple[str, ...]
    instances: int
    series: int


class PacsReader(Protocol):
    """What a poll needs of a PACS, whichever the protocol (:class:`DicomWebReader`,
    ``monitor.pacs.dimse.DimseReader``): errors are :class:`PacsError`."""

    requests: int  # requests made so far, for the poll's budget

    def ping(self) -> None:
        """One cheap request that proves the PACS answers and accepts our credentials or AE
        titles (no patient data asked for); :class:`PacsError` if it does not."""
        ...

    def studies(self, first_day: date, last_day: date) -> Iterator[StudyListing]:
        """The studies dated ``first_day`` to ``last_day`` (both included)."""
        ...

    def study(self, listing: StudyListing, attributes: Collection[str]) -> StudySeen:
        """``listing``'s series, each with the distinct values its images carry for ``attributes``."""
        ...


class DicomWebReader:
    """Reads one PACS. Not thread-safe (one per poll)."""

    def __init__(self, client: DICOMwebClient, *, page_size: int = 500) -> None:
        self.client = client
        self.client.set_http_retry_params(retry=False)
        self.page_size = page_size
        self.requests = 0

    def ping(self) -> None:
        """One QIDO-RS study search (``limit=1``) for a study UID no PACS holds: the PACS
        answers, accepts our credentials and speaks DICOM JSON, and lists nobody's study."""
        self._call(
            self.client.search_for_studies,
            fields=["StudyInstanceUID"],
            search_filters={"StudyInstanceUID": _NO_STUDY_UID},
            limit=1,
        )

    def studies(self, first_day: date, last_day: date) -> Iterator[StudyListing]:
        """The studies dated ``first_day`` to ``last_day`` (both included), page by page."""
        offset = 0
        while True:
            page = self._call(
                self.client.search_for_studies,
                fields=_STUDY_FIELDS,
                search_filters={"StudyDate": f"{first_day:%Y%m%d}-{last_day:%Y%m%d}"},
                offset=offset,
                limit=self.page_size,
            )
            for answer in page:
                listing = _listing(answer)
                if listing is not None:
                    yield listing
            if len(page) < self.page_size:
                return
            offset += len(page)

    def study(self, listing: StudyListing, attributes: Collection[str]) -> StudySeen:
        """``listing``'s series, each with the distinct values its images carry for ``attributes``."""
        series = {
            uid: found
            for found in self._call(self.client.search_for_series, listing.uid, fields=_SERIES_FIELDS)
            if (uid := _text(found, "SeriesInstanceUID"))
        }
        flat = sorted(name for name in attributes if name not in _IN_SEQUENCE)
        values: dict[str, dict[str, set[tuple[str, ...]]]] = {uid: {} for uid in series}
        first_image: dict[str, str] = {}
        offset = 0
        while True:
            page = self._call(
                self.client.search_for_instances,
                listing.uid,
                fields=[*flat, "SeriesInstanceUID", "SOPInstanceUID"],
                offset=offset,
                limit=self.page_size,
            )
            for answer in page:
                uid = _text(answer, "SeriesInstanceUID")
                if uid not in values:
                    continue
                first_image.setdefault(uid, _text(answer, "SOPInstanceUID"))
                for name in flat:
                    values[uid].setdefault(name, set()).add(_values(answer, name))
            if len(page) < self.page_size:
                break
            offset += len(page)
        nested = sorted(name for name in attributes if name in _IN_SEQUENCE)
        if nested:
            # The radiopharmaceutical sequence is in PET and NM images only: one metadata
            # request per such series, none for a CT or MR study.
            for uid, image in first_image.items():
                if _text(series[uid], "Modality").upper() in _NUCLEAR:
                    values[uid].update(self._nested(listing.uid, uid, image, nested))
        return study_seen(listing, series, values)

    def _nested(
        self, study: str, series: str, image: str, names: list[str]
    ) -> dict[str, set[tuple[str, ...]]]:
        """Attributes inside sequences, from one image's WADO-RS metadata (the whole header)."""
        answer = self._call(self.client.retrieve_instance_metadata, study, series, image)
        metadata = answer if isinstance(answer, dict) else (answer[0] if answer else {})
        found: dict[str, set[tuple[str, ...]]] = {}
        for name in names:
            items = _element(metadata, _IN_SEQUENCE[name]).get("Value", [])
            if isinstance(items, list) and items and isinstance(items[0], dict):
                found[name] = {_values(items[0], name)}
        return found

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        self.requests += 1
        try:
            answer = method(*args, **kwargs)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            raise PacsError(f"the PACS answered HTTP {status}") from None
        except requests.Timeout:
            raise PacsError("the PACS did not answer in time") from None
        except requests.ConnectionError:
            raise PacsError("the PACS cannot be reached") from None
        except (ValueError, KeyError, TypeError) as exc:  # not JSON, or not DICOM JSON
            raise PacsError(f"the PACS answered what is not DICOM JSON ({type(exc).__name__})") from None
        if not isinstance(answer, list | dict) or (
            isinstance(answer, list) and not all(isinstance(item, dict) for item in answer)
        ):
            raise PacsError("the PACS answered what is not DICOM JSON")
        return answer


def pacs_session(settings: PacsSettings, environ: Mapping[str, str] | None = None) -> requests.Session:
    """An HTTP session with the PACS's TLS trust and credentials (DICOMweb and Orthanc's REST API)."""
    session = requests.Session()
    if settings.ca_file:
        session.verify = settings.ca_file
    if settings.auth == "basic":
        session.auth = (settings.username, secret("HIRO_PACS_PASSWORD", environ) or "")
    elif settings.auth == "bearer":
        session.headers["Authorization"] = f"Bearer {secret('HIRO_PACS_TOKEN', environ) or ''}"
    return session


def dicomweb_reader(settings: PacsSettings, environ: Mapping[str, str] | None = None) -> DicomWebReader:
    """A reader of ``settings.dicomweb_url`` with the configured timeout, TLS trust and credentials."""
    session = pacs_session(settings, environ)
    client = DICOMwebClient(
        url=settings.dicomweb_url.rstrip("/"), session=session, timeout=settings.request_timeout_seconds
    )
    return DicomWebReader(client, page_size=settings.page_size)


def _element(answer: Mapping[str, Any], keyword: str) -> Mapping[str, Any]:
    tag = tag_for_keyword(keyword)
    found = answer.get(f"{tag:08X}", {}) if tag is not None else {}
    return found if isinstance(found, dict) else {}


def _values(answer: Mapping[str, Any], keyword: str) -> tuple[str, ...]:
    """An attribute's values as text (numbers as written, a person name's alphabetic form)."""
    raw = _element(answer, keyword).get("Value", [])
    out: list[str] = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict):
            out.append(str(item.get("Alphabetic", "")))
        elif isinstance(item, float):
            out.append(str(int(item)) if item.is_integer() else repr(item))
        elif item is not None:
            out.append(str(item))
    return tuple(out)


def _text(answer: Mapping[str, Any], keyword: str) -> str:
    found = _values(answer, keyword)
    return found[0] if found else ""


def _number(answer: Mapping[str, Any], keyword: str = "SeriesNumber") -> int | None:
    try:
        return int(float(_text(answer, keyword)))
    except ValueError:
        return None


def study_seen(
    listing: StudyListing,
    series: Mapping[str, Mapping[str, Any]],
    values: Mapping[str, Mapping[str, set[tuple[str, ...]]]],
) -> StudySeen:
    """The study of ``listing``: its series (DICOM JSON answers by series UID) in series-number
    order, each with the distinct values its images carry (both readers build it so)."""
    return StudySeen(
        uid=listing.uid,
        accession=listing.accession,
        patient_id=listing.patient_id,
        study_date=listing.study_date,
        modalities=listing.modalities,
        series=tuple(
            _series(uid, found, values[uid])
            for uid, found in sorted(series.items(), key=lambda item: _number(item[1]) or 0)
        ),
    )


def _listing(answer: Mapping[str, Any]) -> StudyListing | None:
    uid = _text(answer, "StudyInstanceUID")
    if not uid:
        return None
    day = _text(answer, "StudyDate")
    try:
        study_date = date(int(day[0:4]), int(day[4:6]), int(day[6:8])) if len(day) == 8 else None
    except ValueError:
        study_date = None
    return StudyListing(
        uid=uid,
        accession=_text(answer, "AccessionNumber"),
        patient_id=_text(answer, "PatientID"),
        study_date=study_date,
        modalities=_values(answer, "ModalitiesInStudy"),
        instances=_number(answer, "NumberOfStudyRelatedInstances") or 0,
        series=_number(answer, "NumberOfStudyRelatedSeries") or 0,
    )


def _series(uid: str, found: Mapping[str, Any], values: Mapping[str, set[tuple[str, ...]]]) -> SeriesSeen:
    return SeriesSeen(
        uid=uid,
        number=_number(found),
        description=_text(found, "SeriesDescription"),
        modality=_text(found, "Modality"),
        instances=_number(found, "NumberOfSeriesRelatedInstances") or 0,
        values={name: tuple(sorted(distinct)) for name, distinct in values.items()},
    )
