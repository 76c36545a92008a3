"""``hiro-monitor simulate``: the simulated Epic feed over MLLP, as a load and test tool.

    simulate --to HOST:PORT [--rate N] [--count N] [--seed S] [--orders F]
             [--research] [--problems F]

Sends ``--count`` messages (SIU bookings, reschedules, cancellations, no-shows, and a
share ``--orders`` of ORM^O01 orders) over one MLLP connection at ``--rate`` messages per
second, waiting for each ACK before the next message (one message in flight, as an
interface engine sends). ``--research`` reads the configured store for enrolled subjects
with a visit due and nothing booked, and books some of their research exams, a share
``--problems`` of them with a deliberate problem (wrong orderable, outside the window).

Prints the counts by ACK code (MSA-1) and the achieved rate. Exit 0 when every message was
answered AA, 1 otherwise (AE, AR, no answer), 3 when the listener cannot be reached.
The stream is deterministic for a seed; every patient in it is invented.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from monitor.config import Settings
from monitor.feeds.hl7.simulated import ResearchSubject, SimulatedFeed
from monitor.runtime import ack_code

__all__ = ["SendResult", "register", "research_subjects", "send_feed"]

START, END = b"\x0b", b"\x1c\r"


def _address(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: write HOST:PORT, e.g. 127.0.0.1:2575")
    return host.strip("[]"), int(port)


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text}: a share between 0 and 1")
    return value


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    simulate = commands.add_parser("simulate", help="send a simulated Epic SIU/ORM feed over MLLP")
    simulate.add_argument("--to", required=True, type=_address, metavar="HOST:PORT", help="the MLLP listener")
    simulate.add_argument("--rate", type=float, default=50.0, help="messages per second (default 50)")
    simulate.add_argument("--count", type=int, default=1000, help="messages to send (default 1000)")
    simulate.add_argument("--seed", type=int, default=1, help="the stream's seed (default 1)")
    simulate.add_argument("--orders", type=_share, default=0.1, help="share of ORM^O01 orders (default 0.1)")
    simulate.add_argument(
        "--research", action="store_true", help="book research exams for subjects due in the configured store"
    )
    simulate.add_argument(
        "--problems",
        type=_share,
        default=0.25,
        help="share of research bookings with a problem (default 0.25)",
    )
    simulate.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each ACK")
    simulate.set_defaults(handler=cmd_simulate)


@dataclass
class SendResult:
    """What a run sent and what came back."""

    sent: int = 0
    acks: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


async def send_feed(
    host: str, port: int, feed: SimulatedFeed, count: int, rate: float, timeout: float = 30.0
) -> SendResult:
    """Send ``count`` messages of ``feed``, each after the previous ACK, paced to ``rate`` per second.

    Pacing is open loop from the start time (a slow ACK is caught up afterwards, never
    skipped). A message with no ACK within ``timeout`` (or a closed connection) is counted
    as ``"none"`` and the run stops. Raises :class:`OSError` when the connection fails.
    """
    result = SendResult()
    reader, writer = await asyncio.open_connection(host, port)
    started = time.perf_counter()
    try:
        for index, message in enumerate(feed.messages(count)):
            delay = started + index / rate - time.perf_counter() if rate > 0 else 0.0
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write(START + message + END)
            result.sent += 1
            try:
                await writer.drain()
                ack = await asyncio.wait_for(reader.readuntil(END), timeout)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                result.acks["none"] += 1
                break
            result.acks[ack_code(ack)] += 1
    finally:
        result.seconds = time.perf_counter() - started
        writer.close()
    return result


def research_subjects(engine: Engine, today: date) -> list[ResearchSubject]:
    """Enrolled subjects with a visit due and nothing booked (open ``due_unscheduled`` findings
    whose window has not closed), with the orderables and modality their trial expects."""
    from monitor.store.findings import due_unscheduled
    from monitor.store.registry import ProtocolCatalogue

    subjects: dict[tuple[str, date], ResearchSubject] = {}
    with engine.connect() as conn:
        trials = ProtocolCatalogue().trials(conn)
        for row in due_unscheduled(conn, today):
            trial = trials.get(row.trial)
            if trial is None or row.window_start is None:
                continue
            version = trial.version_on(row.window_start)
            timepoint = next((t for t in version.timepoints if t.id == row.timepoint), None)
            if timepoint is None or not timepoint.exams or timepoint.exams[0] not in version.exams:
                continue
            exam = version.exams[timepoint.exams[0]]
            window = (max(row.window_start, today), row.window_end)
            subjects.setdefault(
                (row.mrn, row.window_start), ResearchSubject(row.mrn, exam.orderables, exam.modality, window)
            )
    return list(subjects.values())


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    host, port = args.to
    from monitor.commands import utc_now

    zone = ZoneInfo(settings.hl7.timezone)
    now = utc_now(args).astimezone(zone)
    research: list[ResearchSubject] = []
    if args.research:
        from monitor.commands import open_engine

        engine = open_engine(settings)
        research = research_subjects(engine, now.date())
        engine.dispose()
        print(f"{len(research)} enrolled subject visit(s) due with nothing booked")
    feed = SimulatedFeed(
        seed=args.seed,
        zone=zone,
        start=now,
        order_rate=args.orders,
        research=research,
        problem_rate=args.problems,
    )
    try:
        result = asyncio.run(send_feed(host, port, feed, args.count, args.rate, args.timeout))
    except OSError as exc:
        print(f"cannot reach the MLLP listener at {host}:{port}: {exc.strerror or exc}")
        return 3
    codes = ", ".join(f"{code} {count}" for code, count in sorted(result.acks.items()))
    print(
        f"sent {result.sent} messages in {result.seconds:.2f} s ({result.rate:.1f} msg/s, "
        f"asked {args.rate:g}): ACKs {codes or 'none'}"
    )
    print(f"  {feed.orders} orders, {sum(feed.problems.values())} deliberate problems {dict(feed.problems)}")
    return 0 if result.acks.get("AA", 0) == result.sent else 1
