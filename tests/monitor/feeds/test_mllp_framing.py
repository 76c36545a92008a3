"""The MLLP frame decoder, without sockets: every split, every recovery rule."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.feeds.mllp import BrokenFrame, Event, Frame, FrameDecoder, Garbage, Oversize, frame

MSG = b"MSH|^~\\&|EPIC|HOSP|HIRO|RIO|20240102030405||SIU^S12|MSG0001|P|2.5.1\rSCH|1|CSN123\r"

# Message bytes: anything except the two block bytes (HL7 content never holds them).
message_bytes = st.binary(max_size=60).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b""))
garbage_bytes = st.binary(min_size=1, max_size=20).map(lambda b: b.replace(b"\x0b", b""))


def decode(chunks: list[bytes], decoder: FrameDecoder | None = None) -> list[Event]:
    decoder = decoder or FrameDecoder()
    events: list[Event] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return events


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def test_frame_wraps_a_message_in_start_and_end_blocks() -> None:
    assert frame(b"MSH|x") == b"\x0bMSH|x\x1c\r"


@pytest.mark.parametrize("bad", [b"MSH\x0b", b"MSH\x1cx"])
def test_frame_refuses_a_message_holding_block_bytes(bad: bytes) -> None:
    with pytest.raises(ValueError, match="0x0B"):
        frame(bad)


def test_two_frames_in_one_read_are_two_messages() -> None:
    assert decode([frame(b"one") + frame(b"two")]) == [Frame(b"one"), Frame(b"two")]


def test_a_frame_split_at_every_point_decodes_once() -> None:
    data = frame(MSG)
    for cut in range(1, len(data)):
        assert decode([data[:cut], data[cut:]]) == [Frame(MSG)], cut


def test_a_frame_fed_byte_by_byte_decodes_once() -> None:
    data = frame(MSG) + frame(b"second")
    assert decode([data[i : i + 1] for i in range(len(data))]) == [Frame(MSG), Frame(b"second")]


def test_garbage_before_the_start_block_is_skipped_and_counted() -> None:
    assert decode([b"\r\nhello" + frame(b"ok")]) == [Garbage(7), Frame(b"ok")]


def test_garbage_with_no_start_block_is_reported_per_read() -> None:
    assert decode([b"abc", b"de\x1c\r"]) == [Garbage(3), Garbage(4)]


def test_a_new_start_block_inside_a_frame_breaks_the_old_one() -> None:
    events = decode([b"\x0bpartial", b"\x0bgood\x1c\r"])
    assert events == [BrokenFrame(7), Frame(b"good")]


def test_a_broken_frame_and_its_successor_in_one_read() -> None:
    assert decode([b"\x0bab\x0bcd\x1c\r"]) == [BrokenFrame(2), Frame(b"cd")]


def test_an_end_block_without_carriage_return_is_tolerated() -> None:
    decoder = FrameDecoder()
    assert decode([b"\x0bone\x1c\x0btwo\x1c\r"], decoder) == [Frame(b"one"), Frame(b"two")]
    assert decoder.bare_end_blocks == 1


def test_an_end_block_at_the_end_of_a_read_waits_for_its_carriage_return() -> None:
    decoder = FrameDecoder()
    assert decode([b"\x0bone\x1c", b"\r\x0btwo\x1c", b"x"], decoder) == [
        Frame(b"one"),
        Frame(b"two"),
        Garbage(1),
    ]
    assert decoder.bare_end_blocks == 1


def test_an_empty_frame_is_an_empty_message() -> None:
    assert decode([b"\x0b\x1c\r"]) == [Frame(b"")]


def test_in_frame_and_pending_bytes_follow_the_stream() -> None:
    decoder = FrameDecoder()
    assert not decoder.in_frame
    decoder.feed(b"junk\x0bMSH")
    assert decoder.in_frame
    assert decoder.pending_bytes == 3
    decoder.feed(b"|\x1c\r")
    assert not decoder.in_frame
    assert decoder.pending_bytes == 0


def test_a_message_at_the_limit_is_accepted() -> None:
    assert decode([frame(b"x" * 1024)], FrameDecoder(max_message_bytes=1024)) == [Frame(b"x" * 1024)]


@pytest.mark.parametrize("chunk", [1, 7, 100, 5000, 100_000])
def test_an_oversize_frame_reports_its_head_and_size_then_decoding_resumes(chunk: int) -> None:
    big = MSG + b"OBX|" + b"y" * 20_000
    data = frame(big) + frame(b"next")
    decoder = FrameDecoder(max_message_bytes=10_000, head_bytes=4096)
    events = decode([data[i : i + chunk] for i in range(0, len(data), chunk)], decoder)
    assert events == [Oversize(big[:4096], len(big)), Frame(b"next")]
    assert not decoder.in_frame


def test_an_oversize_frame_cut_by_a_start_block_is_broken_not_oversize() -> None:
    decoder = FrameDecoder(max_message_bytes=1024)
    assert decode([b"\x0b" + b"z" * 3000, b"\x0bok\x1c\r"], decoder) == [BrokenFrame(3000), Frame(b"ok")]


def test_a_large_message_in_small_reads_is_decoded_without_rescanning() -> None:
    # Linear work: 1024 reads of 4 KiB; a decoder that re-scanned its buffer would do ~2 GB.
    big = b"A" * (4 * 1024 * 1024)
    data = frame(big)
    decoder = FrameDecoder(max_message_bytes=8 * 1024 * 1024)
    assert decode([data[i : i + 4096] for i in range(0, len(data), 4096)], decoder) == [Frame(big)]


@given(messages=st.lists(message_bytes, max_size=8), cuts=st.lists(st.integers(min_value=0), max_size=12))
def test_any_messages_split_anywhere_decode_to_the_same_messages(
    messages: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(frame(m) for m in messages)
    assert decode(split_at(data, cuts)) == [Frame(m) for m in messages]


@given(
    parts=st.lists(st.tuples(garbage_bytes | st.just(b""), message_bytes), max_size=8),
    cuts=st.lists(st.integers(min_value=0), max_size=12),
)
def test_garbage_between_frames_is_skipped_and_every_frame_is_kept(
    parts: list[tuple[bytes, bytes]], cuts: list[int]
) -> None:
    data = b"".join(junk + frame(message) for junk, message in parts)
    events = decode(split_at(data, cuts))
    assert [e for e in events if not isinstance(e, Garbage)] == [Frame(m) for _, m in parts]
    assert sum(e.size for e in events if isinstance(e, Garbage)) == sum(len(j) for j, _ in parts)
