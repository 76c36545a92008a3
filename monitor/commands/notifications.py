"""``hiro-monitor notifications``, ``dispatch`` and ``instructions``.

    notifications [--json] [--status S] [--exam ID] [--limit N]   the outbox
    notifications retry (ID... | --failed [--channel C])       failed deliveries back to pending
    dispatch [--once]                        send due messages now (--once: then exit)
    instructions EXAM_ID [--out FILE] [--phi POLICY]              a technologist sheet

The outbox listing carries no PHI (subjects by study id; addresses are channels, not
patients). ``instructions`` prints the sheet under the ``none`` policy unless ``--phi``
says otherwise; exit 1 when the exam serves no research visit.

``notifications retry`` shares :func:`monitor.store.outbox.retry_failed` with the
dashboard's Retry buttons (same refusals: a row whose exam was cancelled, moved or has
passed stays failed) and writes the same audit rows, under ``cli:<login name>``. Exit 1
when a row named by id was not put back.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from zoneinfo import ZoneInfo

from monitor.commands import command_clock, open_engine, operator, print_json, utc_now
from monitor.config import Settings
from monitor.store.outbox import OutboxStatus, list_outbox, retry_failed

__all__ = ["register"]

_STYLE = {"failed": "bold red", "pending": "yellow", "sending": "cyan", "sent": "green", "cancelled": "dim"}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    listing = commands.add_parser("notifications", help="list the outbox (planned and sent messages)")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.add_argument(
        "--status", choices=[status.value for status in OutboxStatus], help="only this status"
    )
    listing.add_argument("--exam", type=int, metavar="ID", help="only messages about this exam")
    listing.add_argument("--limit", type=int, metavar="N", help="only the last N (by due time)")
    listing.set_defaults(handler=cmd_notifications)
    actions = listing.add_subparsers(title="actions", metavar="ACTION")
    retry = actions.add_parser(
        "retry",
        help="put failed deliveries back to pending, to be sent at once",
        description="Put failed deliveries back to pending (attempts counted afresh). Rows whose "
        "exam was cancelled, moved or has passed are not retried.",
    )
    retry.add_argument("ids", nargs="*", type=int, metavar="ID", help="outbox row ids")
    retry.add_argument("--failed", action="store_true", help="every failed row")
    retry.add_argument("--channel", metavar="C", help="with --failed: only this channel (slack, email ...)")
    retry.set_defaults(handler=cmd_retry, usage_error=retry.error)

    dispatch = commands.add_parser("dispatch", help="send due messages from the outbox")
    dispatch.add_argument("--once", action="store_true", help="send what is due now, then exit")
    dispatch.set_defaults(handler=cmd_dispatch)

    sheet = commands.add_parser("instructions", help="render the technologist instruction sheet of an exam")
    sheet.add_argument("exam_id", type=int, metavar="EXAM_ID")
    sheet.add_argument(
        "--out", type=Path, metavar="FILE",
        help="write the HTML here (default on a terminal: instructions-exam-EXAM_ID.html)",
    )  # fmt: skip
    shown = sheet.add_mutually_exclusive_group()
    shown.add_argument("--html", action="store_true", help="print the HTML (for a pipe)")
    shown.add_argument("--text", action="store_true", help="print the plain-text sheet")
    sheet.add_argument(
        "--phi", choices=("none", "limited", "full"), default="none", help="PHI policy (default none)"
    )
    sheet.set_defaults(handler=cmd_instructions)


def cmd_notifications(settings: Settings, args: argparse.Namespace) -> int:
    engine = open_engine(settings)
    rows = list_outbox(engine, status=args.status, exam_id=args.exam, limit=args.limit)
    engine.dispose()
    if args.json:
        print_json([row.as_json() for row in rows])
        return 0
    from rich.markup import escape

    from monitor.commands.tables import print_table

    zone = ZoneInfo(settings.site.timezone)
    lines = []
    for row in rows:
        style = _STYLE.get(row.status)
        note = row.summary if not row.last_error else f"{row.summary} [{row.last_error}]"
        if row.attempts > 1:
            note = f"({row.attempts} tries) {note}"
        lines.append([
            str(row.id), f"[{style}]{row.status}[/]" if style else row.status, row.kind, row.address,
            str(row.exam_id) if row.exam_id is not None else "",
            row.due_at.astimezone(zone).strftime("%m-%d %H:%M"), escape(note),
        ])  # fmt: skip
    # Fits 80 columns: the audience is the kind's (--json has it), the year is this one's.
    print_table(
        f"Outbox ({len(rows)}), times in {settings.site.timezone}",
        ("id", "status", "kind", "to", "exam", "due", "summary"),
        lines, flexible="summary", caps={"to": 24},
    )  # fmt: skip
    return 0


def cmd_retry(settings: Settings, args: argparse.Namespace) -> int:
    if bool(args.ids) == args.failed:
        args.usage_error("name the rows (ID ...) or give --failed, not both")
    if args.channel and not args.failed:
        args.usage_error("--channel goes with --failed")
    from monitor.store.accounts import record_audit

    engine = open_engine(settings)
    now = utc_now(args)
    who = operator()
    try:
        with engine.begin() as conn:
            result = retry_failed(conn, now, ids=args.ids or None, channel=args.channel)
            for row in result.retried:
                record_audit(
                    conn, now, who, "notification.retry", "notification", row.id, detail=row.audit_detail()
                )
    finally:
        engine.dispose()
    print(f"put back {len(result.retried)} notification(s) to pending")
    for row_id, reason in result.refused:
        print(f"  {row_id}: not retried: {reason}")
    return 1 if args.ids and result.refused else 0


def cmd_dispatch(settings: Settings, args: argparse.Namespace) -> int:
    from monitor.dispatch.dispatcher import Dispatcher

    engine = open_engine(settings)
    dispatcher = Dispatcher(engine, settings, clock=command_clock(args))
    try:
        if args.once:
            stats = dispatcher.run_once()
        else:
            stopping = threading.Event()

            def _stop(signum: int, frame: FrameType | None) -> None:
                stopping.set()

            signal.signal(signal.SIGTERM, _stop)
            signal.signal(signal.SIGINT, _stop)
            print(
                f"dispatching every {settings.scheduler.dispatch_every_seconds} s; Ctrl-C stops", flush=True
            )
            while not stopping.is_set():
                dispatcher.tick()
                stopping.wait(settings.scheduler.dispatch_every_seconds)
            stats = dispatcher.stats
    finally:
        dispatcher.close(wait=True)
        engine.dispose()
    print(
        f"sent {stats.sent}, updated {stats.updated}, found already sent {stats.found}, "
        f"retrying {stats.retried}, failed {stats.failed}"
    )
    for code, count in sorted(stats.by_error.items()):
        print(f"  {code}: {count}")
    return 0


def cmd_instructions(settings: Settings, args: argparse.Namespace) -> int:
    from monitor.dispatch.content import ContentBuilder
    from monitor.render import Renderer
    from notifiers import NotifierError, PhiPolicy
    from notifiers.compose import render_sheet

    engine = open_engine(settings)
    renderer = Renderer.from_settings(settings)
    try:
        with engine.connect() as conn:
            content = ContentBuilder(settings, renderer).sheet(
                conn, args.exam_id, with_mrn=args.phi == "full"
            )
    finally:
        engine.dispose()
    if content is None:
        print(
            f"exam {args.exam_id} serves no research timepoint (or is not in the store): "
            "there is no instruction sheet for it",
            file=sys.stderr,
        )
        return 1
    try:
        sheet = render_sheet(renderer, content, PhiPolicy(args.phi), text=args.text)
    except NotifierError as exc:
        print(f"cannot render the sheet: {exc}", file=sys.stderr)
        return 1
    # Raw HTML is not for reading on a terminal: there it goes to a file, unless asked for.
    out = args.out
    if out is None and not args.html and not args.text and sys.stdout.isatty():
        out = Path(f"instructions-exam-{args.exam_id}.html")
    if out is not None:
        out.write_text(sheet, encoding="utf-8")
        print(f"wrote {out} (open it in a browser to print)")
    else:
        sys.stdout.write(sheet)
    return 0
