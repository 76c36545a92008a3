"""``hiro-monitor trials validate|load|list``: protocol files in and out of the store.

trials validate FILE...   every problem of every file, with key path and fix; exit 1 if any
trials load FILE...       validate all, then store new versions (all or nothing), re-evaluate
trials list [--json]      the version in force of each trial
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from monitor.commands import open_engine, print_json, report_evaluation, utc_now
from monitor.config import Settings
from monitor.evaluation import Evaluator
from monitor.store.registry import check_entry, list_enrolments, list_trials, store_protocol
from monitor.store.registry.enrolments import enrolment_ids_of_trials
from rules import ProtocolError, Trial, load_protocol

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    trials = commands.add_parser("trials", help="trial protocol files: validate, load, list")
    actions = trials.add_subparsers(dest="trials_command", required=True, metavar="ACTION")
    validate = actions.add_parser("validate", help="check protocol files; exit 1 on any problem")
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    validate.set_defaults(handler=cmd_validate)
    load = actions.add_parser(
        "load", help="validate and store protocol files (a changed file: a new version)"
    )
    load.add_argument("files", nargs="+", type=Path, metavar="FILE")
    load.set_defaults(handler=cmd_load)
    listing = actions.add_parser("list", help="trials and the protocol version in force")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(handler=cmd_list)


@dataclass(frozen=True, slots=True)
class _Checked:
    path: Path
    text: str
    trial: Trial | None
    problems: tuple[str, ...]


def _check_files(paths: list[Path]) -> list[_Checked]:
    """Each file read and loaded; problems as ``key path: what. Fix: how`` lines."""
    checked: list[_Checked] = []
    first_of: dict[str, Path] = {}
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            checked.append(_Checked(path, "", None, (f"(file): cannot read it ({reason})",)))
            continue
        try:
            trial = load_protocol(text, str(path))
        except ProtocolError as error:
            checked.append(_Checked(path, text, None, tuple(str(problem) for problem in error.problems)))
            continue
        problems: tuple[str, ...] = ()
        if trial.id in first_of:
            problems = (
                f"id: trial {trial.id} is also defined in {first_of[trial.id]}. "
                "Fix: keep one file per trial (amendments go in [[versions]])",
            )
        first_of.setdefault(trial.id, path)
        checked.append(_Checked(path, text, trial, problems))
    return checked


def _print_problems(checked: list[_Checked]) -> int:
    """Print each file's problems; returns how many files had some."""
    bad = 0
    for item in checked:
        if item.problems:
            bad += 1
            print(f"{item.path}: {len(item.problems)} problem(s)", file=sys.stderr)
            for problem in item.problems:
                print(f"  {item.path}: {problem}", file=sys.stderr)
    return bad


def cmd_validate(settings: Settings, args: argparse.Namespace) -> int:
    checked = _check_files(args.files)
    bad = _print_problems(checked)
    for item in checked:
        if not item.problems and item.trial is not None:
            trial = item.trial
            timepoints = len(trial.versions[-1].timepoints)
            print(f"{item.path}: ok: {trial.id}, {len(trial.versions)} version(s), {timepoints} timepoint(s)")
    return 1 if bad else 0


def cmd_load(settings: Settings, args: argparse.Namespace) -> int:
    checked = _check_files(args.files)
    if _print_problems(checked):
        print("nothing stored: fix the problems above and load again", file=sys.stderr)
        return 1
    engine = open_engine(settings)
    now = utc_now(args)
    changed: list[Trial] = []
    with engine.begin() as conn:
        for item in checked:
            assert item.trial is not None
            stored = store_protocol(conn, item.trial, item.text, str(item.path), now)
            if not stored.stored:
                print(f"{stored.trial}: unchanged (version {stored.version} is in force)")
                continue
            changed.append(item.trial)
            if stored.previous is None:
                print(f"{stored.trial}: version {stored.version} stored (new trial)")
                continue
            revert = f", same text as version {stored.reverts_to}" if stored.reverts_to else ""
            print(f"{stored.trial}: version {stored.version} stored (replaces {stored.previous}{revert})")
            for change in stored.changes:
                print(f"  - {change}")
    if changed:
        _warn_unfit_enrolments(engine, changed)
        with engine.connect() as conn:
            ids = enrolment_ids_of_trials(conn, [t.id for t in changed])
        if ids:
            report_evaluation(Evaluator(engine, settings).evaluate_enrolments(ids, now))
    engine.dispose()
    return 0


def _warn_unfit_enrolments(engine: Engine, changed: list[Trial]) -> None:
    """Warn about enrolments the new protocol no longer accepts (a new required anchor, a dropped arm)."""
    with engine.connect() as conn:
        for trial in changed:
            for view in list_enrolments(conn, trial=trial.id):
                problems = check_entry(trial, view.entry())
                if problems:
                    print(f"  warning: {trial.id} {view.subject}: {'; '.join(problems)}", file=sys.stderr)


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    engine = open_engine(settings)
    with engine.connect() as conn:
        summaries = list_trials(conn)
    engine.dispose()
    if args.json:
        print_json([summary.as_json() for summary in summaries])
        return 0
    from zoneinfo import ZoneInfo

    from rich import box
    from rich.console import Console
    from rich.table import Table

    zone = ZoneInfo(settings.site.timezone)
    # Fits 80 columns: the headers never shrink, the title and amendments give way
    # (ellipsis); --json has everything in full, the source file too.
    table = Table(
        title=f"Trials ({len(summaries)}), loaded in {settings.site.timezone}",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("trial", no_wrap=True)
    table.add_column("title", max_width=22, overflow="ellipsis", no_wrap=True)
    table.add_column("version", no_wrap=True)
    table.add_column("amendments", max_width=10, overflow="ellipsis", no_wrap=True)
    table.add_column("enrolled", justify="right", no_wrap=True)
    table.add_column("loaded", no_wrap=True)
    for summary in summaries:
        title = summary.title if summary.loads else "(stored text no longer loads: load the file again)"
        table.add_row(
            summary.id,
            title,
            f"{summary.version} of {summary.versions}",
            ", ".join(summary.amendments) or "-",
            str(summary.enrolments),
            summary.loaded_at.astimezone(zone).strftime("%Y-%m-%d"),
        )
    Console().print(table)
    return 0
