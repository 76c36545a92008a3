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
After the backlog, and again when it stops, the demo prints a :func:`summary` (exams
received, open findings counted by kind and severity); the database lives in a
:func:`demo_folder`, removed when the demo ends however it ends, unless kept.

``speed`` runs the daemon on a :class:`~monitor.clock.ScaledClock`: at 2016 a week passes
in five minutes, so reminders fall due and unbooked visits become missed while you watch;
each console block and the dashboard's header then show the simulated time.
``channels`` (``--config FILE``) lends the demo a site's channel sections (``[slack]``,
``[email]``, ``[webhooks]``, ``[notifications]``): a channel enabled there gets the real
messages, the others still print on the console.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import itertools
import logging
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from monitor.clock import Clock, ScaledClock
from monitor.commands.simulate import research_subjects, send_feed
from monitor.config import Settings
from monitor.daemon import Daemon
from monitor.demo_images import POLL_SECONDS, imaging_story
from monitor.dispatch.dispatcher import Dispatcher
from monitor.evaluation import evaluate_all
from monitor.feeds.hl7.simulated import SimulatedFeed
from monitor.feeds.visits import import_visits
from monitor.pacs.orthanc import OrthancServer, orthanc_available
from monitor.render import Renderer
from monitor.store.accounts import Role, add_user
from monitor.store.database import make_engine, upgrade
from monitor.store.exams import exam_status_counts
from monitor.store.findings import open_finding_tally
from monitor.store.registry import import_enrolments, store_protocol
from notifiers import CHANNELS
from notifiers.compose import FINDING_TITLES
from notifiers.console import ConsoleNotifier
from rules import load_protocol
from rules.model import Severity

__all__ = [
    "EXAMPLES",
    "demo_dispatcher",
    "demo_folder",
    "demo_settings",
    "enrol_demo_subject",
    "load_examples",
    "run_demo",
    "summary",
]

log = logging.getLogger("monitor.demo")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# After the backlog, the office's feed goes on at this many messages per simulated day
# (a small imaging office books, moves and cancels a few dozen exams a day).
MESSAGES_PER_DAY = 40
CHANNEL_SECTIONS = ("notifications", "slack", "email", "webhooks")
DEMO_SUBJECT, DEMO_MRN = "2101-D01", "E10099"  # among the simulated feed's patients E10000-E10099
DATABASE = "demo.db"
SEVERITIES = (Severity.CRITICAL, Severity.WARNING, Severity.INFO)  # the summary's order
TITLES = {kind.value: title for kind, title in FINDING_TITLES.items()}


# examples/enrolments.csv and examples/visits.csv tell the office's story as of this day: the
# demo moves every date in them by the days since, so it looks the same whenever it runs.
EXAMPLES_AS_OF = date(2026, 11, 25)
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def shift_dates(text: str, days: int) -> str:
    """The CSV ``text`` with every ``YYYY-MM-DD`` cell ``days`` later (other cells unchanged)."""
    rows = list(csv.reader(io.StringIO(text, newline="")))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        writer.writerow(
            [(date.fromisoformat(cell) + timedelta(days=days)).isoformat() if _ISO_DAY.match(cell) else cell
             for cell in row]
        )  # fmt: skip
    return out.getvalue()


def load_examples(engine: Engine, now: datetime, zone: ZoneInfo | None = None) -> int:
    """Store the example protocols, enrolments and visit history, their dates moved so that the
    examples' day is today (``now`` in ``zone``); returns how many trials (0 if not found).

    The subjects are watched from today (a fresh office), and the visits already done are on
    record, so the trial matrix shows their history and no past visit is a false "missed".
    """
    zone = zone or ZoneInfo("America/New_York")
    today = now.astimezone(zone).date()
    days = (today - EXAMPLES_AS_OF).days
    trials = sorted((EXAMPLES / "trials").glob("*.toml"))
    with engine.begin() as conn:
        for path in trials:
            text = path.read_text(encoding="utf-8")
            store_protocol(conn, load_protocol(text, path.name), text, path.name, now)
        if trials:
            enrolments = shift_dates((EXAMPLES / "enrolments.csv").read_text(encoding="utf-8"), days)
            import_enrolments(conn, enrolments, now, today=today)
            visits = EXAMPLES / "visits.csv"
            if visits.exists():
                import_visits(conn, shift_dates(visits.read_text(encoding="utf-8"), days), now, zone)
    return len(trials)


def enrol_demo_subject(engine: Engine, now: datetime, zone: ZoneInfo) -> str:
    """Enrol one more synthetic ONC-2101 subject whose Week 6 restaging CT is due tomorrow.

    The example enrolments are moved to today, but which of their visits fall due in the
    first minutes depends on the day; this one keeps a research visit open whenever the demo
    runs. Returns its study id.
    """
    due = now.astimezone(zone).date() + timedelta(days=1)
    c1d1 = due - timedelta(weeks=6)  # ONC-2101: Week 6 restaging, 6 weeks after C1D1, +-7 days
    csv = (
        "trial,subject,mrn,arm,status,consent,c1d1\n"
        f"ONC-2101,{DEMO_SUBJECT},{DEMO_MRN},A,on_study,{c1d1 - timedelta(days=21)},{c1d1}\n"
    )
    with engine.begin() as conn:
        import_enrolments(conn, csv, now, today=now.astimezone(zone).date())
    return DEMO_SUBJECT


def demo_settings(
    url: str, speed: float = 1.0, channels: Settings | None = None, pacs_url: str | None = None
) -> Settings:
    """The demo's settings: its own store, free loopback ports, dispatch on, the demo's own
    PACS at ``pacs_url`` when one runs, and the channel sections of ``channels`` when given
    (everything else stays the demo's)."""
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
    if pacs_url is not None:
        data["pacs"] = {"enabled": True, "dicomweb_url": pacs_url, "poll_interval_seconds": POLL_SECONDS}
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


def _and(names: list[str]) -> str:
    """``slack, email and console``."""
    return " and ".join(filter(None, (", ".join(names[:-1]), names[-1]))) if names else "no channel"


async def _settle(dispatcher: Dispatcher, clock: Clock, timeout: float = 10.0) -> None:
    """Wait, ``timeout`` seconds at most, until the outbox has nothing due and every lane is
    idle: the backlog's messages are printed before the summary, not under it."""

    def busy() -> bool:
        return bool(dispatcher.claims.due_addresses(clock())) or not dispatcher.wait(0)

    deadline = time.monotonic() + timeout
    while await asyncio.to_thread(busy) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)


def summary(
    engine: Engine, renderer: Renderer, now: datetime, simulated: bool, title: str = "SUMMARY"
) -> list[str]:
    """A few lines for a terminal: the exams received, and the open findings counted by kind
    and severity (what the dashboard's Findings page lists one by one)."""
    with engine.connect() as conn:
        exams = exam_status_counts(conn)
        tally = open_finding_tally(conn)
    when = renderer.format_datetime(now) + (" (simulated)" if simulated else "")
    statuses = ", ".join(f"{count} {status.replace('_', '-')}" for status, count in exams.items())
    lines = [
        f"===== {title} at {when}",
        f"Exams received: {sum(exams.values())}" + (f" ({statuses})" if exams else ""),
    ]
    severities: Counter[str] = Counter()
    for _kind, severity, count in tally:
        severities[severity] += count
    by_severity = ", ".join(f"{severities[name]} {name}" for name in SEVERITIES if severities[name])
    lines.append(f"Open findings: {severities.total()}" + (f" ({by_severity})" if by_severity else ""))
    rank = {name.value: index for index, name in enumerate(SEVERITIES)}
    for kind, severity, count in sorted(tally, key=lambda row: (rank.get(row[1], len(rank)), -row[2])):
        lines.append(f"  {count:>5}  {TITLES.get(kind, kind):<28} {severity}")
    return lines


@contextlib.contextmanager
def demo_folder(keep: bool = False) -> Iterator[Path]:
    """A new temporary folder for the demo's database, removed when the block ends for any
    reason (the demo ran its time, Ctrl-C, an error) unless ``keep`` (then says where it is)."""
    folder = Path(tempfile.mkdtemp(prefix="hiro-demo-"))
    try:
        yield folder
    finally:
        if keep:
            print(f"Database kept: {folder / DATABASE}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
            print("Temporary database removed.")


def _stop_on_sigterm(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> bool:
    """End the demo on SIGTERM as when its time is up; False where signals cannot be handled."""
    try:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main thread
        return False
    return True


async def run_demo(
    folder: Path,
    count: int,
    rate: float,
    duration: float | None,
    *,
    speed: float = 1.0,
    channels: Settings | None = None,
    stream: TextIO | None = None,
    start: datetime | None = None,
    images: bool = True,
) -> None:
    """Run the demo on a database in ``folder`` (the caller's: :func:`demo_folder`).

    Sends ``count`` backlog messages at ``rate`` a second, prints a summary, then feeds on for
    ``duration`` seconds (None: until cancelled, as Ctrl-C does, or SIGTERM), and prints the
    summary again as it stops. ``stream`` receives the console's messages (standard output
    when None); the demo's clock starts at ``start`` (default: the real time now). With
    ``images`` and Orthanc installed, the demo starts its own PACS and plays the imaging story
    (:mod:`monitor.demo_images`) after the backlog. Raises ``ValueError`` for a speed that is
    not positive.
    """
    with contextlib.ExitStack() as stack:
        pacs = _start_pacs(folder, stack) if images else None
        await _run(folder, count, rate, duration, speed, channels, stream, start, pacs)


def _start_pacs(folder: Path, stack: contextlib.ExitStack) -> OrthancServer | None:
    """The demo's own Orthanc (stopped when ``stack`` closes), or None when not installed."""
    missing = orthanc_available()
    if missing is not None:
        print(f"No PACS for the imaging check: {missing}")
        return None
    return stack.enter_context(OrthancServer(folder / "orthanc"))


async def _run(
    folder: Path,
    count: int,
    rate: float,
    duration: float | None,
    speed: float,
    channels: Settings | None,
    stream: TextIO | None,
    start: datetime | None,
    pacs: OrthancServer | None,
) -> None:
    clock = ScaledClock(speed, start)
    simulated = speed != 1
    database = folder / DATABASE
    url = f"sqlite:///{database}"
    settings = demo_settings(url, speed, channels, pacs.dicomweb_url if pacs is not None else None)
    zone = ZoneInfo(settings.hl7.timezone)
    renderer = Renderer.from_settings(settings)
    engine = make_engine(url)
    upgrade(engine)
    now = clock()
    trials = load_examples(engine, now, zone)
    if trials:
        enrol_demo_subject(engine, now, zone)
    password = secrets.token_urlsafe(9)
    with engine.begin() as conn:
        add_user(conn, "demo", Role.ADMIN, password, now)
    evaluate_all(engine, settings, now)
    dispatcher, printed = demo_dispatcher(engine, settings, clock, stream)
    daemon = Daemon(settings, engine, clock=clock, dispatcher=dispatcher)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    trickle: asyncio.Task[None] | None = None
    started = sigterm = False
    try:
        await daemon.start()
        started = True
        sigterm = _stop_on_sigterm(loop, stop)
        print(f"hiro-monitor demo: {trials} example trials loaded into a temporary database")
        print(f"  {database}")
        if simulated:
            week = clock.real_seconds(timedelta(weeks=1))
            print(f"Speed {speed:g}: a simulated week passes in {week / 60:.1f} minutes")
            print(f"  it is now {renderer.format_datetime(now)} (simulated)")
        real = [channel for channel in CHANNELS if channel not in printed]
        print(
            f"Messages to {_and(printed)} print here"
            + (f"; those to {_and(real)} are sent for real" if real else " (none is sent for real)")
        )
        print(f"MLLP listener on 127.0.0.1:{daemon.server.port}; sending {count} simulated Epic SIU messages")
        sys.stdout.flush()
        # Patients E10000-E10099: the example enrolments (E10001 ...) are among them, and the
        # research visits due now are booked (a quarter of them with a problem to alert about).
        # The first and half of the others are booked soon: in real time within hours, so that
        # their technologists' sheets print at once; faster, a few days ahead, so that their
        # reminders and day-before sheets fall due while you watch.
        research = research_subjects(engine, now.astimezone(zone).date())
        feed = SimulatedFeed(
            seed=2026,
            zone=zone,
            patients=100,
            research=research,
            research_soon=0.5,
            soon_hours=(30, 90) if simulated else (3, 20),
            clock=clock,
        )
        sent = await send_feed("127.0.0.1", daemon.server.port, feed, count, rate)
        acks = ", ".join(f"{code} {number}" for code, number in sent.acks.most_common())
        await asyncio.sleep(daemon.writer.observe_every + 0.3)  # let the last re-evaluation land
        await _settle(dispatcher, clock)
        if pacs is not None:
            print(f"PACS (Orthanc) on {pacs.url}: checking the images of research exams", flush=True)
            for line in await imaging_story(engine, pacs, daemon.server.port, clock(), zone):
                print(line, flush=True)
            await _settle(dispatcher, clock)
        lines = ["", *summary(engine, renderer, clock(), simulated)]
        lines.insert(2, f"HL7 messages sent: {sent.sent} (ACKs: {acks or 'none'})")
        if daemon.web is not None:
            lines.append(f"Dashboard: http://127.0.0.1:{daemon.web.port}/  (user demo, password {password})")
        if duration is None:
            lines.append(f"Listening: send your own HL7 to 127.0.0.1:{daemon.server.port}. Ctrl-C stops.")
        elif duration > 0:
            days = clock.real_seconds(timedelta(days=1))
            lines.append(
                f"Feeding on for {duration:g} s"
                + (f" ({duration / days:.1f} simulated days)" if simulated else "")
                + "; Ctrl-C stops earlier."
            )
        print("\n".join(lines), flush=True)
        trickle = asyncio.create_task(_keep_feeding(engine, daemon.server.port, feed, clock))
        if duration is None or duration > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration)
    finally:
        if started and sigterm:
            loop.remove_signal_handler(signal.SIGTERM)
        if trickle is not None:
            trickle.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await trickle
        try:
            if started:
                await daemon.stop()
                print("\n".join(["", *summary(engine, renderer, clock(), simulated, "STOPPED")]), flush=True)
        finally:
            engine.dispose()
