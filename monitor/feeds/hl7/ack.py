"""HL7 v2 acknowledgements (original mode, HL7 v2.5 section 2.9.2) and cheap MSH reads.

:func:`message_key` and :func:`message_type` are on the listener's hot path: they split
only the MSH line and never parse the message.

Choices in :func:`build_ack`:

* MSA-2 echoes the original MSH-10 exactly as received, leading spaces included (corpus
  ORSOS sends ``" 38762"``). The sender matches MSA-2 against the id it sent, and MSH-10 is
  an ST, whose leading spaces are significant, so trimming could make it miss its own ACK.
  (:func:`message_key` does trim: that is our duplicate check, not the sender's.)
* The original's encoding characters are used when they are valid, and its MSH-3..6 are
  then echoed byte for byte (swapped). When they are not, the ACK uses ``|^~\\&`` and the
  echoed values are escaped. Without any MSH the ACK is minimal, with an empty MSA-2.
* MSH-11 and MSH-12 are echoed; empty ones become ``P`` and ``2.5``.
* An AE/AR gets an ERR segment: ERR-3 (table 0357 ``code^text^HL70357``), ERR-4 ``E``,
  ERR-8 the caller's text. For a v2.4 or older sender, whose ERR has no ERR-8, the text
  also goes into MSA-3. The text must be PHI-free (the caller passes plain reasons).
* MSH-10 of the ACK is ``control_id`` or, when not given, derived from the message and the
  time (``A`` and 19 hex digits of a SHA-256), so the function stays pure.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from monitor.clock import SYSTEM_CLOCK
from monitor.feeds.hl7.message import MLLP_BYTES, Unprocessable, check_encoding_characters, decode
from monitor.feeds.hl7.timestamps import format_ts

DEFAULT_SEPARATOR = "|"
DEFAULT_ENCODING = "^~\\&"
ERR_TEXT_MAX = 250  # ERR-8 user message, TX(250) in HL7 v2.5

# HL7 table 0357, message error condition codes (text for ERR-3.2).
ERROR_CONDITIONS = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "104": "Value too long",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}

_START_BYTES = b"\xef\xbb\xbf" + MLLP_BYTES.encode() + b" \t\r\n"
_START_CHARS = "\ufeff" + MLLP_BYTES + " \t\r\n"


def _msh_line(raw: bytes | str) -> str | None:
    """The MSH line (up to the first CR or LF) without decoding the rest, or None."""
    if isinstance(raw, bytes):
        body = raw.lstrip(_START_BYTES)
        if not body.startswith(b"MSH"):
            return None
        end = min((i for i in (body.find(b"\r"), body.find(b"\n")) if i >= 0), default=len(body))
        return decode(body[:end])
    text = raw.lstrip(_START_CHARS)
    if not text.startswith("MSH"):
        return None
    end = min((i for i in (text.find("\r"), text.find("\n")) if i >= 0), default=len(text))
    return text[:end]


def _msh_fields(line: str | None) -> list[str]:
    """MSH fields indexed by field number (``[10]`` is MSH-10); empty when unusable."""
    if line is None or len(line) < 4:
        return []
    sep = line[3]
    if sep.isalnum() or sep.isspace():
        return []
    return ["MSH", sep, *line[4:].split(sep)]


def _field(fields: list[str], number: int) -> str:
    return fields[number] if number < len(fields) else ""


def message_key(raw: bytes | str) -> tuple[str, str, str] | None:
    """``(MSH-3, MSH-4, MSH-10)``, each stripped, for duplicate detection (a resent message
    has the same key). None when there is no readable MSH or MSH-10 is empty."""
    fields = _msh_fields(_msh_line(raw))
    control_id = _field(fields, 10).strip()
    if not control_id:
        return None
    return _field(fields, 3).strip(), _field(fields, 4).strip(), control_id


def message_type(raw: bytes | str) -> str:
    """MSH-9 components 1 and 2 as ``SIU^S12`` (``""`` when absent). Never raises."""
    line = _msh_line(raw)
    fields = _msh_fields(line)
    value = _field(fields, 9)
    if not value:
        return ""
    try:
        component = check_encoding_characters(line or "")[1][0]
    except Unprocessable:
        component = "^"
    parts = [p.strip() for p in value.split(component)[:2]]
    return f"{parts[0]}^{parts[1]}" if len(parts) > 1 and parts[1] else parts[0]


def _escape(value: str, sep: str, enc: str) -> str:
    """Escape separators in ``value`` (HL7 v2.5 section 2.7.1); line breaks become spaces."""
    esc = enc[2]
    out = value.replace(esc, f"{esc}E{esc}")
    for char, code in ((sep, "F"), (enc[0], "S"), (enc[1], "R"), (enc[3], "T")):
        out = out.replace(char, f"{esc}{code}{esc}")
    return out.replace("\r", " ").replace("\n", " ")


def _version_before_2_5(version: str) -> bool:
    try:
        numbers = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    return numbers < (2, 5)


def build_ack(
    raw: bytes | str,
    code: Literal["AA", "AE", "AR"],
    *,
    error_code: str | None = None,
    text: str | None = None,
    now: datetime | None = None,
    control_id: str | None = None,
) -> bytes:
    """The ACK for ``raw`` as UTF-8 bytes, segments ended by CR, without MLLP framing.

    Works for any input, including text with no MSH at all. ``error_code`` (table 0357,
    default 207) and ``text`` go into ERR when ``code`` is not AA. ``now`` must be aware
    (default: the current UTC time). Raises :class:`ValueError` for an unknown ``code`` or
    a naive ``now``.
    """
    if code not in ("AA", "AE", "AR"):
        raise ValueError(f"ACK code must be AA, AE or AR, not {code!r}")
    moment = now if now is not None else SYSTEM_CLOCK()
    if moment.utcoffset() is None:
        raise ValueError("build_ack needs a timezone-aware 'now'")
    line = _msh_line(raw)
    fields = _msh_fields(line)
    try:
        sep, enc = check_encoding_characters(line or "")
        verbatim = True
    except Unprocessable:
        sep, enc, verbatim = DEFAULT_SEPARATOR, DEFAULT_ENCODING, False

    def echo(number: int) -> str:
        value = _field(fields, number)
        return value if verbatim else _escape(value, sep, enc)

    trigger = _field(fields, 9).split(enc[0])[1:2] if verbatim else []
    stamp = format_ts(moment.replace(microsecond=0))
    if control_id is None:
        seed = raw.encode("utf-8", "replace") if isinstance(raw, str) else raw
        control_id = "A" + hashlib.sha256(seed + stamp.encode() + code.encode()).hexdigest()[:19].upper()
    version = echo(12) or "2.5"
    cs = enc[0]
    msh = [
        "MSH",
        enc,
        echo(5),
        echo(6),
        echo(3),
        echo(4),
        stamp,
        "",
        f"ACK{cs}{trigger[0] if trigger else ''}{cs}ACK",
        _escape(control_id, sep, enc),
        echo(11) or "P",
        version,
    ]
    msa = ["MSA", code, echo(10)]
    segments = [msh[0] + sep + sep.join(msh[1:]), sep.join(msa)]
    if code != "AA":
        condition = error_code or "207"
        name = ERROR_CONDITIONS.get(condition, "Application error")
        message = _escape((text or name)[:ERR_TEXT_MAX], sep, enc)
        if _version_before_2_5(version.split(cs)[0]):
            segments[1] += sep + message  # MSA-3, for senders whose ERR has no ERR-8
        err = [
            "ERR",
            "",
            "",
            f"{_escape(condition, sep, enc)}{cs}{name}{cs}HL70357",
            "E",
            "",
            "",
            "",
            message,
        ]
        segments.append(sep.join(err))
    return ("\r".join(segments) + "\r").encode("utf-8", "replace")  # "replace": lone surrogates
