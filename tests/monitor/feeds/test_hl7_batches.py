"""Splitting HL7 files and streams into messages for replay."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.feeds.hl7.batches import iter_messages


def msg(n: int) -> bytes:
    return (
        f"MSH|^~\\&|EPIC|HOSP|HIRO|RI|20260310||SIU^S12|C{n}|P|2.3\r"
        f"SCH|1|{n}\r"
        "PID|1||E1^^^EPI^MR||TEST^PATIENT\r"
    ).encode()


THREE = [msg(1), msg(2), msg(3)]


def split(data: bytes) -> list[bytes]:
    return list(iter_messages(io.BytesIO(data)))


def test_one_message_per_file_comes_back_unchanged() -> None:
    assert split(msg(1)) == [msg(1)]


def test_back_to_back_messages_are_split_at_each_msh() -> None:
    assert split(b"".join(THREE)) == THREE


@pytest.mark.parametrize(
    ("line_end", "between"),
    [
        pytest.param(b"\n", b"\n", id="LF-blank-line"),
        pytest.param(b"\r\n", b"\r\n", id="CRLF-blank-line"),
        pytest.param(b"\r", b"\r\r", id="CR-two-blank-lines"),
        pytest.param(b"\r\r\n", b"", id="CR-CRLF-segment-ends"),
        pytest.param(b"\r\n", b"\n  \t\n", id="whitespace-lines"),
    ],
)
def test_line_ends_and_blank_lines_between_messages(line_end: bytes, between: bytes) -> None:
    data = between.join(m.replace(b"\r", line_end) for m in THREE)
    assert split(data) == THREE


def test_batch_and_file_envelopes_are_dropped() -> None:
    data = (
        b"FHS|^~\\&|EPIC|HOSP||||20260310\r"
        b"BHS|^~\\&|EPIC|HOSP||||20260310\r" + msg(1) + msg(2) + b"BTS|2\r"
        b"BHS|^~\\&|EPIC|HOSP||||20260310\r" + msg(3) + b"BTS|1\rFTS|2\r"
    )
    assert split(data) == THREE


def test_bom_and_mllp_framing_bytes_are_removed() -> None:
    data = b"\xef\xbb\xbf" + b"".join(b"\x0b" + m + b"\x1c\r" for m in THREE)
    assert split(data) == THREE


def test_a_bom_at_the_start_of_each_concatenated_file_is_removed() -> None:
    assert split(b"".join(b"\xef\xbb\xbf" + m for m in THREE)) == THREE


def test_lines_before_the_first_msh_are_kept_as_their_own_chunk() -> None:
    assert split(b"garbage line\rmore\r" + msg(1)) == [b"garbage line\rmore\r", msg(1)]


def test_a_stray_newline_inside_a_segment_stays_in_its_message() -> None:
    broken = msg(1).replace(b"TEST^PATIENT", b"TEST^\nPATIENT")
    assert split(broken + msg(2)) == [msg(1).replace(b"TEST^PATIENT", b"TEST^\rPATIENT"), msg(2)]


def test_a_file_without_a_final_line_end_is_complete() -> None:
    assert split(b"".join(THREE).rstrip(b"\r")) == THREE


def test_each_corpus_file_is_one_message(corpus_dir: Path) -> None:
    for path in sorted((corpus_dir / "hl7").glob("*.hl7")):
        with path.open("rb") as stream:
            found = list(iter_messages(stream))
        assert len(found) == 1, path.name
        assert found[0] == path.read_bytes().removeprefix(b"\xef\xbb\xbf").rstrip(b"\r") + b"\r", path.name


@given(chunk=st.integers(min_value=1, max_value=64), line_end=st.sampled_from([b"\r", b"\n", b"\r\n"]))
def test_chunk_boundaries_anywhere_give_the_same_messages(chunk: int, line_end: bytes) -> None:
    data = b"\xef\xbb\xbf" + b"\n".join(m.replace(b"\r", line_end) for m in THREE)
    assert list(iter_messages(io.BytesIO(data), chunk_bytes=chunk)) == THREE


class GeneratedStream(io.RawIOBase):
    """A read-only stream backed by a generator, counting how much was pulled from it."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self.pieces = pieces
        self.pulled = 0
        self.left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if not self.left:
            self.left = next(self.pieces, b"")
            self.pulled += 1 if self.left else 0
        size = min(len(buffer), len(self.left))
        buffer[:size] = self.left[:size]
        self.left = self.left[size:]
        return size


def test_a_huge_stream_is_iterated_lazily() -> None:
    stream = GeneratedStream(msg(n) for n in range(100_000))
    messages = iter_messages(cast(BinaryIO, stream))
    first = [next(messages) for _ in range(3)]
    assert first == [msg(0), msg(1), msg(2)]
    assert stream.pulled < 10  # three messages needed a handful of reads, not 100,000


def test_a_long_stream_is_iterated_completely_in_order() -> None:
    stream = GeneratedStream(msg(n) for n in range(20_000))
    count = 0
    for count, message in enumerate(iter_messages(cast(BinaryIO, stream)), start=1):
        assert message == msg(count - 1)
    assert count == 20_000
