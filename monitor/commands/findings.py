"""``hiro-monitor evaluate`` and ``hiro-monitor findings``.

    evaluate                                   judge every enrolment now; print what changed
    findings [--json] [--trial ID] [--subject S] [--open]

Findings name subjects by study id only: no MRN, name or birth date in either output.
Window dates are the site's local dates; ``opened``/``updated`` are shown in the site's zone
(JSON: UTC ISO 8601).
"""

from __future__ import annotations

import argparse
from zoneinfo import ZoneInfo

from monitor.commands import open_engine, print_json, report_evaluation, utc_now
from monitor.config import Settings
from monitor.evaluation import Evaluator
from monitor.store.findings import list_findings

__all__ = ["register"]

_STYLE = {"critical": "bold red", "warning": "yellow", "info": "dim"}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    evaluate = commands.add_parser(
        "evaluate", help="run the compliance engine over the store, record findings"
    )
    evaluate.set_defaults(handler=cmd_evaluate)

    findings = commands.add_parser("findings", help="list findings (open and resolved)")
    findings.add_argument("--json", action="store_true", help="print a JSON array")
    findings.add_argument("--trial", help="only this trial")
    findings.add_argument("--subject", help="only this study subject id")
    findings.add_argument("--open", action="store_true", help="only open findings")
    findings.set_defaults(handler=cmd_findings)


def cmd_evaluate(settings: Settings, args: argparse.Namespace) -> int:
    engine = open_engine(settings)
    summary = Evaluator(engine, settings).evaluate_all(utc_now(args))
    engine.dispose()
    report_evaluation(summary)
    return 0


def cmd_findings(settings: Settings, args: argparse.Namespace) -> int:
    engine = open_engine(settings)
    views = list_findings(engine, trial=args.trial, subject=args.subject, open_only=args.open)
    engine.dispose()
    if args.json:
        print_json([view.as_json() for view in views])
        return 0
    from rich.console import Console
    from rich.table import Table

    zone = ZoneInfo(settings.site.timezone)
    table = Table(title=f"Findings ({len(views)}), times in {settings.site.timezone}")
    # The detail names trial, subject, occurrence and window; the other columns are for scanning.
    for column in ("id", "status", "severity", "kind", "exam"):
        table.add_column(column, no_wrap=True)
    table.add_column("detail", overflow="fold", ratio=1)
    table.add_column("since", no_wrap=True)
    for view in views:
        since = view.resolved_at if view.resolved_at and view.status != "open" else view.opened_at
        style = _STYLE.get(view.severity)
        table.add_row(
            str(view.id),
            view.status,
            f"[{style}]{view.severity}[/]" if style else view.severity,
            view.kind,
            str(view.exam_id) if view.exam_id is not None else "",
            view.detail,
            since.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
        )
    Console().print(table)
    return 0
