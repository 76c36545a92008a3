"""``hiro-monitor corelab``: the research exams whose images go to a sponsor's core lab.

- ``list``: open submissions, earliest due first, with what is overdue (``--all``: also the
  submitted and accepted ones; those with an open query say so). Trial, subject id, visit and
  exam id: no patient name or MRN.
- ``send EXAM_ID``: the PACS makes the de-identified copy of the exam's studies, the copy is
  checked, and the PACS sends it to the trial's core lab; refused copies are never sent.
  Exit code 1 when the copy was refused or the send failed.
- ``uploaded EXAM_ID --confirmation NUMBER``: the office uploaded the images by hand (a
  trial whose core lab takes manual uploads) and the sponsor confirmed.

Each of them first opens the submissions of exams whose images arrived since the last PACS
poll did (the daemon does that after every poll). Every copy and record is audited.
"""

from __future__ import annotations

import argparse
import sys
from zoneinfo import ZoneInfo

from monitor.commands import command_clock, open_engine, operator, print_json
from monitor.config import Settings
from monitor.evaluation import Evaluator

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("corelab", help="images due at the trials' core labs: list, send, record")
    actions = group.add_subparsers(dest="corelab_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="open submissions, earliest due first")
    listing.add_argument("--all", action="store_true", help="also the submitted ones")
    listing.add_argument("--json", action="store_true", help="the submissions as JSON")
    listing.set_defaults(handler=cmd_list)
    send = actions.add_parser("send", help="copy, check and send an exam's images to its core lab")
    send.add_argument("exam_id", type=int)
    send.add_argument("--again", action="store_true", help="send again an exam submitted before")
    send.set_defaults(handler=cmd_send)
    uploaded = actions.add_parser("uploaded", help="record a manual upload the sponsor confirmed")
    uploaded.add_argument("exam_id", type=int)
    uploaded.add_argument("--confirmation", required=True, help="the sponsor's confirmation number")
    uploaded.set_defaults(handler=cmd_uploaded)


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    from monitor.dispatch.core_lab import track_due
    from monitor.store.core_lab_queries import open_query_dues
    from monitor.store.submissions import OPEN, submissions_list

    clock = command_clock(args)
    engine = open_engine(settings)
    now = clock()
    track_due(engine, settings, now)
    with engine.connect() as conn:
        rows = submissions_list(conn, statuses=None if args.all else OPEN)
        queried = set(open_query_dues(conn, [row.exam_id for row in rows]))
    engine.dispose()
    if args.json:
        print_json([
            {
                "exam_id": row.exam_id, "trial": row.trial, "subject": row.subject,
                "timepoint": row.timepoint,
                "state": "query open" if row.exam_id in queried else row.state(now),
                "due_at": row.due_at.isoformat(), "destination": row.destination,
                "confirmation": row.confirmation, "problems": list(row.problems), "error": row.error,
            }
            for row in rows
        ])  # fmt: skip
        return 0
    zone = ZoneInfo(settings.site.timezone)
    if not rows:
        print("no core-lab submission is open" if not args.all else "no core-lab submission yet")
    from rich.markup import escape

    from monitor.commands.tables import print_table

    lines: list[list[str]] = []
    notes: list[str] = []
    for row in rows:
        state = "query open" if row.exam_id in queried else row.state(now)
        left = row.due_at - now
        when = f"{row.due_at.astimezone(zone):%Y-%m-%d %H:%M}"
        if state in ("due", "refused", "failed"):
            when += f" (in {_hours(left.total_seconds())})"
        elif state == "overdue":
            when += f" (-{_hours(-left.total_seconds())})"
        to = row.destination + (f", confirmation {row.confirmation}" if row.confirmation else "")
        lines.append(
            [str(row.exam_id), state, row.trial, row.subject, escape(row.timepoint), when, escape(to)]
        )
        notes += [f"exam {row.exam_id}: copy refused: {problem}" for problem in row.problems]
        notes += [f"exam {row.exam_id}: send failed: {row.error}"] if row.error else []
    if lines:
        print_table(
            f"Core-lab submissions ({len(lines)}), times in {settings.site.timezone}",
            ("exam", "state", "trial", "subject", "visit", "due", "to"), lines,
            flexible="to", caps={"visit": 14},
        )  # fmt: skip
    for note in notes:
        print(note)
    return 0


def cmd_send(settings: Settings, args: argparse.Namespace) -> int:
    from monitor.dispatch.core_lab import CoreLabError, send_copy, track_due

    clock = command_clock(args)
    engine = open_engine(settings)
    track_due(engine, settings, clock())
    try:
        result = send_copy(
            engine,
            settings,
            args.exam_id,
            by=operator(),
            clock=clock,
            again=args.again,
            evaluator=Evaluator(engine, settings),
        )
    except CoreLabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    images = sum(outcome.instances for outcome in result.outcomes)
    if result.status == "submitted":
        print(
            f"exam {args.exam_id}: {len(result.outcomes)} study copy(ies), {images} images checked and sent"
        )
        return 0
    print(f"exam {args.exam_id}: copy {result.status}, nothing more sent", file=sys.stderr)
    for problem in result.problems:
        print(f"  {problem}", file=sys.stderr)
    if result.error:
        print(f"  {result.error}", file=sys.stderr)
    return 1


def cmd_uploaded(settings: Settings, args: argparse.Namespace) -> int:
    from monitor.dispatch.core_lab import CoreLabError, record_upload, track_due

    clock = command_clock(args)
    engine = open_engine(settings)
    track_due(engine, settings, clock())
    try:
        record_upload(
            engine,
            args.exam_id,
            args.confirmation,
            by=operator(),
            now=clock(),
            evaluator=Evaluator(engine, settings),
        )
    except CoreLabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(f"exam {args.exam_id}: recorded as submitted")
    return 0


def _hours(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:.0f} h" if hours >= 1 else f"{max(seconds, 0) / 60:.0f} min"
