"""``hiro-monitor messages``: the integration team's message browser on the command line.

- ``search``: stored messages, newest first, by control id, accession, appointment id,
  MRN, type, outcome, feed and days; 50 a page, ``--after MARK`` for the next one (the
  last line prints the mark). A search by MRN is audited as a view of patient data.
- ``show ID``: one message, one segment per line, each field with its HL7 position and
  name (hl7apy's structure definitions), the acknowledgement it got and the exams it
  touched; ``--validate`` adds hl7apy's verdict on its structure. Audited: it is PHI.
- ``reprocess ID ...`` or ``reprocess --rejected-since DAY``: rejected messages through
  the same intake again, after a mapping or configuration fix (idempotent, linked to the
  original, audited); the exams they touch are re-evaluated.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from monitor.commands import DAY_FORMS, command_clock, day_spec, open_engine, operator, print_json
from monitor.config import Settings

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from monitor.store.message_browser import OUTCOMES

    group = commands.add_parser("messages", help="stored HL7/FHIR messages: search, show, reprocess")
    actions = group.add_subparsers(dest="messages_command", required=True, metavar="ACTION")
    search = actions.add_parser("search", help="stored messages, newest first")
    search.add_argument("--control-id", default="", help="MSH-10")
    search.add_argument("--accession", default="", help="of an exam the message wrote to")
    search.add_argument("--appointment", default="", help="the exam's appointment id (Epic CSN)")
    search.add_argument("--mrn", default="", help="of an exam the message wrote to (audited)")
    search.add_argument("--type", dest="message_type", default="", help="SIU^S12, or SIU for all triggers")
    search.add_argument("--outcome", choices=OUTCOMES, default="")
    search.add_argument("--feed", default="")
    search.add_argument("--from", dest="since", type=day_spec, help=f"first day: {DAY_FORMS}")
    search.add_argument("--to", dest="until", type=day_spec, help="last day (included), same forms")
    search.add_argument("--after", default="", help="the mark the previous page ended with")
    search.add_argument("--limit", type=int, default=50)
    search.add_argument("--json", action="store_true", help="the page as JSON (the mark included)")
    search.set_defaults(handler=cmd_search)
    show = actions.add_parser("show", help="one message, its fields named, its answer and exams")
    show.add_argument("message_id", type=int)
    show.add_argument("--validate", action="store_true", help="hl7apy's strict structure check")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=cmd_show)
    again = actions.add_parser("reprocess", help="rejected messages through the intake again")
    again.add_argument("message_ids", type=int, nargs="*", metavar="ID")
    again.add_argument("--rejected-since", type=day_spec, help=f"every rejected message since: {DAY_FORMS}")
    again.set_defaults(handler=cmd_reprocess)


def _day_start(settings: Settings, args: argparse.Namespace, spec: Any, days_after: int = 0) -> datetime:
    """Midnight of the day ``spec`` names, in the site's zone (``days_after`` later)."""
    from datetime import timedelta

    zone = ZoneInfo(settings.site.timezone)
    today = command_clock(args)().astimezone(zone).date()
    day = spec(today) + timedelta(days=days_after)
    return datetime.combine(day, time(), tzinfo=zone)


def cmd_search(settings: Settings, args: argparse.Namespace) -> int:
    from monitor.store.accounts import record_audit
    from monitor.store.message_browser import MessageFilter, PageMark, search_messages

    try:
        after = PageMark.parse(args.after) if args.after else None
    except ValueError as exc:
        print(f"error: --after: {exc}", file=sys.stderr)
        return 2
    if args.feed and args.feed not in settings.feed_names():
        print(
            f"error: --feed: no feed {args.feed!r} here ({', '.join(settings.feed_names())})", file=sys.stderr
        )
        return 2
    wanted = MessageFilter(
        control_id=args.control_id, accession=args.accession, appointment=args.appointment,
        mrn=args.mrn, message_type=args.message_type, outcome=args.outcome, feed=args.feed,
        since=_day_start(settings, args, args.since) if args.since else None,
        until=_day_start(settings, args, args.until, days_after=1) if args.until else None,
    )  # fmt: skip
    engine = open_engine(settings)
    with engine.begin() as conn:
        page = search_messages(conn, wanted, after, max(1, min(args.limit, 500)))
        if wanted.by_patient:
            record_audit(
                conn, command_clock(args)(), operator(), "view", "messages", "", "",
                f"search by MRN: {len(page.rows)} message(s)",
            )  # fmt: skip
    engine.dispose()
    zone = ZoneInfo(settings.site.timezone)
    if args.json:
        print_json({"messages": [_listed(row) for row in page.rows], "next": page.next and page.next.text()})
        return 0
    _print_page(page.rows, zone)
    if page.next is not None:
        print(f"more: --after {page.next.text()}")
    return 0


def _listed(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "feed": row.feed, "received_at": row.received_at.isoformat(),
        "type": row.message_type, "control_id": row.control_id, "outcome": row.outcome,
        "ack": row.ack_code, "error_code": row.error_code, "error": row.error,
        "resent": row.duplicates, "key_reused": bool(row.key_reused), "reprocess_of": row.reprocess_of,
    }  # fmt: skip


def _print_page(rows: Any, zone: ZoneInfo) -> None:
    from rich.markup import escape

    from monitor.commands.tables import print_table

    if not rows:
        print("no stored message matches")
        return
    lines = [
        [
            str(row.id), f"{row.received_at.astimezone(zone):%Y-%m-%d %H:%M}",
            escape(row.message_type or "-"), escape(row.control_id or "-"),
            f"{row.outcome} {row.ack_code}".strip()
            + ("" if row.reprocess_of is None else f" (of {row.reprocess_of})"),
            escape(row.error or ""),
        ]
        for row in rows
    ]  # fmt: skip
    # A long control id is cut at 14; the reason gives way; --json and `show` have them in full.
    print_table(
        "", ("id", "received", "type", "control id", "outcome", "reason"), lines,
        flexible="reason", caps={"control id": 14},
    )  # fmt: skip


def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    from monitor.feeds.hl7.structure import ack_sent, lay_out, validate_structure
    from monitor.store.accounts import record_audit
    from monitor.store.message_browser import exams_touched, reprocessing_of
    from monitor.store.messages import raw_message

    engine = open_engine(settings)
    with engine.begin() as conn:
        found = raw_message(conn, args.message_id)
        if found is None:
            print(f"error: there is no message {args.message_id}", file=sys.stderr)
            return 1
        record_audit(conn, command_clock(args)(), operator(), "view", "message", args.message_id)
        touched = exams_touched(conn, args.message_id)
        chain = reprocessing_of(conn, args.message_id)
    engine.dispose()
    payload = bytes(found.payload) if found.payload is not None else None
    version, segments = lay_out(payload) if payload is not None else ("", [])
    problems = validate_structure(payload) if args.validate and payload is not None else []
    if args.json:
        print_json(
            {
                **_listed(found),
                "peer": found.peer,
                "version": version,
                "segments": [
                    {"segment": s.segment, "fields": [[f.position, f.name, f.value] for f in s.fields]}
                    for s in segments
                ],
                "exams": [{"id": e.id, "appointment": e.external_id, "event": e.kind} for e in touched],
                "attempts": [{"id": a.id, "outcome": a.outcome} for a in chain.attempts],
                **({"structure_problems": problems} if args.validate else {}),
            }
        )
        return 0
    zone = ZoneInfo(settings.site.timezone)
    print(f"message {found.id}  {found.message_type or '-'}  control id {found.control_id or '-'}  "
          f"feed {found.feed}  from {found.peer or '-'}")  # fmt: skip
    print(f"received {found.received_at.astimezone(zone):%Y-%m-%d %H:%M:%S %Z}  "
          f"outcome {found.outcome}  answered {found.ack_code or '-'}"
          + (f" {found.error_code}: {found.error}" if found.error else ""))  # fmt: skip
    if found.reprocess_of is not None:
        print(f"a reprocessing of message {found.reprocess_of}")
    for attempt in chain.attempts:
        print(f"reprocessed as message {attempt.id}: {attempt.outcome}")
    if found.duplicates:
        print(f"resent {found.duplicates} time(s) by the sender (answered the same)")
    if payload is None:
        print("content purged after the retention period")
        return 0
    print(f"\nHL7 {version} ({len(segments)} segments)")
    for segment in segments:
        print(segment.text)
        for field in segment.fields:
            print(f"    {field.position:<8} {field.name[:34]:<34} {field.value}")
    print("\nexams touched: " + (", ".join(f"{e.id} ({e.kind})" for e in touched) or "none"))
    ack = ack_sent(payload, found.ack_code, found.error_code, found.error, found.received_at)
    if ack:
        print("\nACK sent (rebuilt from the stored answer; MSH-7 is when the message arrived):\n" + ack)
    if args.validate:
        print("structure (hl7apy, strict): " + ("; ".join(problems) if problems else "conforms"))
    return 0


def cmd_reprocess(settings: Settings, args: argparse.Namespace) -> int:
    from monitor.evaluation import Evaluator
    from monitor.feeds.hl7.intake import Intake
    from monitor.feeds.hl7.mapping import MappingSettings
    from monitor.store.message_browser import rejected_since

    if bool(args.message_ids) == bool(args.rejected_since):
        print("error: name message ids, or --rejected-since DAY (not both)", file=sys.stderr)
        return 2
    clock = command_clock(args)
    engine = open_engine(settings)
    intake = Intake(engine, MappingSettings.from_settings(settings.hl7), clock=clock)
    ids: list[int] = list(args.message_ids)
    if args.rejected_since:
        with engine.connect() as conn:
            ids = rejected_since(conn, intake.feed, _day_start(settings, args, args.rejected_since))
        if not ids:
            print(f"no rejected message of feed {intake.feed} waits since then")
    failed = 0
    touched: set[int] = set()
    by = operator()
    for message_id in ids:
        result = intake.reprocess(message_id, by=by)
        if result.done:
            line = f"message {result.original}: reprocessed as message {result.attempt}, {result.outcome}"
            print(line + (f" ({result.reason})" if result.reason else ""))
            failed += result.outcome == "rejected"
            touched.update(result.exam_ids)
        else:
            print(f"message {result.original}: not reprocessed: {result.reason}")
            failed += result.attempt is None
    if touched:
        Evaluator(engine, settings).observe_exams(sorted(touched), clock())
    engine.dispose()
    return 1 if failed else 0
