"""The MLLP listener over real loopback sockets (port 0), with a recording handler."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from monitor.config import ConfigError, MllpSettings
from monitor.feeds.mllp import MllpServer, Peer, frame
from tests.tls import make_certificate

PHI = b"SMITH^JOHN^Q||19600101"
MSG = b"MSH|^~\\&|EPIC|HOSP|HIRO|RIO|20240102||SIU^S12|M1|P|2.5.1\rPID|1||12345^^^MRN||" + PHI + b"\r"
SHORT = b"MSH|^~\\&|EPIC|HOSP|HIRO|RIO|1||ADT^A08|M2|P|2.5"


class Recorder:
    """Records every message; answers ``ACK:`` + the first 20 bytes (``AR:`` for oversize)."""

    def __init__(
        self, delay: float = 0.0, fail_on: bytes | None = None, silent_on: bytes | None = None
    ) -> None:
        self.delay = delay
        self.fail_on = fail_on
        self.silent_on = silent_on
        self.messages: list[tuple[bytes, Peer]] = []
        self.oversize: list[tuple[bytes, int, Peer]] = []
        self.started = asyncio.Event()
        self.in_flight: dict[int, int] = {}
        self.most_in_flight = 0

    async def on_message(self, message: bytes, peer: Peer) -> bytes | None:
        self.started.set()
        count = self.in_flight[peer.connection_id] = self.in_flight.get(peer.connection_id, 0) + 1
        self.most_in_flight = max(self.most_in_flight, count)
        try:
            await asyncio.sleep(self.delay)
            if self.fail_on is not None and self.fail_on in message:
                raise ValueError(f"cannot parse {message!r}")  # content in the error: must not be logged
            self.messages.append((message, peer))
            if self.silent_on is not None and self.silent_on in message:
                return None
            return b"ACK:" + message[:20]
        finally:
            self.in_flight[peer.connection_id] -= 1

    async def on_oversize(self, head: bytes, size: int, peer: Peer) -> bytes | None:
        self.oversize.append((head, size, peer))
        return b"AR:" + head[:20]


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run one async test body with a hard ceiling, so a hang fails instead of stalling the suite."""

    async def bounded() -> None:
        async with asyncio.timeout(8):
            await test()

    asyncio.run(bounded())


@asynccontextmanager
async def serving(handler: Recorder, **overrides: Any) -> AsyncIterator[MllpServer]:
    server = MllpServer(MllpSettings(host="127.0.0.1", port=0, **overrides), handler)
    await server.start()
    try:
        yield server
    finally:
        await server.close(grace=1.0)


async def connect(
    server: MllpServer, tls: ssl.SSLContext | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=tls)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


async def send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def read_ack(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(3):
        data = await reader.readuntil(b"\x1c\r")
    assert data[:1] == b"\x0b"
    return data[1:-2]


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Whatever the server still sends, once it has closed the connection (reset counts as closed)."""
    try:
        async with asyncio.timeout(3):
            return await reader.read()
    except ConnectionResetError:
        return b""


async def eventually(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)


def ack_for(message: bytes) -> bytes:
    return b"ACK:" + message[:20]


def test_two_frames_in_one_send_are_both_acknowledged_in_order() -> None:
    handler = Recorder()

    async def body() -> None:
        async with serving(handler) as server:
            reader, writer = await connect(server)
            await send(writer, frame(MSG) + frame(SHORT))
            assert await read_ack(reader) == ack_for(MSG)
            assert await read_ack(reader) == ack_for(SHORT)
            writer.close()
            assert server.stats.frames == 2

    run(body)
    assert [m for m, _ in handler.messages] == [MSG, SHORT]
    peer = handler.messages[0][1]
    assert peer.host == "127.0.0.1"
    assert peer.port > 0


def test_a_frame_split_at_every_point_is_handled_once() -> None:
    handler = Recorder()
    data = frame(SHORT)

    async def body() -> None:
        async with serving(handler) as server:
            reader, writer = await connect(server)
            for cut in range(1, len(data)):
                await send(writer, data[:cut])
                await asyncio.sleep(0.002)  # let the first part arrive as its own read
                await send(writer, data[cut:])
                assert await read_ack(reader) == ack_for(SHORT)
            writer.close()

    run(body)
    assert len(handler.messages) == len(data) - 1


def test_a_frame_sent_byte_by_byte_is_handled_once() -> None:
    handler = Recorder()

    async def body() -> None:
        async with serving(handler) as server:
            reader, writer = await connect(server)
            for byte in frame(SHORT):
                await send(writer, bytes([byte]))
                await asyncio.sleep(0.001)
            assert await read_ack(reader) == ack_for(SHORT)
            writer.close()

    run(body)
    assert [m for m, _ in handler.messages] == [SHORT]


def test_garbage_before_the_start_block_is_skipped_and_the_frame_acknowledged() -> None:
    handler = Recorder()

    async def body() -> None:
        async with serving(handler) as server:
            reader, writer = await connect(server)
            await send(writer, b"\r\nnoise" + frame(SHORT))
            assert await read_ack(reader) == ack_for(SHORT)
            writer.close()
            assert server.stats.garbage_bytes == 7

    run(body)
    assert [m for m, _ in handler.messages] == [SHORT]


def test_a_frame_missing_its_end_block_is_dropped_and_the_next_one_handled() -> None:
    handler = Recorder()

    async def body() -> None:
        async with serving(handler) as server:
            reader, writer = await connect(server)
            await send(writer, b"\x0bMSH|cut short" + frame(SHORT))
            assert await read_ack(reader) == ack_for(SHORT)
            writer.close()
            assert server.stats.broken_frames == 1

    run(body)
    assert [m for m, _ in handler.messages] == [SHORT]


def test_an_oversize_message_gets_the_oversize_ack_and_the_connection_keeps_working() -> None:
    handler = Recorder()
    big = MSG + b"OBX|" + b"y" * 5000

    async def body() -> None:
        async with serving(handler, max_message_bytes=1024) as server:
            reader, writer = await connect(server)
            await send(writer, frame(big))
            assert await read_ack(reader) == b"AR:" + big[:20]
            await send(writer, frame(SHORT))
            assert await read_ack(reader) == ack_for(SHORT)
            writer.close()
            assert server.stats.oversize == 1

    run(body)
    assert [(head, size) for head, size, _ in handler.oversize] == [(big[:4096], len(big))]
    assert [m for m, _ in handler.messages] == [SHORT]


def test_a_client_leaving_mid_frame_drops_the_frame_and_the_server_carries_on() -> None:
    handler = Recorder()

    async def body() -> None:
        async with serving(handler) as server:
            _, writer = await connect(server)
            await send(writer, b"\x0bMSH|half a message")
            writer.close()
            await eventually(
                lambda: server.stats.connections_total == 1 and server.stats.connections_open == 0
            )
            assert server.stats.broken_frames == 1
            reader, writer = await connect(server)
            await send(writer, frame(SHORT))
            assert await read_ack(reader) == ack_for(SHORT)
            writer.close()

    run(body)
    assert [m for m, _ in handler.messages] == [SHORT]


def test_a_trickling_sender_is_cut_off_at_the_message_deadline() -> None:
    handler = Recorder()

    async def trickle(writer: asyncio.StreamWriter) -> None:
        try:
            await send(writer, b"\x0bMSH|")
            while True:
                await asyncio.sleep(0.05)
                await send(writer, b"x")  # never idle, never finished
        except OSError:
            return

    async def body() -> None:
        async with serving(handler, message_deadline_seconds=0.3, idle_timeout_seconds=5) as server:
            reader, writer = await connect(server)
            started = time.monotonic()
            trickler = asyncio.create_task(trickle(writer))
            assert await read_until_closed(reader) == b""
            elapsed = time.monotonic() - started
            trickler.cancel()
            writer.close()
            assert 0.25 < elapsed < 2.0
            assert server.stats.timeouts == 1

    run(body)
    assert handler.messages == []


def test_an_idle_connection_is_closed_after_the_idle_timeout() -> None:
    handler = Recorder()

    async def body() -> None:
        async with serving(handler, idle_timeout_seconds=0.2) as server:
            reader, writer = await connect(server)
            await send(writer, frame(SHORT))
            assert await read_ack(reader) == ack_for(SHORT)
            started = time.monotonic()
            assert await read_until_closed(reader) == b""
            assert 0.15 < time.monotonic() - started < 2.0
            writer.close()
            assert server.stats.timeouts == 1

    run(body)


def test_routine_connections_log_at_debug_and_what_an_operator_acts_on_at_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An interface engine may connect once per message: opening, idling out and closing
    must not fill the daemon's INFO log; bytes outside a frame still warn."""
    handler = Recorder()

    async def body() -> None:
        async with serving(handler, idle_timeout_seconds=0.2) as server:
            for data in (frame(SHORT), b"\r\n" + frame(SHORT)):
                reader, writer = await connect(server)
                await send(writer, data)
                assert await read_ack(reader) == ack_for(SHORT)
                assert await read_until_closed(reader) == b""  # closed after the idle timeout
                writer.close()
            await eventually(lambda: server.stats.connections_open == 0)

    caplog.set_level(logging.DEBUG, logger="monitor.mllp")
    run(body)
    by_level: dict[int, list[str]] = {}
    for record in caplog.records:
        by_level.setdefault(record.levelno, []).append(record.getMessage())
    words = (" opened from ", " closed (", "idle for")
    routine = [m for m in by_level[logging.DEBUG] if any(word in m for word in words)]
    assert len(routine) == 6  # two connections: opened, idle, closed
    assert [m.split(": ")[-1] for m in by_level[logging.WARNING]] == ["skipped 2 bytes outside a frame"]
    assert all("conn=" not in m for m in by_level[logging.INFO])  # only the listener starting, closing


def test_a_sender_outside_allowed_senders_is_closed_without_handling() -> None:
    handler = Recorder()

    async def body() -> None:
        async with serving(handler, allowed_senders=("10.0.0.0/8",)) as server:
            reader, writer = await connect(server)
            with suppress(OSError):  # the server may already have closed it
                await send(writer, frame(SHORT))
            assert await read_until_closed(reader) == b""
            writer.close()
            assert server.stats.rejected_peers == 1
            assert server.stats.connections_total == 0

    run(body)
    assert handler.messages == []


def test_a_sender_inside_allowed_senders_is_served() -> None:
    handler = Recorder()

    async def body() -> None:
        async with serving(handler, allowed_senders=("10.0.0.0/8", "127.0.0.1")) as server:
            reader, writer = await connect(server)
            await send(writer, frame(SHORT))
            assert await read_ack(reader) == ack_for(SHORT)
            writer.close()

    run(body)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"allowed_senders": ("10.0.0.0/8", "hospital.example")}, "allowed_senders"),
        ({"tls_certificate": "cert.pem"}, "tls_private_key"),
    ],
)
def test_unusable_listener_settings_are_refused_by_name(overrides: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        MllpServer(MllpSettings(**overrides), Recorder())


def test_twenty_connections_pipelining_fifty_messages_are_all_acknowledged_in_order() -> None:
    handler = Recorder()

    async def client(server: MllpServer, number: int) -> list[bytes]:
        reader, writer = await connect(server)
        messages = [b"MSH|^~\\&|c%02d|m%03d|" % (number, i) for i in range(50)]
        await send(writer, b"".join(frame(m) for m in messages))
        acks = [await read_ack(reader) for _ in messages]
        writer.close()
        assert acks == [ack_for(m) for m in messages]
        return messages

    async def body() -> None:
        async with serving(handler) as server:
            sent = await asyncio.gather(*(client(server, n) for n in range(20)))
            assert server.stats.connections_total == 20
            by_connection: dict[int, list[bytes]] = {}
            for message, peer in handler.messages:
                by_connection.setdefault(peer.connection_id, []).append(message)
            assert sorted(by_connection.values()) == sorted(sent)

    run(body)
    assert len(handler.messages) == 1000
    assert handler.most_in_flight == 1  # one message in flight per connection


def test_tls_senders_are_served_with_tls_1_2_or_newer(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    handler = Recorder()
    client_tls = ssl.create_default_context(cafile=str(cert))

    async def body() -> None:
        async with serving(handler, tls_certificate=str(cert), tls_private_key=str(key)) as server:
            reader, writer = await connect(server, tls=client_tls)
            assert writer.get_extra_info("ssl_object").version() in {"TLSv1.2", "TLSv1.3"}
            await send(writer, frame(MSG) + frame(SHORT))
            assert await read_ack(reader) == ack_for(MSG)
            assert await read_ack(reader) == ack_for(SHORT)
            writer.close()

    run(body)
    assert [m for m, _ in handler.messages] == [MSG, SHORT]


def test_a_plaintext_sender_to_a_tls_listener_is_closed_without_handling(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    handler = Recorder()

    async def body() -> None:
        async with serving(handler, tls_certificate=str(cert), tls_private_key=str(key)) as server:
            reader, writer = await connect(server)
            await send(writer, frame(SHORT))
            assert await read_until_closed(reader) == b""
            writer.close()

    run(body)
    assert handler.messages == []


def test_missing_tls_files_fail_before_anything_starts_naming_the_setting(tmp_path: Path) -> None:
    settings = MllpSettings(
        port=0, tls_certificate=str(tmp_path / "no.pem"), tls_private_key=str(tmp_path / "no.key")
    )
    with pytest.raises(ConfigError, match="tls_certificate"):
        MllpServer(settings, Recorder())


def test_a_handler_error_or_no_ack_sends_nothing_and_the_connection_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = Recorder(fail_on=b"BOOM", silent_on=b"QUIET")
    boom, quiet = MSG + b"NTE|1||BOOM\r", MSG + b"NTE|1||QUIET\r"

    async def body() -> None:
        async with serving(handler) as server:
            reader, writer = await connect(server)
            await send(writer, frame(boom) + frame(quiet) + frame(SHORT))
            assert await read_ack(reader) == ack_for(SHORT)  # the first ACK is the third message's
            writer.close()

    caplog.set_level(logging.INFO, logger="monitor.mllp")
    run(body)
    assert [m for m, _ in handler.messages] == [quiet, SHORT]
    assert any("ValueError" in r.getMessage() for r in caplog.records)


def test_close_lets_a_slow_message_finish_and_refuses_new_connections() -> None:
    handler = Recorder(delay=0.3)

    async def body() -> None:
        server = MllpServer(MllpSettings(host="127.0.0.1", port=0), handler)
        await server.start()
        port = server.port
        idle_reader, idle_writer = await connect(server)
        reader, writer = await connect(server)
        await send(writer, frame(SHORT))
        await handler.started.wait()
        closing = asyncio.create_task(server.close(grace=2.0))
        await asyncio.sleep(0.05)
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        assert await read_until_closed(idle_reader) == b""  # nothing in flight: closed at once
        assert not closing.done()
        assert await read_ack(reader) == ack_for(SHORT)
        await closing
        assert await read_until_closed(reader) == b""
        assert server.stats.connections_open == 0
        writer.close()
        idle_writer.close()

    run(body)
    assert [m for m, _ in handler.messages] == [SHORT]


def test_close_cancels_a_handler_that_outlasts_the_grace_period() -> None:
    handler = Recorder(delay=5.0)

    async def body() -> None:
        server = MllpServer(MllpSettings(host="127.0.0.1", port=0), handler)
        await server.start()
        reader, writer = await connect(server)
        await send(writer, frame(SHORT))
        await handler.started.wait()
        started = time.monotonic()
        await server.close(grace=0.1)
        assert time.monotonic() - started < 1.0
        assert await read_until_closed(reader) == b""  # no ACK: the sender will resend
        writer.close()

    run(body)
    assert handler.messages == []


def test_no_message_content_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    handler = Recorder(fail_on=b"BOOM")

    async def body() -> None:
        async with serving(handler, max_message_bytes=1024) as server:
            reader, writer = await connect(server)
            await send(writer, PHI + frame(MSG))  # garbage that is PHI
            await send(writer, b"\x0b" + MSG)  # broken frame
            await send(writer, frame(MSG + b"NTE|1||BOOM\r"))  # handler error
            await send(writer, frame(MSG + b"Z" * 2000))  # oversize
            await send(writer, frame(MSG))
            acks = [await read_ack(reader) for _ in range(3)]
            assert acks == [ack_for(MSG), b"AR:" + MSG[:20], ack_for(MSG)]
            await send(writer, b"\x0b" + MSG)  # disconnect mid-frame
            writer.close()
            await eventually(lambda: server.stats.connections_open == 0)

    caplog.set_level(logging.DEBUG, logger="monitor.mllp")
    run(body)
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "handler raised ValueError" in text
    for fragment in (b"SMITH", b"19600101", b"12345", b"BOOM", b"EPIC"):
        assert fragment.decode() not in text
