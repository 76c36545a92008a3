"""The ``hiro-monitor`` command.

    hiro-monitor [--config PATH] [--database URL] COMMAND

Commands: init, run, ingest FILE..., exams [--json] [--from D] [--to D], purge, demo.

Exit codes: 0 success, 1 input problems reported (e.g. rejected messages), 2 usage or
configuration error, 3 the store is unavailable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

from monitor.clock import SYSTEM_CLOCK, Clock
from monitor.commands import DAY_FORMS, command_clock, day_spec, open_engine, utc_now
from monitor.config import ConfigError, Settings, load_settings

log = logging.getLogger("monitor.cli")

# A command handler takes the settings and the parsed arguments and returns the exit code.
Handler = Callable[[Settings, argparse.Namespace], int]

# Modules that add their own command groups: each has ``register(commands)`` which adds
# sub-parsers and sets ``handler`` on them (see monitor/commands/).
COMMAND_GROUPS: tuple[str, ...] = (
    "monitor.commands.trials",
    "monitor.commands.enrolments",
    "monitor.commands.findings",
    "monitor.commands.fhir",
    "monitor.commands.pacs",
    "monitor.commands.core_lab",
    "monitor.commands.messages",
    "monitor.commands.notifications",
    "monitor.commands.simulate",
    "monitor.commands.db",
    "monitor.commands.check",
    "monitor.commands.web",
    "monitor.commands.calendar",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hiro-monitor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="TOML settings file (default: $HIRO_CONFIG, else built-in defaults)")
    parser.add_argument("--database", help="database URL, overrides the settings file")
    parser.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="overrides [logging] level of the settings (default INFO)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("init", help="create or upgrade the database").set_defaults(handler=cmd_init)

    run = commands.add_parser("run", help="run the daemon (MLLP listener) until SIGTERM/SIGINT")
    run.set_defaults(handler=cmd_run)
    run.add_argument("--port", type=int, help="MLLP port, overrides the settings file (0 = any free port)")
    run.add_argument("--host", help="MLLP bind address, overrides the settings file")

    ingest = commands.add_parser("ingest", help="replay HL7 files through the listener's code path")
    ingest.set_defaults(handler=cmd_ingest)
    ingest.add_argument("files", nargs="+", type=Path, metavar="FILE")
    ingest.add_argument("--batch", type=int, default=500, help="messages per transaction (default 500)")
    ingest.add_argument("--quiet", action="store_true", help="no progress bar")

    purge = commands.add_parser("purge", help="empty raw messages older than database.raw_retention_days")
    purge.set_defaults(handler=cmd_purge)

    demo = commands.add_parser(
        "demo", help="a self-contained demo: temporary SQLite, listener, simulated feed"
    )
    demo.set_defaults(handler=cmd_demo)
    demo.add_argument("--messages", type=int, default=200, help="simulated messages to send (default 200)")
    demo.add_argument("--rate", type=float, default=100.0, help="messages per second (default 100)")
    demo.add_argument(
        "--duration", type=float, help="seconds to keep listening afterwards (default: until Ctrl-C)"
    )
    demo.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        help="simulated seconds per real second (default 1; 2016: a week in 5 minutes)",
    )
    demo.add_argument(
        "--keep", action="store_true", help="keep the temporary database on exit (and say where it is)"
    )
    demo.add_argument(
        "--no-images",
        action="store_true",
        help="skip the imaging check (by default a demo PACS runs when Orthanc is installed)",
    )
    demo.add_argument(
        "--config",
        dest="demo_config",
        metavar="FILE",
        help="channel sections ([slack], [email], [webhooks], [notifications]) from FILE: enabled ones send",
    )

    exams = commands.add_parser("exams", help="list exams in the store")
    exams.set_defaults(handler=cmd_exams)
    exams.add_argument("--json", action="store_true", help="print a JSON array")
    exams.add_argument("--from", dest="first", type=day_spec, help=f"first day (site zone): {DAY_FORMS}")
    exams.add_argument("--to", dest="last", type=day_spec, help=f"last day (site zone): {DAY_FORMS}")
    exams.add_argument("--limit", type=int, help="show at most this many (the earliest first)")
    for module in COMMAND_GROUPS:
        importlib.import_module(module).register(commands)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    updates: dict[str, object] = {}
    if args.database:
        updates["database"] = settings.database.model_copy(update={"url": args.database})
    if getattr(args, "port", None) is not None or getattr(args, "host", None):
        mllp = {"port": args.port} if args.port is not None else {}
        if args.host:
            mllp["host"] = args.host
        updates["mllp"] = settings.mllp.model_copy(update=mllp)
    return settings.model_copy(update=updates) if updates else settings


def main(argv: Sequence[str] | None = None, *, clock: Clock = SYSTEM_CLOCK) -> int:
    """Run the command of ``argv`` (default: the process's arguments); returns the exit code.

    ``clock`` is where every ``now`` of the command comes from (handlers read it with
    ``monitor.commands.command_clock(args)``): the system clock for the real command, a
    fixed one for tests that run commands in-process.
    """
    from monitor.logs import configure_logging

    args = _parser().parse_args(argv)
    args.clock = clock
    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging(settings, level=args.log_level)
    handler: Handler = args.handler
    try:
        return handler(settings, args)
    except BrokenPipeError:  # `hiro-monitor messages show 12 | head`: the reader had enough
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's flush at exit must not fail again
        return 141  # as a tool killed by SIGPIPE would


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    open_engine(settings).dispose()
    print(f"database ready: {settings.database.url}")
    return 0


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from monitor.daemon import Daemon, run_until_signalled

    engine = open_engine(settings)

    def ready(daemon: Daemon) -> None:
        print(f"hiro-monitor: MLLP listening on {settings.mllp.host}:{daemon.server.port}", flush=True)
        if daemon.web is not None:
            print(f"hiro-monitor: dashboard on http://{settings.web.host}:{daemon.web.port}/", flush=True)

    try:
        daemon = Daemon(settings, engine, clock=command_clock(args))
        asyncio.run(run_until_signalled(daemon, on_ready=ready))
    except ConfigError as exc:  # found only on starting (a TLS key that is not the certificate's)
        print(exc, file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    return 0


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from monitor.commands.ingest import ingest_files

    engine = open_engine(settings)
    summary = ingest_files(
        engine, settings, args.files, batch=args.batch, progress=not args.quiet, clock=command_clock(args)
    )
    engine.dispose()
    counts: Counter[str] = summary.outcomes
    print(
        f"{summary.total} messages: {counts['accepted']} accepted, {counts['duplicate']} duplicate, "
        f"{counts['skipped']} skipped, {counts['rejected']} rejected, {counts['unavailable']} not stored"
    )
    for reason, count in summary.reasons.most_common():
        print(f"  rejected x{count}: {reason}")
    if summary.rejected:
        files = ", ".join(f"{name} {count}" for name, count in summary.rejected_by_file.most_common())
        print(f"rejected, by file: {files}")
        print("each rejected message: file #place, MSH-10, stored as (`messages show ID`):")
        width = shutil.get_terminal_size().columns  # the reasons above are whole; these fit the line
        for item in summary.rejected:
            where = f"{item.file} #{item.number}"
            stored = f"message {item.message_id}" if item.message_id is not None else "not stored"
            line = f"  {where}  {item.control_id or '(no MSH-10)'}  {stored}: {item.reason}"
            print(line if len(line) <= width else line[: width - 1] + "…")
        more = counts["rejected"] - len(summary.rejected)
        if more > 0:
            print(f"  ... and {more} more (hiro-monitor messages search --outcome rejected)")
    if counts["unavailable"]:
        return 3
    return 1 if counts["rejected"] else 0


def cmd_purge(settings: Settings, args: argparse.Namespace) -> int:
    from monitor.store.messages import purge_payloads

    engine = open_engine(settings)
    days = settings.database.raw_retention_days
    purged = purge_payloads(engine, utc_now(args), days)
    engine.dispose()
    print(f"purged the payload of {purged} messages older than {days} days")
    return 0


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 1_000_000:
        raise argparse.ArgumentTypeError(f"{text}: a speed above 0 (1: real time; 2016: a week in 5 min)")
    return value


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from monitor.demo import demo_folder, run_demo

    # Channels only from a file named on the command line (never from $HIRO_CONFIG: a demo
    # must not start posting to a site's Slack because the variable happens to be set).
    try:
        channels = load_settings(args.demo_config) if args.demo_config else settings if args.config else None
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2

    if args.log_level is None:  # the console is for the alerts: the daemon's INFO lines are noise here
        logging.getLogger("monitor").setLevel(logging.WARNING)
    # Ctrl-C cancels the demo (asyncio.run), which stops the daemon; then the folder goes.
    with demo_folder(args.keep) as folder, contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run_demo(
                folder,
                args.messages,
                args.rate,
                args.duration,
                speed=args.speed,
                channels=channels,
                start=utc_now(args),
                images=not args.no_images,
            )
        )
    return 0


def cmd_exams(settings: Settings, args: argparse.Namespace) -> int:
    from monitor.store.exams import day_bounds, list_exams

    zone = ZoneInfo(settings.site.timezone)
    engine = open_engine(settings)
    today = command_clock(args)().astimezone(zone).date()
    first = args.first(today) if args.first is not None else None
    last = args.last(today) if args.last is not None else None
    start_from, start_before = day_bounds(first, last, zone)
    rows = list_exams(engine, start_from=start_from, start_before=start_before)
    total = len(rows)
    if args.limit is not None:
        rows = rows[: args.limit]
    engine.dispose()
    if args.json:
        json.dump([row.as_json() for row in rows], sys.stdout, indent=2)
        print()
        return 0
    from rich.markup import escape

    from monitor.commands.tables import print_table

    shown = f"{len(rows)} of {total}" if len(rows) < total else str(total)
    lines = [
        [
            str(row.id), row.status,
            row.start.astimezone(zone).strftime("%Y-%m-%d %H:%M") if row.start else "-",
            row.modality or "", escape(row.location or ""), escape(row.external_id),
            escape(" ".join(filter(None, (row.procedure_code, row.procedure_text)))),
        ]
        for row in rows
    ]  # fmt: skip
    print_table(
        f"Exams ({shown}), times in {settings.site.timezone}",
        ("id", "status", "start", "modality", "location", "appointment", "procedure"), lines,
        flexible="procedure", caps={"location": 10, "appointment": 11},
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
