"""Reading typed values out of parsed TOML while collecting every problem, not stopping at the first.

:class:`FieldReader` is the small toolkit :mod:`rules.validation` uses: each method returns
the value (or a harmless fallback) and records a :class:`~rules.protocol.Problem` with the key
path and a plain-language fix when the value is missing, of the wrong type or unreadable.
"""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Collection, Mapping
from datetime import date, datetime, time, timedelta
from typing import Any

from rules.durations import DurationError, parse_days, parse_duration, parse_tolerance_days
from rules.protocol import LeadTime, Problem, Window

__all__ = ["FieldReader", "join_path"]

Table = Mapping[str, Any]


def join_path(parent: str, key: str | int) -> str:
    """``join_path("timepoints", 2)`` is ``timepoints[3]``: a list's entries are counted from 1,
    as a person counts them in the file (``key`` is Python's index, from 0);
    ``join_path("exams", "ct")`` is ``exams.ct``."""
    if isinstance(key, int):
        return f"{parent}[{key + 1}]"
    return f"{parent}.{key}" if parent else key


def _kind(value: object) -> str:
    names = {str: "text", int: "a number", bool: "true/false", list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


class FieldReader:
    """Collects problems while reading; ``problems`` is in the order they were found."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def problem(self, path: str, message: str, fix: str) -> None:
        self.problems.append(Problem(path, message, fix))

    def check_keys(
        self, table: Table, path: str, allowed: Collection[str], required: Collection[str]
    ) -> None:
        """Report unknown keys (typos, with a suggestion) and missing required keys."""
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
                fix = (
                    f'did you mean "{close[0]}"?'
                    if close
                    else "remove it; allowed keys: " + ", ".join(sorted(allowed))
                )
                self.problem(join_path(path, key), f'unknown key "{key}"', fix)
        for key in required:
            if key not in table:
                self.problem(join_path(path, key), f'required key "{key}" is missing', f"add {key} = ...")

    def table(self, parent: Table, key: str, path: str) -> Table:
        value = parent.get(key, {})
        if not isinstance(value, dict):
            self.problem(
                join_path(path, key), f"must be a table, not {_kind(value)}", f"write it as [{path}]"
            )
            return {}
        return value

    def text(self, parent: Table, key: str, path: str, default: str = "") -> str:
        value = parent.get(key, default)
        if not isinstance(value, str):
            self.problem(
                join_path(path, key), f"must be text, not {_kind(value)}", f'put it in quotes: {key} = "..."'
            )
            return default
        return value.strip()

    def text_list(self, parent: Table, key: str, path: str, *, allow_single: bool = False) -> tuple[str, ...]:
        value = parent.get(key, [])
        if allow_single and isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.problem(
                join_path(path, key),
                f"must be a list of texts, not {_kind(value)}",
                f'write {key} = ["...", "..."]',
            )
            return ()
        return tuple(item.strip() for item in value)

    def integer(self, parent: Table, key: str, path: str, default: int | None = None) -> int | None:
        value = parent.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(
                join_path(path, key), f"must be a whole number, not {_kind(value)}", f"write {key} = 3"
            )
            return default
        return value

    def date(self, parent: Table, key: str, path: str) -> date | None:
        value = parent.get(key)
        if value is None:
            return None
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        fix = f"write a TOML date without quotes: {key} = 2026-03-01"
        self.problem(join_path(path, key), f"must be a date, not {_kind(value)}", fix)
        return None

    def days(self, parent: Table, key: str, path: str) -> int | None:
        """A signed whole-day duration (``"6w"``, ``"-1d"``); None when absent or unreadable."""
        if key not in parent:
            return None
        try:
            return parse_days(parent[key])
        except DurationError as error:
            self.problem(join_path(path, key), f"bad duration {parent[key]!r}: {error.problem}", error.fix)
            return None

    def lead_times(self, parent: Table, key: str, path: str) -> tuple[LeadTime, ...]:
        """Lead times such as ``["72h", "the day before at 14:00"]`` (:class:`rules.protocol.LeadTime`)."""
        found: list[LeadTime] = []
        for index, item in enumerate(self.text_list(parent, key, path)):
            where = join_path(join_path(path, key), index)
            at_time = _AT_TIME.match(item.strip().lower())
            if at_time is not None:
                lead = _at_lead(at_time)
                if lead is None:
                    self.problem(
                        where, f"bad time of day in {item!r}", 'write e.g. "the day before at 14:00"'
                    )
                else:
                    found.append(lead)
                continue
            try:
                delta = parse_duration(item)
            except DurationError as error:
                fix = (
                    f'{error.fix}, or a day and a time: "the day before at 14:00", "the morning of at 07:00"'
                )
                self.problem(where, f"bad lead time {item!r}: {error.problem}", fix)
                continue
            if delta <= timedelta(0):
                self.problem(where, "a lead time must be positive", 'write e.g. "24h"')
                continue
            found.append(LeadTime(before=delta))
        unique = {lead.key: lead for lead in found}
        return tuple(unique.values())

    def window(self, parent: Table, key: str, path: str) -> Window | None:
        """``"+-7d"`` or ``{ from = "-28d", to = "-1d" }``; reports a window that ends before it starts."""
        where = join_path(path, key)
        fix = 'write window = "+-7d" or window = { from = "-7d", to = "+7d" } (use "+-0d" for an exact day)'
        if key not in parent:
            self.problem(where, 'required key "window" is missing', fix)
            return None
        value = parent[key]
        if isinstance(value, str):
            try:
                tolerance = parse_tolerance_days(value)
            except DurationError as error:
                self.problem(where, f"bad window {value!r}: {error.problem}", error.fix)
                return None
            return Window(-tolerance, tolerance)
        if not isinstance(value, dict):
            self.problem(where, f"must be text or a table, not {_kind(value)}", fix)
            return None
        self.check_keys(value, where, ("from", "to"), ("from", "to"))
        opens, closes = self.days(value, "from", where), self.days(value, "to", where)
        if opens is None or closes is None:
            return None
        if closes < opens:
            self.problem(
                where,
                f"the window ends before it starts (from {value['from']!r} is after to {value['to']!r})",
                "swap from and to: from is the earliest allowed day, to the latest",
            )
            return None
        return Window(opens, closes)

    def label_template(self, parent: Table, key: str, path: str, default: str) -> str:
        """A label such as ``"Week {week} restaging"``; only ``{n}``, ``{week}``, ``{day}`` are known."""
        label = self.text(parent, key, path, default) or default
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(label) if name is not None]
        except ValueError:
            self.problem(
                join_path(path, key), f"unbalanced braces in {label!r}", "write placeholders as {week}"
            )
            return default
        unknown = sorted(set(names) - {"n", "week", "day"})
        if unknown:
            self.problem(
                join_path(path, key),
                f"unknown placeholder {{{unknown[0]}}} in {label!r}",
                "use {n} (occurrence number), {week} (weeks from the anchor) or {day} (study day)",
            )
            return default
        return label


# "the day before at 14:00", "2 days before at 09:00", "the morning of at 07:00", "same day at 7:30"
_AT_TIME = re.compile(
    r"^(?:(?:the\s+)?day\s+before|(?P<days>\d+)\s+days?\s+before|(?:the\s+)?(?:morning|day)\s+of|same\s+day)"
    r"\s+at\s+(?P<hour>\d{1,2}):(?P<minute>\d{2})$"
)


def _at_lead(found: re.Match[str]) -> LeadTime | None:
    hour, minute = int(found["hour"]), int(found["minute"])
    if hour > 23 or minute > 59:
        return None
    text = found.group(0)
    days = int(found["days"]) if found["days"] else (1 if "before" in text else 0)
    return LeadTime(days_before=days, at=time(hour, minute))
