"""``hiro-monitor evaluate`` and ``hiro-monitor findings``.

    evaluate [--full]                          bring every enrolment's findings up to date now
                                               (judging again only what changed since the
                                               last sweep; --full: everyone); print what changed
    evaluate --at WHEN [--json] [--record]     what-if: the findings as of another moment
    findings [--json] [--trial ID] [--subject S] [--open]

Findings name subjects by study id only: no MRN, name or birth date in either output.
Window dates are the site's local dates; ``opened``/``updated`` are shown in the site's zone
(JSON: UTC ISO 8601).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import asdict
from datetime import UTC, date, datetime, time
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from monitor.commands import open_engine, print_json, report_evaluation, utc_now
from monitor.config import Settings
from monitor.evaluation import Evaluator
from monitor.store.findings import list_findings
from rules import Finding

__all__ = ["register"]

_STYLE = {"critical": "bold red", "warning": "yellow", "info": "dim"}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    evaluate = commands.add_parser(
        "evaluate", help="run the compliance engine over the store, record findings"
    )
    evaluate.add_argument(
        "--at",
        type=moment,
        metavar="WHEN",
        help="judge as of another moment, recording nothing (what-if): YYYY-MM-DD (noon, site time), "
        "YYYY-MM-DDTHH:MM (site time) or with an offset",
    )
    evaluate.add_argument("--record", action="store_true", help="with --at: record the findings as of then")
    evaluate.add_argument("--json", action="store_true", help="with --at: print the findings as JSON")
    evaluate.add_argument(
        "--full", action="store_true", help="judge every enrolment again, not only what changed"
    )
    evaluate.set_defaults(handler=cmd_evaluate)

    findings = commands.add_parser("findings", help="list findings (open and resolved)")
    findings.add_argument("--json", action="store_true", help="print a JSON array")
    findings.add_argument("--trial", help="only this trial")
    findings.add_argument("--subject", help="only this study subject id")
    findings.add_argument("--open", action="store_true", help="only open findings")
    findings.set_defaults(handler=cmd_findings)


def moment(text: str) -> str:
    """argparse type for ``--at``: checked here, read in the site's zone by :func:`_at`."""
    try:
        date.fromisoformat(text) if len(text.strip()) == 10 else datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None
    return text.strip()


def _at(text: str, zone: ZoneInfo) -> datetime:
    """A date (noon, site time), a local datetime (site time) or one with an offset, as aware UTC."""
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), time(12, 0), zone).astimezone(UTC)
    found = datetime.fromisoformat(text)
    return (found if found.tzinfo else found.replace(tzinfo=zone)).astimezone(UTC)


def _finding_json(finding: Finding) -> dict[str, Any]:
    found = asdict(finding)
    return {key: value.isoformat() if isinstance(value, date) else str(value) if isinstance(value, Enum)
            else value for key, value in found.items()}  # fmt: skip


def cmd_evaluate(settings: Settings, args: argparse.Namespace) -> int:
    engine = open_engine(settings)
    evaluator = Evaluator(engine, settings)
    if args.at is None or args.record:
        now = utc_now(args) if args.at is None else _at(args.at, ZoneInfo(settings.site.timezone))
        summary = evaluator.evaluate_all(now, full=args.full)
        engine.dispose()
        report_evaluation(summary, title="evaluation" if args.at is None else f"evaluation as of {args.at}")
        return 0
    evaluation = evaluator.preview(_at(args.at, ZoneInfo(settings.site.timezone)))
    engine.dispose()
    if args.json:
        print_json([_finding_json(finding) for finding in evaluation.findings])
        return 0
    counts = Counter(
        (f.kind.value, f.severity.value) for f in evaluation.findings if f.kind.value != "in_window"
    )
    print(f"as of {args.at} (nothing recorded): {len(evaluation.findings)} finding(s)")
    for (kind, severity), count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        print(f"  {kind:<18} {severity:<9} {count}")
    return 0


def cmd_findings(settings: Settings, args: argparse.Namespace) -> int:
    from monitor.store.registry.protocols import protocols_in_force

    engine = open_engine(settings)
    if args.trial:
        with engine.connect() as conn:
            known = sorted(p.trial for p in protocols_in_force(conn))
        if args.trial not in known:
            engine.dispose()
            trials = ", ".join(known) or "none loaded yet (hiro-monitor trials load FILE)"
            print(f"error: no trial {args.trial!r} (trials: {trials})", file=sys.stderr)
            return 2
    views = list_findings(engine, trial=args.trial, subject=args.subject, open_only=args.open)
    engine.dispose()
    if args.json:
        print_json([view.as_json() for view in views])
        return 0
    from rich.markup import escape

    from monitor.commands.tables import print_table

    zone = ZoneInfo(settings.site.timezone)
    lines = []
    for view in views:
        since = view.resolved_at if view.resolved_at and view.status != "open" else view.opened_at
        style = _STYLE.get(view.severity)
        lines.append([
            str(view.id), view.status, f"[{style}]{view.severity}[/]" if style else view.severity,
            view.kind, str(view.exam_id) if view.exam_id is not None else "",
            since.astimezone(zone).strftime("%Y-%m-%d %H:%M"), escape(view.detail),
        ])  # fmt: skip
    # The detail names trial, subject, occurrence and window; the other columns are for scanning.
    print_table(
        f"Findings ({len(views)}), times in {settings.site.timezone}",
        ("id", "status", "severity", "kind", "exam", "since", "detail"), lines, flexible="detail",
    )  # fmt: skip
    return 0
