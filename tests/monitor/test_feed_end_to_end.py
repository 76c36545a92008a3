"""The whole feed over a real loopback socket: listener, writer, intake, store.

Includes the crash test: ``hiro-monitor run`` is killed with SIGKILL in the middle of a
stream; every message that got an AA must be in the store, and resending the rest must
not create a second exam.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from monitor.config import Settings
from monitor.daemon import Daemon
from monitor.feeds.hl7.simulated import SimulatedFeed
from monitor.feeds.mllp import frame
from monitor.store.database import make_engine, upgrade
from monitor.store.schema import exams, messages
from tests.monitor.hl7_messages import siu

REPO = Path(__file__).resolve().parents[2]
END = b"\x1c\r"


def _settings(url: str) -> Settings:
    return Settings.model_validate(
        {"database": {"url": url}, "mllp": {"port": 0}, "hl7": {"timezone": "America/Chicago"}}
    )


async def _exchange(port: int, payloads: list[bytes]) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    acks = []
    for payload in payloads:
        writer.write(frame(payload))
        await writer.drain()
        acks.append(await asyncio.wait_for(reader.readuntil(END), 10))
    writer.close()
    return acks


def _msa(ack: bytes) -> tuple[str, str]:
    fields = ack.split(b"MSA|", 1)[1].split(b"\r", 1)[0].split(b"|")
    return fields[0].decode(), fields[1].decode()


def test_listener_acknowledges_after_the_exam_is_stored(database_url: str) -> None:
    async def scenario() -> list[bytes]:
        engine = make_engine(database_url)
        daemon = Daemon(_settings(database_url), engine)
        await daemon.start()
        try:
            acks = await _exchange(
                daemon.server.port,
                [siu(), siu(), siu("S15", control_id="MSG0002", status="Cancelled"), b"MSH|^~\\&|garbage"],
            )
            with engine.connect() as conn:
                status = conn.execute(select(exams.c.status)).scalar_one()
                stored = conn.execute(select(func.count()).select_from(messages)).scalar_one()
            # the garbage is stored too; the duplicate is counted, not stored again
            assert status == "cancelled" and stored == 3
            return acks
        finally:
            await daemon.stop()
            engine.dispose()

    acks = asyncio.run(scenario())
    assert [_msa(ack) for ack in acks[:3]] == [("AA", "MSG0001"), ("AA", "MSG0001"), ("AA", "MSG0002")]
    # No message type at all: an application reject (HL7 v2.5 section 2.9.2), stored all the same.
    assert _msa(acks[3])[0] == "AR"


def test_listener_answers_ar_when_the_store_is_down() -> None:
    async def scenario() -> list[bytes]:
        dead = create_engine(
            "postgresql+psycopg://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 1}
        )
        daemon = Daemon(_settings("sqlite://"), dead)
        await daemon.start()
        try:
            return await _exchange(daemon.server.port, [siu()])
        finally:
            await daemon.stop()

    assert _msa(asyncio.run(scenario())[0]) == ("AR", "MSG0001")


def test_oversize_message_gets_a_clear_ar_and_the_connection_goes_on(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'big.db'}"
    settings = Settings.model_validate(
        {"database": {"url": url}, "mllp": {"port": 0, "max_message_bytes": 2048}}
    )

    async def scenario() -> list[bytes]:
        engine = make_engine(url)
        upgrade(engine)
        daemon = Daemon(settings, engine)
        await daemon.start()
        try:
            return await _exchange(daemon.server.port, [siu(control_id="BIG1", note="x" * 5000), siu()])
        finally:
            await daemon.stop()
            engine.dispose()

    big, normal = asyncio.run(scenario())
    assert _msa(big) == ("AR", "BIG1")
    assert b"ERR|" in big and b"206" in big
    assert _msa(normal) == ("AA", "MSG0001")


def test_four_connections_keep_their_order_and_all_get_aa(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'many.db'}"
    feed = SimulatedFeed(seed=5)
    batches = [list(feed.messages(60)) for _ in range(4)]

    async def scenario() -> list[list[bytes]]:
        engine = make_engine(url)
        upgrade(engine)
        daemon = Daemon(_settings(url), engine)
        await daemon.start()
        try:
            return await asyncio.gather(*(_exchange(daemon.server.port, batch) for batch in batches))
        finally:
            await daemon.stop()
            engine.dispose()

    results = asyncio.run(scenario())
    for batch, acks in zip(batches, results, strict=True):
        sent_ids = [m.split(b"|", 10)[9].decode() for m in batch]
        assert [_msa(ack) for ack in acks] == [("AA", control_id) for control_id in sent_ids]


@pytest.mark.slow
def test_kill_9_mid_stream_loses_no_acknowledged_message(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    stream = list(SimulatedFeed(seed=11).messages(3000))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def start() -> tuple[subprocess.Popen[str], int]:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "monitor.cli",
                "--log-level",
                "WARNING",
                "--database",
                url,
                "run",
                "--port",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=REPO,
            env=env,
        )
        assert process.stdout is not None
        for line in process.stdout:
            found = re.search(r"listening on .*:(\d+)", line)
            if found:
                return process, int(found.group(1))
        raise AssertionError("daemon did not start")

    async def send_until_dead(port: int, process: subprocess.Popen[str]) -> list[str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        acked: list[str] = []
        killed_at = time.monotonic() + 0.7
        try:
            for message in stream:
                if time.monotonic() >= killed_at and process.poll() is None:
                    process.send_signal(signal.SIGKILL)  # mid-stream: a frame may be in flight
                writer.write(frame(message))
                await writer.drain()
                code, control_id = _msa(await reader.readuntil(END))
                assert code == "AA"
                acked.append(control_id)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        return acked

    process, port = start()
    acked = asyncio.run(send_until_dead(port, process))
    process.wait(10)
    assert 0 < len(acked) < len(stream), "the kill must land mid-stream"

    engine = create_engine(url)
    with engine.connect() as conn:
        stored = set(conn.execute(select(messages.c.control_id)).scalars())
    assert set(acked) <= stored

    # The sender resends everything it has no AA for (and, being cautious, the last AA'd one).
    process, port = start()
    try:
        resend = stream[len(acked) - 1 :]
        codes = asyncio.run(_exchange(port, resend))
        assert {_msa(ack)[0] for ack in codes} == {"AA"}
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    with engine.connect() as conn:
        total_exams = conn.execute(select(func.count()).select_from(exams)).scalar_one()
        distinct = conn.execute(select(func.count(func.distinct(exams.c.external_id)))).scalar_one()
        total_messages = conn.execute(select(func.count()).select_from(messages)).scalar_one()
    engine.dispose()
    assert total_exams == distinct
    assert total_messages == len(stream)


def test_the_daemon_serves_the_dashboard_beside_the_listener_and_stops_both(tmp_path: Path) -> None:
    import urllib.request

    url = f"sqlite:///{tmp_path / 'web.db'}"
    settings = Settings.model_validate(
        {"database": {"url": url}, "mllp": {"port": 0}, "web": {"enabled": True, "port": 0}}
    )

    async def scenario() -> tuple[int, bytes, list[bytes]]:
        engine = make_engine(url)
        upgrade(engine)
        daemon = Daemon(settings, engine)
        await daemon.start()
        try:
            assert daemon.web is not None
            port = daemon.web.port
            health = await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()
            )
            acks = await _exchange(daemon.server.port, [siu()])
            return port, health, acks
        finally:
            await daemon.stop()
            engine.dispose()

    port, health, acks = asyncio.run(scenario())
    assert b"ok" in health.lower()
    assert _msa(acks[0]) == ("AA", "MSG0001")
    with pytest.raises(OSError):  # stopped with the daemon
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
