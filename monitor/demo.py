"""``hiro-monitor demo``: the whole path on an embedded default, no configuration.

A temporary SQLite database holding the example trials and synthetic enrolments of
``examples/``, the MLLP listener and the dashboard (with a one-off demo login) on free
loopback ports, and a simulated Epic feed over real MLLP: first the office's backlog
(bookings for the coming weeks, some of them the enrolled subjects' due research scans,
a few with a deliberate problem), then a trickle of new bookings, reschedules,
cancellations and no-shows as (simulated) days pass. Each committed batch is re-evaluated
as in the daemon, and the outbox is dispatched: coordinator alerts, reminders, booking
notices and technologist instruction sheets are printed on the console (brief blocks, PHI
policy ``none``) instead of going to the example trials' Slack channels and mailboxes.

``speed`` runs the daemon on a :class:`~monitor.clock.ScaledClock`: at 2016 a week passes
in five minutes, so reminders fall due and unbooked visits become missed while you watch.
``channels`` (``--config FILE``) lends the demo a site's channel sections (``[slack]``,
``[email]``, ``[webhooks]``, ``[notifications]``): a channel enabled there gets the real
messages, the others still print on the console.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from monitor.clock import Clock, ScaledClock
from monitor.commands.simulate import research_subjects, send_feed
from monitor.config import Settings
from monitor.daemon import Daemon
from monitor.dispatch.dispatcher import Dispatcher
from monitor.evaluation import evaluate_all
from monitor.feeds.hl7.simulated import SimulatedFeed
from monitor.render import Renderer
from monitor.store.accounts import Role, add_user
from monitor.store.database import make_engine, upgrade
from monitor.store.registry import import_enrolments, store_protocol
from notifiers import CHANNELS
from notifiers.console import ConsoleNotifier
from rules import load_protocol

__all__ = ["EXAMPLES", "demo_dispatcher", "demo_settings", "enrol_demo_subject", "load_examples", "run_demo"]

log = logging.getLogger("monitor.demo")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# After the backlog, the office's feed goes on at this many messages per simulated day
# (a small imaging office books, moves and cancels a few dozen exams a day).
MESSAGES_PER_DAY = 40
CHANNEL_SECTIONS = ("notifications", "slack", "email", "webhooks")
DEMO_SUBJECT, DEMO_MRN = "2101-D01", "E10099"  # among the simulated feed's patients E10000-E10099


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


def enrol_demo_subject(engine: Engine, now: datetime, zone: ZoneInfo) -> str:
    """Enrol one more synthetic ONC-2101 subject whose Week 6 restaging CT is due tomorrow.

    The example enrolments have fixed dates and drift out of schedule as the years pass;
    this one keeps a research visit open whenever the demo runs. Returns its study id.
    """
    due = now.astimezone(zone).date() + timedelta(days=1)
    c1d1 = due - timedelta(weeks=6)  # ONC-2101: Week 6 restaging, 6 weeks after C1D1, +-7 days
    csv = (
        "trial,subject,mrn,arm,status,consent,c1d1\n"
        f"ONC-2101,{DEMO_SUBJECT},{DEMO_MRN},A,on_study,{c1d1 - timedelta(days=21)},{c1d1}\n"
    )
    with engine.begin() as conn:
        import_enrolments(conn, csv, now)
    return DEMO_SUBJECT


def demo_settings(url: str, speed: float = 1.0, channels: Settings | None = None) -> Settings:
    """The demo's settings: its own store, free loopback ports, dispatch on, and the channel
    sections of ``channels`` when given (everything else stays the demo's)."""
    data: dict[str, Any] = {
        "database": {"url": url},
        "mllp": {"port": 0},
        # The dashboard on a free loopback port, plain http (cookies not marked Secure).
        # Sessions are timed by the demo's clock: stretch them so a fast demo keeps you signed in.
        "web": {
            "enabled": True,
            "port": 0,
            "cookie_secure": False,
            "idle_timeout_minutes": max(15, round(60 * speed)),
            "session_lifetime_hours": max(12, round(12 * speed)),
        },
        # A daily digest per trial would repeat every few seconds at high speed.
        "scheduler": {"dispatch_every_seconds": 1.0, "digest_enabled": False},
        "dispatch": {"enabled": True},
    }
    if channels is not None:
        for section in CHANNEL_SECTIONS:
            value = getattr(channels, section)
            data[section] = (
                {name: hook.model_dump() for name, hook in value.items()}
                if section == "webhooks"
                else value.model_dump()
            )
    return Settings.model_validate(data)


def demo_dispatcher(
    engine: Engine, settings: Settings, clock: Clock, stream: TextIO | None = None
) -> tuple[Dispatcher, list[str]]:
    """The demo's dispatcher and the channels it prints on the console (every channel not
    enabled in ``settings``; those enabled send for real)."""
    enabled = {
        "slack": settings.slack.enabled,
        "email": settings.email.enabled,
        "webhook": bool(settings.webhooks),
    }
    renderer = Renderer.from_settings(settings)
    # Faster than real time, each block says the simulated time it was printed at.
    simulated = clock if clock.speed != 1 else None
    console = ConsoleNotifier(renderer=renderer, stream=stream, brief=True, simulated=simulated)
    printed = [channel for channel in CHANNELS if not enabled.get(channel, False)]
    dispatcher = Dispatcher(
        engine, settings, renderer=renderer, clock=clock, notifiers=dict.fromkeys(printed, console)
    )
    return dispatcher, printed


async def _keep_feeding(engine: Engine, port: int, feed: SimulatedFeed, clock: ScaledClock) -> None:
    """The feed after the backlog: :data:`MESSAGES_PER_DAY` per simulated day, until cancelled.

    Once a simulated day the office books the research visits that have come due since
    (those cancelled or no-showed stay open, and are missed when their window closes)."""
    every = clock.real_seconds(timedelta(days=1)) / MESSAGES_PER_DAY
    for sent in itertools.count(1):
        await asyncio.sleep(every)
        if sent % MESSAGES_PER_DAY == 0:
            today = clock().astimezone(feed.zone).date()
            feed.add_research(await asyncio.to_thread(research_subjects, engine, today))
        try:
            await send_feed("127.0.0.1", port, feed, 1, 0.0)
        except OSError as exc:  # the listener is stopping
            log.debug("demo feed stopped (%s)", type(exc).__name__)
            return


async def run_demo(
    count: int,
    rate: float,
    duration: float | None,
    show: Callable[[str], object],
    folder: Path | None = None,
    *,
    speed: float = 1.0,
    channels: Settings | None = None,
    stream: TextIO | None = None,
    start: datetime | None = None,
) -> Path:
    """Run the demo; ``show(database_url)`` prints the store's state once the backlog is in.

    ``stream`` receives the console's messages (standard output when None); the demo's
    clock starts at ``start`` (default: the real time now). Raises ``ValueError`` for a speed
    that is not positive.
    """
    clock = ScaledClock(speed, start)
    workdir = folder or Path(tempfile.mkdtemp(prefix="hiro-demo-"))
    url = f"sqlite:///{workdir / 'demo.db'}"
    settings = demo_settings(url, speed, channels)
    zone = ZoneInfo(settings.hl7.timezone)
    engine = make_engine(url)
    upgrade(engine)
    now = clock()
    trials = load_examples(engine, now)
    if trials:
        enrol_demo_subject(engine, now, zone)
    password = secrets.token_urlsafe(9)
    with engine.begin() as conn:
        add_user(conn, "demo", Role.ADMIN, password, now)
    evaluate_all(engine, settings, now)
    dispatcher, printed = demo_dispatcher(engine, settings, clock, stream)
    daemon = Daemon(settings, engine, clock=clock, dispatcher=dispatcher)
    await daemon.start()
    print(f"hiro-monitor demo: database {workdir / 'demo.db'}, {trials} example trials loaded")
    if speed != 1:
        week = clock.real_seconds(timedelta(weeks=1))
        print(f"Speed {speed:g}: a simulated week passes in {week / 60:.1f} minutes")
    if daemon.web is not None:
        print(f"Dashboard: http://127.0.0.1:{daemon.web.port}/  (user demo, password {password})")
    print(
        f"Notifications: {', '.join(printed)} messages print below; "
        f"{', '.join(c for c in ('slack', 'email') if c not in printed) or 'no channel'} sends for real"
    )
    print(f"MLLP listener on 127.0.0.1:{daemon.server.port}; sending {count} simulated Epic SIU messages")
    # Patients E10000-E10099: the example enrolments (E10001 ...) are among them, and the
    # research visits due now are booked (a quarter of them with a problem to alert about).
    research = research_subjects(engine, now.astimezone(zone).date())
    feed = SimulatedFeed(
        seed=2026, zone=zone, patients=100, research=research, research_soon=0.5, clock=clock
    )
    trickle: asyncio.Task[None] | None = None
    try:
        sent = await send_feed("127.0.0.1", daemon.server.port, feed, count, rate)
        print(f"ACKs received: {dict(sent.acks)}")
        await asyncio.sleep(daemon.writer.observe_every + 0.3)  # let the last re-evaluation land
        show(url)
        sys.stdout.flush()
        trickle = asyncio.create_task(_keep_feeding(engine, daemon.server.port, feed, clock))
        if duration is None:
            print("Listening; send your own HL7 to the port above. Ctrl-C to stop.")
            await asyncio.Event().wait()
        elif duration > 0:
            await asyncio.sleep(duration)
    finally:
        if trickle is not None:
            trickle.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await trickle
        await daemon.stop()
        engine.dispose()
    return workdir
