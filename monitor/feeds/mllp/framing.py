"""MLLP framing: a pure, incremental decoder and the one-line encoder.

MLLP (HL7 Version 3 Standard: Transport Specification - MLLP, Release 2) wraps each
message as ``<VT> message <FS><CR>``: start block 0x0B, the message bytes, end block 0x1C
followed by 0x0D. TCP delivers a byte stream, so one read may hold several frames, part of
one, or bytes that belong to no frame at all; :class:`FrameDecoder` turns reads into events.

Recovery rules (each one is a sender bug seen in the field, none of them raises):

- bytes outside a frame (before a start block) are skipped and reported as :class:`Garbage`;
- a start block inside a frame means the current frame lost its end block: the partial
  frame is reported as :class:`BrokenFrame` (never as a message) and the new frame starts;
- an end block not followed by 0x0D is tolerated: the frame is accepted at the 0x1C and the
  next byte is read as the start of whatever follows (counted in
  :attr:`FrameDecoder.bare_end_blocks`). HL7 content never contains 0x1C, so accepting early
  cannot cut a real message short;
- a frame longer than ``max_message_bytes`` is reported once, at its end block, as
  :class:`Oversize` with its first ``head_bytes`` bytes (enough to read MSH and answer with
  an AR ACK); the rest is discarded without being kept in memory.

The decoder only looks at each byte a bounded number of times and never re-scans what it has
buffered, so decoding is O(n) in the bytes fed, however the stream is split.
"""

from __future__ import annotations

from dataclasses import dataclass

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = 0x0D
TRAILER = b"\x1c\r"

#: How much of an oversize frame is kept: MSH plus a few segments, enough for an ACK.
DEFAULT_HEAD_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete message, without its start and end blocks."""

    message: bytes


@dataclass(frozen=True, slots=True)
class Oversize:
    """A complete frame whose message had ``size`` bytes, more than the limit; ``head`` is its start."""

    head: bytes
    size: int


@dataclass(frozen=True, slots=True)
class BrokenFrame:
    """A frame cut off by a new start block before its end block; ``size`` bytes were dropped."""

    size: int


@dataclass(frozen=True, slots=True)
class Garbage:
    """``size`` bytes outside any frame, skipped."""

    size: int


Event = Frame | Oversize | BrokenFrame | Garbage


def frame(message: bytes) -> bytes:
    """Wrap ``message`` in MLLP start and end blocks.

    Raises :class:`ValueError` if the message contains a start (0x0B) or end (0x1C) block
    byte: the receiver would split it, so such a message cannot be sent over MLLP.
    """
    if START_BLOCK in message or END_BLOCK in message:
        raise ValueError("an MLLP message must not contain 0x0B or 0x1C")
    return START_BLOCK + message + TRAILER


class FrameDecoder:
    """Incremental MLLP decoder for one connection: :meth:`feed` bytes, get events back.

    Pure: no I/O, no clock, no logging; the caller decides what each event means. One
    instance per connection, not thread-safe. ``feed`` never raises on any input.
    """

    __slots__ = (
        "_buffer",
        "_expect_cr",
        "_head_bytes",
        "_in_frame",
        "_max",
        "_oversize",
        "_size",
        "bare_end_blocks",
    )

    def __init__(self, max_message_bytes: int = 1_048_576, head_bytes: int = DEFAULT_HEAD_BYTES) -> None:
        if max_message_bytes < 1 or head_bytes < 1:
            raise ValueError("max_message_bytes and head_bytes must be positive")
        self._max = max_message_bytes
        self._head_bytes = head_bytes
        self._in_frame = False
        self._buffer = bytearray()  # the current frame so far (only its head once oversize)
        self._size = 0  # bytes of the current frame seen so far, kept or not
        self._oversize = False
        self._expect_cr = False  # the last byte fed was an end block
        #: End blocks that were not followed by 0x0D (tolerated, see the module docstring).
        self.bare_end_blocks = 0

    @property
    def in_frame(self) -> bool:
        """True while a frame has started and its end block has not arrived yet."""
        return self._in_frame

    @property
    def pending_bytes(self) -> int:
        """Size of the frame in progress (0 outside a frame): what a disconnect now would drop."""
        return self._size

    def feed(self, data: bytes) -> list[Event]:
        """Consume ``data`` (any split of the stream) and return the events it completes, in order."""
        events: list[Event] = []
        end = len(data)
        pos = 0
        if self._expect_cr and end:
            self._expect_cr = False
            if data[0] == CARRIAGE_RETURN:
                pos = 1
            else:
                self.bare_end_blocks += 1
        while pos < end:
            if not self._in_frame:
                start = data.find(START_BLOCK, pos)
                if start < 0:
                    events.append(Garbage(end - pos))
                    break
                if start > pos:
                    events.append(Garbage(start - pos))
                self._in_frame = True
                pos = start + 1
                continue
            # Inside a frame: it runs to the end block, unless a start block comes first.
            # Searching for the start block only up to the end block keeps each byte scanned
            # at most twice.
            stop = data.find(END_BLOCK, pos)
            complete = stop >= 0
            if not complete:
                stop = end
            restart = data.find(START_BLOCK, pos, stop)
            if restart >= 0:
                self._take(data, pos, restart)
                events.append(BrokenFrame(self._size))
                self._reset()
                self._in_frame = True
                pos = restart + 1
                continue
            if not complete:
                self._take(data, pos, end)
                break
            events.append(self._complete(data, pos, stop))
            pos = stop + 1
            if pos == end:
                self._expect_cr = True
            elif data[pos] == CARRIAGE_RETURN:
                pos += 1
            else:
                self.bare_end_blocks += 1
        return events

    def _take(self, data: bytes, start: int, stop: int) -> None:
        """Add ``data[start:stop]`` to the frame in progress, switching to discard past the limit."""
        size = self._size + (stop - start)
        if self._oversize:
            self._size = size
            return
        if size > self._max:
            self._oversize = True
            room = self._head_bytes - len(self._buffer)
            if room > 0:
                self._buffer += memoryview(data)[start : start + room]
            else:
                del self._buffer[self._head_bytes :]
        else:
            self._buffer += memoryview(data)[start:stop]
        self._size = size

    def _complete(self, data: bytes, start: int, stop: int) -> Frame | Oversize:
        """Finish the frame in progress with ``data[start:stop]`` as its last bytes."""
        if not self._buffer and not self._oversize and stop - start <= self._max:
            # The whole frame arrived in this read (the usual case): one copy, no buffer.
            message = data[start:stop]
            self._reset()
            return Frame(message)
        self._take(data, start, stop)
        kept = bytes(self._buffer)
        event = Oversize(kept, self._size) if self._oversize else Frame(kept)
        self._reset()
        return event

    def _reset(self) -> None:
        self._in_frame = False
        self._buffer = bytearray()
        self._size = 0
        self._oversize = False
