"""``hiro-monitor demo``: the whole path on an embedded default, no configuration.

A temporary SQLite database holding the example trials and synthetic enrolments of
``examples/``, the MLLP listener and the dashboard (with a one-off demo login) on free
loopback ports, and a simulated Epic feed that books, reschedules, cancels and no-shows
exams over real MLLP (some for enrolled subjects, most not). Each committed batch is
re-evaluated as in the daemon; the demo then prints what the store made of it and the
open findings, and keeps listening until Ctrl-C (or ``--duration`` seconds).
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from monitor.commands.simulate import send_feed
from monitor.config import Settings
from monitor.daemon import Daemon
from monitor.evaluation import evaluate_all
from monitor.registry import import_enrolments, store_protocol
from monitor.simulator import SimulatedFeed
from monitor.store.database import make_engine, upgrade
from monitor.web.accounts import Role, add_user
from rules import load_protocol

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_examples(engine: Engine, now: datetime) -> int:
    """Store the example protocols and enrolments; returns how many trials (0 if not found)."""
    trials = sorted((EXAMPLES / "trials").glob("*.toml"))
    with engine.begin() as conn:
        for path in trials:
            text = path.read_text(encoding="utf-8")
            store_protocol(conn, load_protocol(text, path.name), text, path.name, now)
        if trials:
            import_enrolments(conn, (EXAMPLES / "enrolments.csv").read_text(encoding="utf-8"), now)
    return len(trials)


async def run_demo(
    count: int,
    rate: float,
    duration: float | None,
    show: Callable[[str], object],
    folder: Path | None = None,
) -> Path:
    """Run the demo; ``show(database_url)`` prints the store's state once the feed has been sent."""
    workdir = folder or Path(tempfile.mkdtemp(prefix="hiro-demo-"))
    url = f"sqlite:///{workdir / 'demo.db'}"
    settings = Settings.model_validate(
        {
            "database": {"url": url},
            "mllp": {"port": 0},
            # The dashboard on a free loopback port, plain http (cookies not marked Secure).
            "web": {"enabled": True, "port": 0, "cookie_secure": False},
            # No channel is configured in a demo: planned alerts stay in the outbox
            # (`hiro-monitor notifications`, and each exam's page) instead of failing.
            "dispatch": {"enabled": False},
        }
    )
    zone = ZoneInfo(settings.hl7.timezone)
    engine = make_engine(url)
    upgrade(engine)
    now = datetime.now(UTC)
    trials = load_examples(engine, now)
    password = secrets.token_urlsafe(9)
    with engine.begin() as conn:
        add_user(conn, "demo", Role.ADMIN, password, now)
    evaluate_all(engine, settings, now)
    daemon = Daemon(settings, engine)
    await daemon.start()
    print(f"hiro-monitor demo: database {workdir / 'demo.db'}, {trials} example trials loaded")
    if daemon.web is not None:
        print(f"Dashboard: http://127.0.0.1:{daemon.web.port}/  (user demo, password {password})")
    print(f"MLLP listener on 127.0.0.1:{daemon.server.port}; sending {count} simulated Epic SIU messages")
    # Patients E10000-E10099: the example enrolments (E10001 ...) are among them.
    feed = SimulatedFeed(seed=2026, zone=zone, start=now.astimezone(zone), patients=100)
    try:
        sent = await send_feed("127.0.0.1", daemon.server.port, feed, count, rate)
        print(f"ACKs received: {dict(sent.acks)}")
        await asyncio.sleep(daemon.writer.observe_every + 0.3)  # let the last re-evaluation land
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
