"""``hiro-monitor demo``: the whole feed path on an embedded default, no configuration.

A temporary SQLite database, the MLLP listener on a free loopback port, and a simulated
Epic feed that books, reschedules, cancels and no-shows exams over real MLLP. Prints what
the store made of it, then keeps listening until Ctrl-C (or ``--duration`` seconds).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path

from monitor.config import Settings
from monitor.daemon import Daemon
from monitor.feeds.mllp import frame
from monitor.simulator import SimulatedFeed
from monitor.store.database import make_engine, upgrade

END = b"\x1c\r"


async def _send(port: int, count: int, rate: float) -> dict[str, int]:
    """Send ``count`` simulated messages over one MLLP connection; count the ACK codes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    codes: dict[str, int] = {}
    for message in SimulatedFeed(seed=2026).messages(count):
        writer.write(frame(message))
        await writer.drain()
        ack = await reader.readuntil(END)
        code = ack.split(b"MSA|", 1)[1][:2].decode()
        codes[code] = codes.get(code, 0) + 1
        await asyncio.sleep(1 / rate)
    writer.close()
    return codes


async def run_demo(
    count: int,
    rate: float,
    duration: float | None,
    show: Callable[[str], object],
    folder: Path | None = None,
) -> Path:
    """Run the demo; ``show(database_url)`` prints the store's exams once the feed has been sent."""
    workdir = folder or Path(tempfile.mkdtemp(prefix="hiro-demo-"))
    url = f"sqlite:///{workdir / 'demo.db'}"
    engine = make_engine(url)
    upgrade(engine)
    settings = Settings.model_validate({"database": {"url": url}, "mllp": {"port": 0}})
    daemon = Daemon(settings, engine)
    await daemon.start()
    print(f"hiro-monitor demo: database {workdir / 'demo.db'}")
    print(f"MLLP listener on 127.0.0.1:{daemon.server.port}; sending {count} simulated Epic SIU messages")
    try:
        codes = await _send(daemon.server.port, count, rate)
        print(f"ACKs received: {codes}")
        show(url)
        if duration is None:
            print("Listening; send your own HL7 to the port above. Ctrl-C to stop.")
            await asyncio.Event().wait()
        elif duration > 0:
            await asyncio.sleep(duration)
    finally:
        await daemon.stop()
        engine.dispose()
    return workdir
