"""A stored message laid out for the integration team: one segment per line, each field
with its HL7 position and name (``PID-3 Patient Identifier List``), and, on demand,
hl7apy's validation of the message against its version's structure.

The names come from hl7apy's structure definitions for the message's version (MSH-12;
2.5 when the version is one hl7apy does not define). This is the browser's and the
validator's library, never the feed's hot path (:mod:`monitor.feeds.hl7.message` parses
what the writer applies). A segment hl7apy does not know (``ZDS`` and other Z-segments)
keeps its positions with no names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Literal, cast

from hl7apy import load_reference  # type: ignore[import-untyped]
from hl7apy.exceptions import HL7apyException  # type: ignore[import-untyped]

from monitor.feeds.hl7.ack import build_ack

__all__ = ["FieldView", "SegmentView", "ack_sent", "lay_out", "validate_structure"]

_VERSIONS = ("2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8", "2.8.1", "2.8.2")
FALLBACK_VERSION = "2.5"
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")


@dataclass(frozen=True, slots=True)
class FieldView:
    position: str  # "PID-3"
    name: str  # "Patient Identifier List" ("" for a segment hl7apy does not define)
    value: str


@dataclass(frozen=True, slots=True)
class SegmentView:
    segment: str  # "PID"
    text: str  # the segment as received
    fields: tuple[FieldView, ...]  # the fields that carry a value


def _version(segments: list[str]) -> str:
    if segments and segments[0].startswith("MSH") and len(segments[0]) > 3:
        fields = segments[0].split(segments[0][3])
        if len(fields) > 11:
            given = fields[11].split("^")[0].strip()
            if given in _VERSIONS:
                return given
    return FALLBACK_VERSION


@cache
def _field_names(segment: str, version: str) -> dict[int, str]:
    """Position -> field name of ``segment`` in ``version`` (empty when hl7apy has no such segment)."""
    try:
        _kind, children = load_reference(segment, "Segment", version)[:2]
    except (HL7apyException, KeyError, ValueError):
        return {}
    names: dict[int, str] = {}
    for child in children:
        reference = child[0]  # "PID_3"
        _, _, number = reference.rpartition("_")
        long_name = child[1][3] if len(child[1]) > 3 else ""
        if number.isdigit() and isinstance(long_name, str):
            names[int(number)] = long_name.replace("_", " ").title()
    return names


def lay_out(raw: bytes) -> tuple[str, list[SegmentView]]:
    """The message's version (as named) and its segments with their fields' positions and names."""
    text = raw.decode("utf-8", errors="replace")
    segments = [segment for segment in re.split(r"\r\n|\r|\n", text) if segment.strip()]
    version = _version(segments)
    separator = segments[0][3] if segments and segments[0].startswith("MSH") and len(segments[0]) > 3 else "|"
    views: list[SegmentView] = []
    for segment in segments:
        parts = segment.split(separator)
        name = parts[0] if _SEGMENT_ID.match(parts[0]) else "?"
        names = _field_names(name, version) if name != "?" else {}
        fields: list[FieldView] = []
        if name == "MSH":
            # MSH-1 is the field separator itself, so MSH-2 is the first piece after it.
            fields.append(FieldView("MSH-1", names.get(1, ""), separator))
            numbered = list(enumerate(parts[1:], start=2))
        else:
            numbered = list(enumerate(parts[1:], start=1))
        fields.extend(
            FieldView(f"{name}-{number}", names.get(number, ""), value) for number, value in numbered if value
        )
        views.append(SegmentView(name, segment, tuple(fields)))
    return version, views


def ack_sent(raw: bytes, ack_code: str, error_code: str, error: str, received_at: datetime) -> str:
    """The ACK the sender got, rebuilt from the stored answer (the builder is deterministic:
    its MSH-7 is the second the message was received, and its MSH-10 follows from it); ""
    when no answer is stored."""
    if ack_code not in ("AA", "AE", "AR"):
        return ""
    code = cast(Literal["AA", "AE", "AR"], ack_code)
    ack = build_ack(raw, code, error_code=error_code or None, text=error or None, now=received_at)
    return ack.decode("utf-8", errors="replace").replace("\r", "\n").strip()


def validate_structure(raw: bytes) -> list[str]:
    """hl7apy's strict validation of the message against its version's structure: the
    problems it names (empty when the message conforms). Messages from real feeds often
    do not (Z-segments, vendors' extra fields): this is a diagnosis, never a gate."""
    from hl7apy.parser import parse_message  # type: ignore[import-untyped]
    from hl7apy.validation import VALIDATION_LEVEL  # type: ignore[import-untyped]

    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\r").replace("\n", "\r").strip("\r")
    try:
        message = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
        message.validate(report_file=None)
    except HL7apyException as exc:
        return [_plain(exc)]
    except (ValueError, IndexError, KeyError, TypeError, AttributeError) as exc:
        return [f"hl7apy could not read the message ({type(exc).__name__})"]
    return []


def _plain(exc: Exception) -> str:
    """hl7apy's words, one line (they name positions and structure, not values)."""
    return " ".join(str(exc).split())[:500] or type(exc).__name__
