"""Command groups of ``hiro-monitor`` that live outside ``monitor/cli.py``.

Each module has ``register(commands)``, which adds its sub-parsers and sets ``handler`` on
them; ``monitor.cli.COMMAND_GROUPS`` lists the modules. A handler takes the settings and
the parsed arguments and returns the exit code: 0 success, 1 input problems reported,
2 usage or configuration error, 3 the store is unavailable. A handler's ``now`` comes from
:func:`command_clock` (the clock given to ``monitor.cli.main``; the system clock by default).
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from monitor.clock import SYSTEM_CLOCK, Clock
from monitor.config import Settings
from monitor.evaluation import EvaluationSummary
from monitor.store.database import open_store

__all__ = [
    "anchor_setting",
    "command_clock",
    "iso_date",
    "open_engine",
    "print_json",
    "report_evaluation",
    "utc_now",
]


def open_engine(settings: Settings) -> Engine:
    """The configured store, migrated to the current schema."""
    return open_store(settings.database.url)


def command_clock(args: argparse.Namespace) -> Clock:
    """The clock ``monitor.cli.main`` was given (``args.clock``), else the system clock."""
    clock: Clock = getattr(args, "clock", None) or SYSTEM_CLOCK
    return clock


def utc_now(args: argparse.Namespace) -> datetime:
    """The command's ``now``: read once from :func:`command_clock`."""
    return command_clock(args)()


def iso_date(text: str) -> date:
    """argparse type: a ``YYYY-MM-DD`` date."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (write YYYY-MM-DD)") from None


_RELATIVE = re.compile(r"^([+-])(\d{1,4})([dw])$")
_NAMED_DAYS = {"today": 0, "yesterday": -1, "tomorrow": 1}
DAY_FORMS = "YYYY-MM-DD, today, yesterday, tomorrow, or days/weeks from today (+7d, --from=-2w)"


def day_spec(text: str) -> Callable[[date], date]:
    """A day as a command line gives it (:data:`DAY_FORMS`): a function of the site's today,
    so that ``today`` and ``+7d`` are read against the command's clock."""
    word = text.strip().lower()
    if word in _NAMED_DAYS:
        offset = _NAMED_DAYS[word]
        return lambda today: today + timedelta(days=offset)
    found = _RELATIVE.match(word)
    if found:
        sign, amount, unit = found.groups()
        days = int(amount) * (7 if unit == "w" else 1) * (-1 if sign == "-" else 1)
        return lambda today: today + timedelta(days=days)
    try:
        fixed = date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day: write {DAY_FORMS}") from None
    return lambda _today: fixed


def anchor_setting(text: str) -> tuple[str, date | None]:
    """argparse type: ``name=YYYY-MM-DD``; ``name=`` (no date) clears the anchor in ``enroll update``."""
    name, equals, value = text.partition("=")
    name = name.strip()
    if not equals or not name:
        raise argparse.ArgumentTypeError(
            f"{text!r}: write the anchor as name=YYYY-MM-DD, e.g. c1d1=2026-01-26"
        )
    if not value.strip():
        return name, None
    try:
        return name, date.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"anchor {name}: not a date (write YYYY-MM-DD)") from None


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2)
    print()


def report_evaluation(summary: EvaluationSummary, *, title: str = "evaluation") -> None:
    """Print what an evaluation opened, reopened, updated and resolved, by finding kind."""
    counts = summary.by_kind()
    total = {
        name: sum(row[name] for row in counts.values())
        for name in ("opened", "reopened", "updated", "resolved")
    }
    skipped = f" ({summary.up_to_date} up to date, not judged again)" if summary.up_to_date else ""
    print(
        f"{title}: {summary.enrolments} enrolment(s){skipped} in {summary.seconds:.2f} s: "
        + ", ".join(f"{count} {name}" for name, count in total.items())
        + f", {summary.changes.unchanged} unchanged"
    )
    for kind, row in counts.items():
        print(f"  {kind:<16} " + "  ".join(f"{name} {count}" for name, count in row.items() if count))
    for trial in summary.unknown_trials:
        print(f"  warning: enrolments of {trial} were skipped: no protocol loaded for it", file=sys.stderr)


def operator() -> str:
    """Who ran the command, for the audit trail."""
    try:
        return f"cli:{getpass.getuser()}"[:120]
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "cli"
