"""Field interpretation shared by the SIU and order mappings: patient identifiers and the
MRN, sender status codes, comments, clinical-trial segments, durations, timestamps and
modality. Pure; problems raise :class:`~monitor.feeds.hl7.message.Unprocessable`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, tzinfo

from monitor.events import UNNEEDED_IDENTIFIER_TYPES, EventKind, PatientIdentifier
from monitor.feeds.hl7.message import Message, Segment, Unprocessable
from monitor.feeds.hl7.timestamps import parse_ts


def patient_identifiers(pid: Segment) -> tuple[PatientIdentifier, ...]:
    """Every PID-3 repetition (CX): value = CX-1, authority = CX-4.1 (assigning authority's
    namespace id) or, when that is empty, CX-6.1 (assigning facility), type = CX-5.
    Government and insurance numbers (an SSN in PID-3, say) are dropped: the office never
    needs them (:data:`~monitor.events.UNNEEDED_IDENTIFIER_TYPES`)."""
    ids: list[PatientIdentifier] = []
    for rep in range(1, pid.repetitions(3) + 1):
        value = pid.get(3, 1, rep=rep)
        type_code = pid.get(3, 5, rep=rep)
        if value and type_code.upper() not in UNNEEDED_IDENTIFIER_TYPES:
            authority = pid.get(3, 4, rep=rep) or pid.get(3, 6, rep=rep)
            ids.append(PatientIdentifier(value, authority, type_code))
    return tuple(ids)


def choose_mrn(
    ids: tuple[PatientIdentifier, ...], authorities: tuple[str, ...], type_codes: tuple[str, ...]
) -> str | None:
    """The site's MRN: first identifier matching both a configured authority and type, else
    the first matching the authority, else the first matching the type, else the first one.
    Comparisons ignore case."""
    if not ids:
        return None
    auth = {a.upper() for a in authorities}
    types = {t.upper() for t in type_codes}

    def by_auth(i: PatientIdentifier) -> bool:
        return bool(auth) and i.authority.upper() in auth

    def by_type(i: PatientIdentifier) -> bool:
        return bool(types) and i.type_code.upper() in types

    for test in (lambda i: by_auth(i) and by_type(i), by_auth, by_type):
        found = next((i for i in ids if test(i)), None)
        if found is not None:
            return found.value
    return ids[0].value


def status_kind(table: Mapping[str, EventKind], seg: Segment, field: int) -> EventKind | None:
    """Look a sender's status (a CE/CWE such as SCH-25 or ORC-5) up in the site table.

    Tried in order, case-insensitively: the whole field as sent (``1^SCH``), code^system
    (components 1 and 3, the standard CE layout), code^component 2, the code, the text.
    """
    raw = seg.raw(field)
    if not raw:
        return None
    code, second, third = seg.get(field, 1), seg.get(field, 2), seg.get(field, 3)
    cs = seg.seps[1]
    candidates = (
        raw,
        f"{code}{cs}{third}" if third else "",
        f"{code}{cs}{second}" if second else "",
        code,
        second,
    )
    for candidate in candidates:
        if candidate:
            found = table.get(candidate.upper().replace(cs, "^"))
            if found is not None:
                return found
    return None


def comments(notes: Iterator[Segment]) -> tuple[str, ...]:
    """NTE-3 texts (see :meth:`Segment.text`), empty ones left out.

    Quirk: some senders (corpus msft SIU-S13-01, S26-01) put the comment in NTE-2, whose
    real content is a one-letter source code (table 0105: L, P, O); a longer NTE-2 with an
    empty NTE-3 is taken as the comment.
    """
    out: list[str] = []
    for nte in notes:
        text = nte.text(3)
        if not text:
            fallback = nte.get(2)
            text = fallback if len(fallback) > 3 else ""
        if text:
            out.append(text)
    return tuple(out)


def cti_studies(segments: Iterator[Segment]) -> str:
    """CTI-1.1 (sponsor study id, HL7 v2.5 section 7.8.1) of each CTI, joined by ``~``."""
    return "~".join(s.get(1) for s in segments if s.get(1))


_DURATION_UNITS: Mapping[str, float] = {
    **dict.fromkeys(("S", "SEC", "SECS", "SECOND", "SECONDS"), 1 / 60),
    **dict.fromkeys(("M", "MIN", "MINS", "MINUTE", "MINUTES"), 1.0),
    **dict.fromkeys(("H", "HR", "HRS", "HOUR", "HOURS"), 60.0),
    **dict.fromkeys(("D", "DAY", "DAYS"), 1440.0),
}


def minutes_from(amount: str, unit: str, label: str) -> int | None:
    """``amount`` in ``unit`` as whole minutes (rounded up), or None when the unit is not a
    time unit we know (ORSOS sends ``000000``). An empty unit means minutes, as the sample
    feeds use it. Raises :class:`Unprocessable` (102) when ``amount`` is not a number."""
    if not amount:
        return None
    try:
        number = float(amount)
    except ValueError:
        raise Unprocessable(f"{label}: not a number", "102") from None
    factor = _DURATION_UNITS.get(unit.strip().upper() or "MIN")
    if factor is None or number <= 0:
        return None
    return max(1, math.ceil(round(number * factor, 6)))


_TQ_DURATION = re.compile(r"([SMHDW])?(\d+(?:\.\d+)?)\s*([A-Za-z]*)\Z")


def tq_duration(text: str) -> int | None:
    """TQ component 3 (HL7 v2.5 section 4.4.3): ``S30``, ``M30``, ``H1`` ... or a plain
    number (minutes, as Barts and MESA send it), or ``2 hours``. Unreadable forms give None
    (the field is free-form in practice)."""
    found = _TQ_DURATION.match(text.strip())
    if not found:
        return None
    prefix, number, word = found.groups()
    return minutes_from(number, word or prefix or "", "TQ duration")


def timestamp(seg: Segment, field: int, component: int, zone: tzinfo) -> datetime | None:
    """A timestamp field read in ``zone``, or :class:`Unprocessable` (102) naming the field,
    never quoting the value."""
    try:
        return parse_ts(seg.get(field, component), zone)
    except ValueError:
        where = f"{seg.name}-{field}" + (f".{component}" if component > 1 else "")
        raise Unprocessable(f"{where}: invalid timestamp", "102") from None


def message_time(msg: Message, zone: tzinfo) -> datetime | None:
    """When the sender recorded the event: EVN-2 (recorded date/time), else MSH-7 (date/time
    of message), read in ``zone``; None when neither is a valid timestamp. Never raises: the
    time only orders an exam's events, and a bad one must not cost the message."""
    evn = msg.first("EVN")
    for seg, field in ((evn, 2), (msg.msh, 7)):
        if seg is not None and seg.get(field):
            try:
                found = parse_ts(seg.get(field, 1), zone)
            except ValueError:
                continue
            if found is not None:
                return found
    return None


# OBR-24 diagnostic service section (HL7 table 0074) to DICOM modality, where unambiguous.
# "RAD", "LAB" and the like name a department, not a modality: they give None.
_SECTION_MODALITY: Mapping[str, str] = {
    "CT": "CT",
    "NMR": "MR",
    "MR": "MR",
    "NMS": "NM",
    "NM": "NM",
    "CUS": "US",
    "OUS": "US",
    "RUS": "US",
    "VUS": "US",
    "US": "US",
    "MG": "MG",
}


# DICOM modality codes (PS3.3 C.7.3.1.1.1) a scheduling system may name a resource by.
_DICOM_MODALITIES = frozenset({"CT", "MR", "PT", "NM", "US", "CR", "DX", "MG", "XA", "RF", "OT"})


def modality(ipc: Segment | None, obr: Segment | None, resources: Iterable[Segment] = ()) -> str | None:
    """IPC-5.1 (a DICOM modality, HL7 v2.5 section 4.5.6.5), else OBR-24 mapped through
    table 0074 where that names a modality, else the type of a scheduled resource: AIG-4
    (resource group) or AIL-4 (location type) when it is a DICOM modality code, as sites
    that book scanners as resources send it."""
    if ipc is not None and ipc.get(5):
        return ipc.get(5)
    if obr is not None and obr.get(24).upper() in _SECTION_MODALITY:
        return _SECTION_MODALITY[obr.get(24).upper()]
    for resource in resources:
        code = resource.get(4).upper()
        if code in _DICOM_MODALITIES:
            return code
    return None
