"""Reading one HL7 v2 message: normalise, check MSH, split, typed field access.

Why not a general parser on this path. The MLLP listener must take at least 1,000
messages a second on two cores, together with the database work. Measured here on an
8-segment SIU: hl7apy's parse takes 7.6 ms; python-hl7's ``parse`` 0.3-0.4 ms, because it
builds a container for every field and component, read or not (about 2.4 us each), which
was 45% of the whole intake's time per message. The mapping reads some 40 fields of a
dozen segments, so this module splits each segment's fields once and the components of a
field only when it is read (:class:`Segment`), which costs tens of microseconds. python-hl7
remains the reference: the tests parse what we build (ACKs) with it, and hl7apy builds
and validates test messages.

Both libraries' other hazards are avoided too: hl7apy with ``find_groups=True`` drops
segments that do not fit its groups (Z-segments are kept verbatim here), and python-hl7's
``unescape`` logs the whole field on a bad escape sequence (PHI in logs).

Only the segments and fields listed in :data:`FIELDS_READ` are kept; other fields are
blanked, so a patient's name, birth date or address (PID-5, PID-7, PID-11) is never read.

Everything here is pure. Problems with the message raise :class:`Unprocessable`, whose
``reason`` is plain language naming segments and fields, never their values.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

BOM = "\ufeff"
MLLP_BYTES = "\x0b\x1c"  # start-block and end-block of MLLP framing (HL7 v2 Appendix C)

# Segment name before the field separator: an uppercase letter, then 1-2 letters/digits.
# A "segment" whose name does not fit (``8866|...``) is a line broken by a stray newline.
_SEGMENT_NAME = re.compile(r"[A-Z][A-Z0-9]{1,2}\Z")

# Which fields of which segments the mapping reads (HL7 v2.5 chapters 4, 10 and 2A). A
# segment missing here is dropped before parsing; unlisted fields are blanked.
FIELDS_READ: Mapping[str, frozenset[int]] = {
    "SCH": frozenset({1, 2, 6, 7, 8, 9, 10, 11, 25, 26, 27}),
    "PID": frozenset({3}),  # identifiers only: name, birth date and address are never read
    "PV1": frozenset({3, 19}),
    "TQ1": frozenset({6, 7, 8, 13}),
    "AIS": frozenset({3, 4, 7, 8}),
    "AIG": frozenset({3, 4, 8}),
    "AIL": frozenset({3, 4, 6}),
    "AIP": frozenset({3, 6}),
    "NTE": frozenset({2, 3}),
    "ORC": frozenset({1, 2, 3, 5, 7}),
    "OBR": frozenset({2, 3, 4, 24, 25, 27, 36}),
    "IPC": frozenset({1, 5, 6}),
    "CTI": frozenset({1}),
    "EVN": frozenset({2}),  # recorded date/time: orders an exam's events
}
_MSH_TYPE = 9  # of MSH the mapping reads MSH-7 and MSH-9 (MSH-1/MSH-2 are checked as text)


class Unprocessable(Exception):
    """The message cannot become an event. ``reason`` carries no PHI; ``error_code`` is HL7
    table 0357; ``skipped`` marks valid input that is not ours to track."""

    def __init__(self, reason: str, error_code: str, *, skipped: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_code = error_code
        self.skipped = skipped


def decode(raw: bytes | str) -> str:
    """Text of a message: UTF-8 (HL7 v2.8's preferred set, and ASCII-compatible), falling
    back to Latin-1, which cannot fail, for older senders that use a single-byte set."""
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def strip_start(text: str) -> str:
    """Drop what may precede ``MSH``: a UTF-8 BOM, MLLP framing bytes and whitespace."""
    return text.lstrip(BOM + MLLP_BYTES + " \t\r\n")


def check_encoding_characters(msh: str) -> tuple[str, str]:
    """The field separator (MSH-1) and encoding characters (MSH-2) of an MSH line.

    HL7 v2.5 section 2.5.4: MSH-2 holds the component, repetition, escape and subcomponent
    characters (v2.7 adds a fifth, truncation). We require 4 or 5 distinct characters that
    are neither letters, digits, whitespace nor the field separator. Anything else (the
    fuzzers' ``0000``, a lone ``^``) cannot be read safely. Raises :class:`Unprocessable`
    with code 102 (data type error: the MSH-2 value is not of its type), not 100, because
    the segments are in order; it is one field's content that is unusable.
    """
    if len(msh) < 8 or not msh.startswith("MSH"):
        raise Unprocessable("MSH: segment too short to hold encoding characters", "102")
    sep = msh[3]
    if sep.isalnum() or sep.isspace():
        raise Unprocessable("MSH-1: the field separator is not usable", "102")
    end = msh.find(sep, 4)
    chars = msh[4:] if end < 0 else msh[4:end]
    usable = (
        len(chars) in (4, 5)
        and len(set(chars)) == len(chars)
        and sep not in chars
        and not any(c.isalnum() or c.isspace() for c in chars)
    )
    if not usable:
        raise Unprocessable("MSH-2: the encoding characters are not usable", "102")
    return sep, chars


def segment_lines(raw: bytes | str) -> list[str]:
    """The message's segments as lines, normalised.

    Strips a BOM and MLLP framing, turns CRLF and LF into CR, drops empty lines, and joins a
    line whose segment name is invalid to the line before it (a segment broken by a stray
    newline; the newline is removed, as it was not part of the data). Raises
    :class:`Unprocessable` (100) when the text does not start with MSH, or (102) when MSH-1
    or MSH-2 are unusable.
    """
    text = strip_start(decode(raw))
    if not text.startswith("MSH"):
        raise Unprocessable("no MSH segment at the start: not an HL7 v2 message", "100")
    text = text.replace("\r\n", "\r").replace("\n", "\r")
    if "\x1c" in text or "\x0b" in text:
        text = text.replace("\x1c", "").replace("\x0b", "")
    lines = text.split("\r")
    sep, _ = check_encoding_characters(lines[0])
    out: list[str] = []
    for line in lines:
        if not line.strip():
            continue
        at = line.find(sep)
        name = line if at < 0 else line[:at]
        if out and not _SEGMENT_NAME.match(name):
            out[-1] += line
        else:
            out.append(line)
    return out


def unescape(value: str, esc: str, seps: str) -> str:
    """Undo HL7 escape sequences (HL7 v2.5 section 2.7): ``\\F\\ \\S\\ \\R\\ \\T\\ \\E\\``,
    ``\\Xhh..\\`` and ``\\.br\\`` (a line break). Highlighting and unknown sequences are
    dropped. ``seps`` is field, component, repetition, subcomponent separators in that order.
    (python-hl7's own ``unescape`` logs the whole field on a bad sequence: PHI in logs.)"""
    out: list[str] = []
    pieces = value.split(esc)
    out.append(pieces[0])
    named = {"F": seps[0], "S": seps[1], "R": seps[2], "T": seps[3], "E": esc, ".br": "\n"}
    for i in range(1, len(pieces), 2):
        code = pieces[i]
        if i + 1 >= len(pieces):  # an unterminated sequence: keep it as text
            out.append(esc + code)
            break
        if code in named:
            out.append(named[code])
        elif code[:1] == "X" and len(code) % 2 == 1:
            with contextlib.suppress(ValueError):  # not hex: drop the sequence
                out.append(bytes.fromhex(code[1:]).decode("latin-1"))
        out.append(pieces[i + 1])
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment with 1-based, typed access (``get(11, 4)`` is SCH-11.4).

    Fields are split once; repetitions, components and subcomponents are split only when a
    reader asks for them, so fields nobody reads cost nothing. Values are stripped of
    surrounding spaces and unescaped; HL7's explicit null ``""`` reads as empty. A field,
    repetition or component that is not there reads as ``""``.
    """

    name: str
    fields: tuple[str, ...]  # fields[n] is field n (for MSH too: fields[1] is MSH-1)
    esc: str
    seps: str  # field, component, repetition, subcomponent separators

    def get(self, field: int, component: int = 1, sub: int = 1, rep: int = 1) -> str:
        if field >= len(self.fields):
            return ""
        value = self.fields[field]
        cs, rs, ss = self.seps[1], self.seps[2], self.seps[3]
        if rep != 1 or rs in value:
            reps = value.split(rs)
            if rep > len(reps):
                return ""
            value = reps[rep - 1]
        if component != 1 or cs in value:
            components = value.split(cs)
            if component > len(components):
                return ""
            value = components[component - 1]
        if sub != 1 or ss in value:
            subs = value.split(ss)
            if sub > len(subs):
                return ""
            value = subs[sub - 1]
        text = value.strip()
        if text == '""':
            return ""
        return unescape(text, self.esc, self.seps) if self.esc in text else text

    def text(self, field: int) -> str:
        """A free-text field (FT/TX) whole: repetitions joined by newlines (HL7 v2.5 2A.31:
        each repetition is a line), stray component/subcomponent separators kept as text
        except trailing ones, escapes undone, surrounding spaces stripped."""
        raw = self.raw(field)
        if not raw:
            return ""
        cs, rs, ss = self.seps[1], self.seps[2], self.seps[3]
        lines = (line.rstrip(cs + ss).strip() for line in raw.split(rs))
        joined = "\n".join(line for line in lines if line and line != '""')
        return unescape(joined, self.esc, self.seps) if self.esc in joined else joined

    def repetitions(self, field: int) -> int:
        """How many repetitions the field has (0 when absent or empty)."""
        if field >= len(self.fields) or not self.fields[field]:
            return 0
        return self.fields[field].count(self.seps[2]) + 1

    def raw(self, field: int) -> str:
        """The field's text as received (separators included), stripped; ``""`` is empty."""
        if field >= len(self.fields):
            return ""
        text = self.fields[field].strip()
        return "" if text == '""' else text


@dataclass(frozen=True, slots=True)
class Message:
    """The projected, parsed message: the segments we read, in order, plus raw Z-segments."""

    segments: tuple[Segment, ...]
    z_segments: tuple[str, ...]

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def first(self, name: str) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None)

    def all(self, name: str) -> Iterator[Segment]:
        return (s for s in self.segments if s.name == name)

    def has(self, name: str) -> bool:
        return any(s.name == name for s in self.segments)


def _project(line: str, name: str, sep: str) -> list[str] | None:
    """The fields of ``line`` the mapping reads (others blanked), or None for a segment it
    does not read. Blanking is a guard as much as a saving: PID-5 (name), PID-7 (birth
    date) and PID-11 (address) can never be read by mistake."""
    if name == "MSH":  # fields[n] is MSH-n: MSH-1 is the separator itself
        parts = line.split(sep, _MSH_TYPE)
        msh9 = parts[_MSH_TYPE - 1] if len(parts) >= _MSH_TYPE else ""
        msh7 = parts[6] if len(parts) > 6 else ""  # the message's time: orders an exam's events
        return ["MSH", sep, parts[1] if len(parts) > 1 else "", "", "", "", "", msh7, "", msh9]
    wanted = FIELDS_READ.get(name)
    if wanted is None:
        return None
    parts = line.split(sep, max(wanted) + 1)[: max(wanted) + 1]
    return [part if i == 0 or i in wanted else "" for i, part in enumerate(parts)]


def read_message(raw: bytes | str) -> Message:
    """Normalise, check MSH-1/MSH-2 and split ``raw`` into the segments the mapping reads.

    Raises :class:`Unprocessable` as :func:`segment_lines` does.
    """
    lines = segment_lines(raw)
    sep, chars = check_encoding_characters(lines[0])
    esc = chars[2]
    seps = sep + chars[0] + chars[1] + chars[3]
    segments: list[Segment] = []
    z_segments: list[str] = []
    for line in lines:
        at = line.find(sep)
        name = line if at < 0 else line[:at]
        if name[:1] == "Z":
            z_segments.append(line)
            continue
        fields = _project(line, name, sep)
        if fields is not None:
            segments.append(Segment(name, tuple(fields), esc, seps))
    return Message(tuple(segments), tuple(z_segments))
