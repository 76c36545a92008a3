"""Is a de-identified copy fit to leave the hospital? The check made before anything is sent.

The copy is read back from the PACS (every instance's headers, sequences included) and
compared with what identified the source study:

- the attributes the DICOM PS3.15 basic profile removes are absent or empty (the trial may
  keep some, never the patient's or the hospital's identity);
- the patient's name and id are the subject id, and the identity is marked removed;
- the Clinical Trial attributes (group 0012) are the trial's;
- no value anywhere holds a word of the patient's name, the patient's ids, the accession
  number, the birth date or the institution's name (a name typed into a description, a
  private tag the profile missed);
- with ``dates = "remove"``, no study, series, acquisition or content date is left; with
  ``dates = "shift"``, each is the source's moved by the subject's offset, and no value holds
  a source date unshifted.

Problems name the attribute and how many images carry it, never the value (it is PHI).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from rules.core_lab import SubjectLabels, shifted

__all__ = ["CopyLabels", "SourceIdentity", "copy_problems", "date_replacements", "identity_of"]

# What the basic profile removes or empties and a copy must not carry (PS3.15 E.1-1).
REMOVED = ("PatientBirthDate", "PatientBirthTime", "OtherPatientIDs", "OtherPatientNames", "PatientAddress",
           "PatientTelephoneNumbers", "PatientMotherBirthName", "AccessionNumber", "InstitutionName",
           "InstitutionAddress", "InstitutionalDepartmentName", "ReferringPhysicianName",
           "PerformingPhysicianName", "OperatorsName", "RequestingPhysician", "IssuerOfPatientID",
           "MedicalRecordLocator", "OtherPatientIDsSequence", "ReferringPhysicianAddress")  # fmt: skip
DATES = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "AcquisitionDateTime")
SHIFTED = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")  # one value each per study
_IDENTIFYING = ("PatientID", "OtherPatientIDs", "AccessionNumber", "IssuerOfPatientID")
_MIN_ID = 3  # shorter ids ("1", "A2") would match everywhere
_MIN_NAME_WORD = 2


@dataclass(frozen=True, slots=True)
class SourceIdentity:
    """What identified the patient in the source study (kept in memory only, never logged)."""

    name_words: frozenset[str]
    ids: frozenset[str]
    birth_dates: frozenset[str]
    institutions: frozenset[str]


@dataclass(frozen=True, slots=True)
class CopyLabels:
    """What the copy must say about the subject: the trial's labels and the visit's."""

    subject: str
    timepoint: str
    timepoint_label: str
    trial: SubjectLabels

    def group_0012(self) -> dict[str, str]:
        """The Clinical Trial Subject/Study/Series attributes, by keyword (empty ones left out)."""
        values = {
            "ClinicalTrialSponsorName": self.trial.sponsor,
            "ClinicalTrialProtocolID": self.trial.protocol_id,
            "ClinicalTrialProtocolName": self.trial.protocol_name,
            "ClinicalTrialSiteID": self.trial.site_id,
            "ClinicalTrialSiteName": self.trial.site_name,
            "ClinicalTrialSubjectID": self.subject,
            "ClinicalTrialTimePointID": self.timepoint,
            "ClinicalTrialTimePointDescription": self.timepoint_label,
        }
        return {keyword: value[:64] for keyword, value in values.items() if value}


def identity_of(headers: Sequence[Mapping[str, object]], more_ids: Sequence[str] = ()) -> SourceIdentity:
    """The identity in the source's headers (Orthanc's simplified tags, one per series is
    enough: the identity is the study's) plus ``more_ids`` (the MRNs the feed knows)."""
    words: set[str] = set()
    ids: set[str] = {value.strip().upper() for value in more_ids if len(value.strip()) >= _MIN_ID}
    births: set[str] = set()
    places: set[str] = set()
    for header in headers:
        for name in _texts(header.get("PatientName")) + _texts(header.get("OtherPatientNames")):
            words.update(w for w in re.split(r"[\^\s,=]+", name.upper()) if len(w) >= _MIN_NAME_WORD)
        for keyword in _IDENTIFYING:
            ids.update(v.strip().upper() for v in _texts(header.get(keyword)) if len(v.strip()) >= _MIN_ID)
        births.update(v for v in _texts(header.get("PatientBirthDate")) if len(v) == 8)
        places.update(v.strip().upper() for v in _texts(header.get("InstitutionName")) if v.strip())
    return SourceIdentity(frozenset(words), frozenset(ids), frozenset(births), frozenset(places))


def date_replacements(
    headers: Sequence[Mapping[str, object]], days: int
) -> tuple[dict[str, str], frozenset[str], str]:
    """For ``dates = "shift"``: each date attribute's shifted value (from the source's headers,
    one per series), the source dates, and the first attribute whose value varies within the
    study ("" when none does: a study is shifted as one)."""
    values: dict[str, set[str]] = {}
    for header in headers:
        for keyword in SHIFTED:
            values.setdefault(keyword, set()).update(v for v in _texts(header.get(keyword)) if v.strip())
    for keyword, found in values.items():
        if len(found) > 1:
            return {}, frozenset(), keyword
    originals = {next(iter(found)) for found in values.values() if found}
    try:
        moved = {keyword: shifted(next(iter(found)), days) for keyword, found in values.items() if found}
    except ValueError:
        return {}, frozenset(), "a date that is not YYYYMMDD"
    return moved, frozenset(originals), ""


def copy_problems(
    identity: SourceIdentity,
    copies: Sequence[Mapping[str, object]],
    labels: CopyLabels,
    *,
    dates: str,
    kept: Sequence[str] = (),
    shifted_to: Mapping[str, str] | None = None,
    source_dates: frozenset[str] = frozenset(),
) -> list[str]:
    """Why the copy (its instances' simplified headers) must not be sent; empty: it may.
    ``shifted_to``/``source_dates``: with ``dates = "shift"``, what each date must now be,
    and the source's dates, which no value may hold any more."""
    if not copies:
        return ["the copy holds no images"]
    found: Counter[str] = Counter()
    name_pattern = _words_pattern(identity.name_words)
    if dates == "shift":
        identity = replace(identity, birth_dates=identity.birth_dates | source_dates)
    for header in copies:
        for problem in _instance_problems(identity, header, labels, dates, kept, name_pattern):
            found[problem] += 1
        for keyword in SHIFTED if dates == "shift" else ():
            expected = (shifted_to or {}).get(keyword, "")
            if _first(header.get(keyword)) != expected:
                found[f"{keyword} is not shifted as the trial asks"] += 1
    total = len(copies)
    return [f"{problem} ({count} of {total} images)" for problem, count in sorted(found.items())]


def _instance_problems(
    identity: SourceIdentity,
    header: Mapping[str, object],
    labels: CopyLabels,
    dates: str,
    kept: Sequence[str],
    name_pattern: re.Pattern[str] | None,
) -> Iterator[str]:
    for keyword in REMOVED:
        if keyword not in kept and _texts(header.get(keyword)):
            yield f"{keyword} is not removed"
    for keyword in ("PatientName", "PatientID"):
        if _first(header.get(keyword)) != labels.subject:
            yield f"{keyword} is not the subject id"
    if _first(header.get("PatientIdentityRemoved")).upper() != "YES":
        yield "PatientIdentityRemoved is not YES"
    for keyword, value in labels.group_0012().items():
        if _first(header.get(keyword)) != value:
            yield f"{keyword} is not the trial's"
    if dates == "remove":
        for keyword in DATES:
            if any(_texts(header.get(keyword))):
                yield f"{keyword} is not removed"
    written = {**labels.group_0012(), "PatientName": labels.subject, "PatientID": labels.subject}
    for keyword, text in _values(header):
        upper = text.upper()
        if written.get(keyword) == text.strip():
            continue  # what the trial itself writes (a site name may name the hospital, on purpose)
        if name_pattern is not None and name_pattern.search(upper):
            yield f"{keyword} holds the patient's name"
        if keyword.endswith(("UID", "UIDs")):
            continue  # new UIDs are digits: a numeric id or a date would turn up in them by chance
        if any(value in upper for value in identity.ids):
            yield f"{keyword} holds a patient id or the accession number"
        if any(value in upper for value in identity.birth_dates):
            yield (
                f"{keyword} holds the birth date"
                if dates != "shift"
                else f"{keyword} holds a date not shifted"
            )
        if any(value in upper for value in identity.institutions):
            yield f"{keyword} holds the institution's name"


def _words_pattern(words: frozenset[str]) -> re.Pattern[str] | None:
    if not words:
        return None
    alternatives = "|".join(re.escape(word) for word in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<![A-Z0-9])(?:{alternatives})(?![A-Z0-9])")


def _values(header: Mapping[str, object], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every text value of ``header`` with its keyword, down into sequences (``Seq.Keyword``)."""
    for keyword, value in header.items():
        name = f"{prefix}{keyword}"
        if isinstance(value, str):
            yield name, value
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, Mapping):
                    yield from _values(item, f"{name}.")
                elif isinstance(item, str):
                    yield name, item


def _texts(value: object) -> list[str]:
    if isinstance(value, str):
        return [part for part in value.split("\\") if part]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str) and item]
    return []


def _first(value: object) -> str:
    texts = _texts(value)
    return texts[0].strip() if texts else ""
