"""Split an HL7 v2 file or stream into messages, for replay (HL7 v2.5 section 2.10.3, batches).

Accepts, in any mix: one message per file; messages one after another, with or without
blank lines between them; batch and file envelopes (FHS/BHS ... BTS/FTS, which are
dropped); CR, LF or CRLF line ends; a UTF-8 BOM at the start (of the file or of each file
that was concatenated into it); MLLP framing bytes (0x0b, 0x1c), which are removed.

A message starts at each MSH line and ends before the next MSH or envelope segment. Blank
lines are ignored rather than treated as boundaries, because some senders end segments with
``CR CRLF``, which would otherwise cut every message into pieces. Lines before the first
MSH are not thrown away: they are yielded together as one "message" that the mapping will
reject (no MSH), so a replay never silently loses input.

It streams: the input is read in fixed-size chunks and each message is yielded as soon as
the next one starts, so memory is bounded by the largest message, not the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

CHUNK_BYTES = 64 * 1024
_BOM = b"\xef\xbb\xbf"
_ENVELOPE = (b"FHS", b"BHS", b"BTS", b"FTS")


def _lines(stream: BinaryIO, chunk_bytes: int) -> Iterator[bytes]:
    """Lines of the stream without their CR, LF or CRLF ends (and without MLLP bytes)."""
    pending = b""
    while True:
        chunk = stream.read(chunk_bytes)
        if not chunk:
            break
        if b"\x0b" in chunk or b"\x1c" in chunk:
            chunk = chunk.replace(b"\x0b", b"").replace(b"\x1c", b"")
        pending += chunk
        # A CR at the end may be the first half of a CRLF: keep it for the next chunk.
        cut = len(pending) - 1 if pending.endswith(b"\r") else len(pending)
        start = 0
        while True:
            cr, lf = pending.find(b"\r", start, cut), pending.find(b"\n", start, cut)
            ends = [i for i in (cr, lf) if i >= 0]
            if not ends:
                break
            end = min(ends)
            yield pending[start:end]
            start = end + (2 if pending[end : end + 2] == b"\r\n" else 1)
        pending = pending[start:]
    if pending.rstrip(b"\r"):
        yield pending.rstrip(b"\r")


def iter_messages(stream: BinaryIO, *, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Yield each message in ``stream`` as bytes, segments ended by CR.

    Reads ``stream`` (a binary file object) lazily, ``chunk_bytes`` at a time. Raises only
    what ``stream.read`` raises (``OSError``), or :class:`ValueError` for ``chunk_bytes < 1``.
    """
    if chunk_bytes < 1:
        raise ValueError("chunk_bytes must be at least 1")
    current: list[bytes] = []
    for line in _lines(stream, chunk_bytes):
        if line.startswith(_BOM):
            line = line[len(_BOM) :]
        head = line.lstrip(b" \t")
        if not head:
            continue
        if head.startswith(b"MSH") or head[:3] in _ENVELOPE:
            if current:
                yield b"\r".join(current) + b"\r"
                current = []
            if head.startswith(b"MSH"):
                current.append(head)
            continue
        current.append(line)
    if current:
        yield b"\r".join(current) + b"\r"
