"""``hiro-monitor run`` stops gracefully on SIGTERM/SIGINT, and at once on a second signal.

The daemon runs as a real subprocess on a loopback port 0; a client streams simulated
messages and records the control id of every AA it receives. After SIGTERM every message
acknowledged AA must be in the store and the process must exit 0 within a few seconds.
For the second signal, a test holds the SQLite write lock so that the message in flight
cannot commit (a slow shutdown: the listener waits for it), then signals twice.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from monitor.feeds.hl7.simulated import SimulatedFeed
from monitor.store.database import make_engine
from monitor.store.schema import messages

REPO = Path(__file__).resolve().parents[2]
START, END = b"\x0b", b"\x1c\r"


def _start_daemon(url: str) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "--database", url, "run", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )
    assert process.stdout is not None
    for line in process.stdout:
        found = re.search(r"MLLP listening on .*:(\d+)", line)
        if found:
            return process, int(found.group(1))
    raise AssertionError(f"the daemon did not start (exit {process.wait(10)})")


def _read_ack(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(END):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _control_id(message: bytes) -> str:
    return message.split(b"\r", 1)[0].split(b"|")[9].decode()


class Streamer(threading.Thread):
    """Sends messages one after another, each after the previous ACK, until the server closes."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.acked: list[str] = []
        self.other: list[str] = []
        self.ended = threading.Event()

    def run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=20) as sock:
                for message in SimulatedFeed(seed=21).messages(100_000):
                    sock.sendall(START + message + END)
                    ack = _read_ack(sock)
                    code = ack.split(b"MSA|", 1)[1][:2].decode()
                    (self.acked if code == "AA" else self.other).append(_control_id(message))
        except OSError:
            pass  # the server closed the connection: the run is over
        finally:
            self.ended.set()


def _stored_control_ids(url: str) -> set[str]:
    engine = make_engine(url)
    with engine.connect() as conn:
        ids = set(conn.execute(select(messages.c.control_id)).scalars())
    engine.dispose()
    return ids


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_daemon_and_every_acknowledged_message_is_stored(
    tmp_path: Path, signum: signal.Signals
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    process, port = _start_daemon(url)
    streamer = Streamer(port)
    streamer.start()
    deadline = time.monotonic() + 30
    while len(streamer.acked) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(streamer.acked) >= 200, "the daemon did not acknowledge the stream"
    signalled = time.monotonic()
    process.send_signal(signum)
    assert process.wait(10) == 0
    assert time.monotonic() - signalled < 5
    assert streamer.ended.wait(10)
    assert streamer.other == []
    stored = _stored_control_ids(url)
    missing = set(streamer.acked) - stored
    assert not missing, f"{len(missing)} acknowledged message(s) not stored"


def test_a_second_signal_during_a_slow_shutdown_exits_at_once(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    url = f"sqlite:///{path}"
    process, port = _start_daemon(url)
    blocker = sqlite3.connect(path, timeout=1)
    blocker.execute("BEGIN IMMEDIATE")  # holds the write lock: the message below cannot commit
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(START + next(SimulatedFeed(seed=3).messages(1)) + END)
            time.sleep(0.5)  # the handler is now waiting for the store
            process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert process.poll() is None, "the first signal waits for the message in flight"
            second = time.monotonic()
            process.send_signal(signal.SIGINT)
            code = process.wait(5)
            assert time.monotonic() - second < 2
            assert code != 0
    finally:
        blocker.rollback()
        blocker.close()
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)
