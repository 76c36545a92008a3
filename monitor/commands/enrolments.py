"""``hiro-monitor enroll add|import|list|update``: the enrolment registry.

    enroll add --trial ID --subject S --mrn M [--mrn M2] [--arm A] [--status S]
               [--off-study DATE] --anchor consent=2026-01-05 ...
    enroll import FILE.csv [--visits VISITS.csv]   all rows or none (monitor.store.registry.importing)
    enroll visits VISITS.csv          visits already done, from the office's records (monitor.feeds.visits)
    enroll list [--json] [--trial ID]
    enroll update --trial ID --subject S [--anchor k=v ...] [--arm A] [--status S]
                  [--off-study DATE] [--mrn M ...]

Every change is checked against the trial's protocol in force and the changed enrolments
are evaluated at once (an anchor moved: every due date moves with it). ``enroll list``
shows MRNs (it is the registry); problems and logs never do.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from monitor.commands import anchor_setting, iso_date, open_engine, print_json, report_evaluation, utc_now
from monitor.config import Settings
from monitor.evaluation import Evaluator
from monitor.feeds.visits import import_visits
from monitor.store.registry import (
    EnrolmentEntry,
    ImportRejected,
    ProtocolCatalogue,
    check_entries,
    find_entry,
    import_enrolments,
    list_enrolments,
    parse_mrns,
    parse_status,
    save_entries,
)
from rules import EnrolmentStatus

__all__ = ["register"]


def _status(text: str) -> EnrolmentStatus:
    try:
        return parse_status(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _optional_date(text: str) -> date | None:
    """``--off-study`` value: a date, or ``none`` / empty to clear it."""
    return None if text.strip().lower() in ("", "none") else iso_date(text)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    enroll = commands.add_parser("enroll", help="the enrolment registry: add, import, list, update")
    actions = enroll.add_subparsers(dest="enroll_command", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="enrol one subject")
    add.add_argument("--trial", required=True)
    add.add_argument("--subject", required=True, help="the study subject id")
    add.add_argument(
        "--mrn",
        action="append",
        required=True,
        help="an MRN of the patient, with its pool if wanted: 'E1234 (HOSP)' (repeat for more)",
    )
    add.add_argument("--arm")
    add.add_argument("--status", type=_status, default=EnrolmentStatus.ON_STUDY)
    add.add_argument("--off-study", dest="off_study", type=iso_date)
    add.add_argument("--anchor", action="append", type=anchor_setting, default=[], metavar="NAME=YYYY-MM-DD")
    add.add_argument("--monitoring-start", dest="monitoring_start", type=iso_date, help=_MONITORING_HELP)
    add.set_defaults(handler=cmd_add)

    importing = actions.add_parser("import", help="enrol the subjects of a CSV file (all rows or none)")
    importing.add_argument("file", type=Path, metavar="FILE.csv")
    importing.add_argument(
        "--visits",
        type=Path,
        metavar="VISITS.csv",
        help="visits already done: trial,subject,timepoint,date,accession",
    )
    importing.set_defaults(handler=cmd_import)

    visits = actions.add_parser("visits", help="record visits already done, from the office's records")
    visits.add_argument("file", type=Path, metavar="VISITS.csv")
    visits.set_defaults(handler=cmd_visits)

    listing = actions.add_parser("list", help="list enrolments (with MRNs)")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.add_argument("--trial", help="only this trial")
    listing.set_defaults(handler=cmd_list)

    change = actions.add_parser("update", help="change anchor dates, arm, status, off-study date or MRNs")
    change.add_argument("--trial", required=True)
    change.add_argument("--subject", required=True)
    change.add_argument(
        "--anchor",
        action="append",
        type=anchor_setting,
        default=[],
        metavar="NAME=YYYY-MM-DD",
        help="set an anchor date; NAME= clears it",
    )
    change.add_argument("--arm", help='the arm ("" clears it)')
    change.add_argument("--status", type=_status)
    change.add_argument(
        "--off-study", dest="off_study", type=_optional_date, default=..., help="date or none"
    )
    change.add_argument("--mrn", action="append", help="replace the MRN list (repeat for more)")
    change.add_argument("--monitoring-start", dest="monitoring_start", type=iso_date, help=_MONITORING_HELP)
    change.set_defaults(handler=cmd_update)


_MONITORING_HELP = (
    "the day the office starts watching the subject, YYYY-MM-DD (default: today): visits whose "
    "window closed before it are history, not missed"
)


def _today(settings: Settings, now: datetime) -> date:
    """The site's date at ``now``: when a new enrolment's monitoring starts."""
    return now.astimezone(ZoneInfo(settings.site.timezone)).date()


def _save(settings: Settings, entries: list[EnrolmentEntry], now: datetime, *, must_exist: bool) -> int:
    """Check ``entries`` against the protocols and store them at ``now``, then evaluate what changed."""
    engine = open_engine(settings)
    with engine.begin() as conn:
        trials = ProtocolCatalogue().trials(conn, {entry.trial for entry in entries})
        problems = [
            f"{entry.trial} {entry.subject}: {problem}"
            for entry, found in zip(entries, check_entries(conn, trials, entries), strict=True)
            for problem in found
        ]
        for entry in entries:
            exists = find_entry(conn, entry.trial, entry.subject) is not None
            if exists != must_exist:
                problems.append(
                    f"{entry.trial} {entry.subject}: already enrolled (use enroll update)"
                    if exists
                    else f"{entry.trial} {entry.subject}: not enrolled (use enroll add)"
                )
        if problems:
            for problem in problems:
                print(problem, file=sys.stderr)
            engine.dispose()
            return 1
        saved = save_entries(conn, entries, now, today=_today(settings, now))
    verb = "updated" if must_exist else "enrolled"
    for entry in entries:
        print(f"{verb} {entry.trial} {entry.subject}" + ("" if saved.changed_ids else " (no change)"))
    if saved.changed_ids:
        report_evaluation(Evaluator(engine, settings).evaluate_enrolments(saved.changed_ids, now))
    engine.dispose()
    return 0


def cmd_add(settings: Settings, args: argparse.Namespace) -> int:
    anchors = dict(args.anchor)
    empty = sorted(name for name, value in anchors.items() if value is None)
    if empty:
        print(f"--anchor {', '.join(empty)}: give a date (NAME=YYYY-MM-DD)", file=sys.stderr)
        return 2
    try:
        mrns, pools = parse_mrns(args.mrn)
    except ValueError as error:
        print(f"--mrn: {error}", file=sys.stderr)
        return 2
    entry = EnrolmentEntry(
        trial=args.trial.strip(),
        subject=args.subject.strip(),
        mrns=mrns,
        pools=pools,
        anchors=anchors,
        arm=args.arm or None,
        status=args.status,
        off_study=args.off_study,
        monitored_from=args.monitoring_start,
    )
    return _save(settings, [entry], utc_now(args), must_exist=False)


def cmd_update(settings: Settings, args: argparse.Namespace) -> int:
    engine = open_engine(settings)
    with engine.connect() as conn:
        existing = find_entry(conn, args.trial, args.subject)
    engine.dispose()
    if existing is None:
        print(f"{args.trial} {args.subject}: not enrolled (use enroll add)", file=sys.stderr)
        return 1
    entry = existing.entry()
    anchors = dict(entry.anchors)
    for name, value in args.anchor:
        if value is None:
            anchors.pop(name, None)
        else:
            anchors[name] = value
    entry = replace(entry, anchors=anchors)
    if args.arm is not None:
        entry = replace(entry, arm=args.arm.strip() or None)
    if args.status is not None:
        entry = replace(entry, status=args.status)
    if args.off_study is not ...:
        entry = replace(entry, off_study=args.off_study)
    if args.monitoring_start is not None:
        entry = replace(entry, monitored_from=args.monitoring_start)
    if args.mrn:
        try:
            mrns, pools = parse_mrns(args.mrn)
        except ValueError as error:
            print(f"--mrn: {error}", file=sys.stderr)
            return 2
        entry = replace(entry, mrns=mrns, pools=pools)
    return _save(settings, [entry], utc_now(args), must_exist=True)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        print(f"{path}: cannot read it ({reason})", file=sys.stderr)
        return None


def _rejected(path: Path, rejected: ImportRejected) -> int:
    for problem in rejected.problems:
        print(f"{path}: {problem}", file=sys.stderr)
    print(f"{path}: nothing imported ({len(rejected.problems)} problem(s))", file=sys.stderr)
    return 1


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    text = _read(args.file)
    visits = _read(args.visits) if args.visits is not None else ""
    if text is None or visits is None:
        return 1
    engine = open_engine(settings)
    now = utc_now(args)
    zone = ZoneInfo(settings.site.timezone)
    reading = args.file
    try:
        with engine.begin() as conn:  # both files or neither
            saved = import_enrolments(conn, text, now, today=_today(settings, now))
            reading = args.visits or args.file
            exam_ids = import_visits(conn, visits, now, zone) if args.visits is not None else []
    except ImportRejected as rejected:
        engine.dispose()
        return _rejected(reading, rejected)
    print(f"{args.file}: {saved.added} added, {saved.updated} updated, {saved.unchanged} unchanged")
    if args.visits is not None:
        print(f"{args.visits}: {len(exam_ids)} visit(s) recorded")
    evaluator = Evaluator(engine, settings)
    if saved.changed_ids:
        report_evaluation(evaluator.evaluate_enrolments(saved.changed_ids, now))
    if exam_ids:
        report_evaluation(evaluator.evaluate_for_exams(exam_ids, now), title="visits")
    engine.dispose()
    return 0


def cmd_visits(settings: Settings, args: argparse.Namespace) -> int:
    text = _read(args.file)
    if text is None:
        return 1
    engine = open_engine(settings)
    now = utc_now(args)
    try:
        with engine.begin() as conn:
            exam_ids = import_visits(conn, text, now, ZoneInfo(settings.site.timezone))
    except ImportRejected as rejected:
        engine.dispose()
        return _rejected(args.file, rejected)
    print(f"{args.file}: {len(exam_ids)} visit(s) recorded")
    if exam_ids:
        report_evaluation(Evaluator(engine, settings).evaluate_for_exams(exam_ids, now), title="visits")
    engine.dispose()
    return 0


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    engine = open_engine(settings)
    with engine.connect() as conn:
        views = list_enrolments(conn, trial=args.trial)
    engine.dispose()
    if args.json:
        print_json([view.as_json() for view in views])
        return 0
    from rich.markup import escape

    from monitor.commands.tables import print_table

    lines = [
        [
            view.trial, view.subject, escape(", ".join(view.mrn_labels())), escape(view.arm or ""),
            view.status, view.off_study.isoformat() if view.off_study else "",
            " ".join(f"{name}={value.isoformat()}" for name, value in sorted(view.anchors.items())),
        ]
        for view in views
    ]  # fmt: skip
    print_table(
        f"Enrolments ({len(views)})", ("trial", "subject", "MRNs", "arm", "status", "off study", "anchors"),
        lines, flexible="anchors", caps={"MRNs": 16, "arm": 10},
    )  # fmt: skip
    return 0
