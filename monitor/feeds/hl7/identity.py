"""The patient's name and birth date (PID-5, PID-7) of a stored message, for the one place
that must show them: the instruction sheet a technologist reads to identify the patient
before a scan (two identifiers: name and birth date, with the MRN).

The feed's own reader never reads these fields (:mod:`.message` blanks them); this one
reads nothing else, and is called only for a role that identifies patients, on demand,
from the raw message the store already keeps for ``raw_retention_days``: no copy of the
name or birth date is stored anywhere else. A message that cannot be read gives nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from monitor.feeds.hl7.message import Unprocessable, segment_lines, unescape


@dataclass(frozen=True, slots=True)
class PatientIdentity:
    name: str  # "FAMILY, Given" as PID-5's first repetition gives it
    birth_date: date | None


def patient_identity(raw: bytes) -> PatientIdentity | None:
    """PID-5 (family, given) and PID-7 (YYYYMMDD...) of ``raw``; None without a usable PID."""
    try:
        lines = segment_lines(raw)
    except Unprocessable:
        return None
    sep, chars = lines[0][3], lines[0][4:8]
    component, repetition, esc, sub = chars[0], chars[1], chars[2], chars[3]
    for line in lines:
        if not line.startswith("PID" + sep):
            continue
        fields = line.split(sep)
        name = fields[5].split(repetition)[0] if len(fields) > 5 else ""
        seps = sep + component + repetition + sub
        parts = [unescape(p.split(sub)[0], esc, seps).strip() for p in name.split(component)]
        family, given = [*parts, "", ""][:2]
        born = fields[7].split(component)[0] if len(fields) > 7 else ""
        return PatientIdentity(", ".join(p for p in (family, given) if p), _day(born))
    return None


def _day(text: str) -> date | None:
    try:
        return date(int(text[0:4]), int(text[4:6]), int(text[6:8])) if len(text) >= 8 else None
    except ValueError:
        return None
