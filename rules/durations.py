"""Durations as protocol files write them: ``"28d"``, ``"6w"``, ``"72h"``, ``"-1d"``, ``"2w3d"``, ``"+-7d"``.

A duration is one or more ``<whole number><unit>`` parts with an optional sign in front:

=========  ===========================================
unit       meaning
=========  ===========================================
``w``      weeks (7 days)
``d``      days
``h``      hours
``min``    minutes
=========  ===========================================

Months and years are refused on purpose: their length varies (28 to 31 days), imaging
manuals that say "every 3 months" nearly always mean "every 12 weeks" or "every 13 weeks",
and the protocol file must say which.

Signs: ``-1d`` is one day before, ``+7d`` (or ``7d``) one day after, ``+-7d`` (also ``±7d``
or ``+/-7d``) is a symmetric tolerance used by windows.

Every parser raises :class:`DurationError` (a ``ValueError``) with the offending text, what
is wrong and a plain-language fix; protocol validation turns these into problems with a key
path.
"""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = [
    "DurationError",
    "format_days",
    "parse_days",
    "parse_duration",
    "parse_tolerance_days",
]

_UNIT_MINUTES = {"w": 7 * 24 * 60, "d": 24 * 60, "h": 60, "min": 1}
_SIGNED = re.compile(r"^(?P<sign>\+-|\+/-|±|[+-])?(?P<body>.*)$")
_PART = re.compile(r"(\d+)([a-z]+)")
_EXAMPLES = 'write it like "28d", "6w", "72h", "2w3d" or "-1d"'


class DurationError(ValueError):
    """A duration that cannot be read; ``problem`` says why and ``fix`` what to write instead."""

    def __init__(self, text: object, problem: str, fix: str) -> None:
        super().__init__(f"{text!r}: {problem}; {fix}")
        self.text = text
        self.problem = problem
        self.fix = fix


def _split(text: object) -> tuple[str, int]:
    """Return ``(sign, minutes)`` where sign is ``""``, ``"+"``, ``"-"`` or ``"+-"``."""
    if not isinstance(text, str):
        raise DurationError(text, "a duration must be text with a unit", f"{_EXAMPLES} (in quotes)")
    compact = text.strip().lower().replace(" ", "")
    if not compact:
        raise DurationError(text, "the duration is empty", _EXAMPLES)
    match = _SIGNED.match(compact)
    assert match is not None  # the pattern accepts any string
    sign = {"+/-": "+-", "±": "+-"}.get(match["sign"] or "", match["sign"] or "")
    body = match["body"]
    if not body:
        raise DurationError(text, "the duration has a sign but no amount", _EXAMPLES)
    if "." in body or "," in body:
        raise DurationError(text, "fractions are not allowed", 'use whole units, e.g. "1d12h" for 1.5 days')
    minutes = 0
    position = 0
    seen: set[str] = set()
    for part in _PART.finditer(body):
        if part.start() != position:
            break
        number, unit = part.groups()
        if unit in ("m", "mo", "mon", "month", "months", "y", "yr", "year", "years"):
            raise DurationError(
                text,
                "months and years are not allowed because their length varies",
                'write weeks or days ("12w", "13w", "90d"); use "min" for minutes',
            )
        if unit not in _UNIT_MINUTES:
            raise DurationError(text, f"unknown unit {unit!r}", f"use w, d, h or min: {_EXAMPLES}")
        if unit in seen:
            raise DurationError(text, f"the unit {unit!r} appears twice", 'write each unit once, e.g. "2w3d"')
        seen.add(unit)
        minutes += int(number) * _UNIT_MINUTES[unit]
        position = part.end()
    if position != len(body):
        raise DurationError(text, "not a duration", _EXAMPLES)
    return sign, minutes


def parse_duration(text: object) -> timedelta:
    """Read a signed duration such as ``"72h"``, ``"-1d"`` or ``"2w3d"``.

    Raises :class:`DurationError` for bad syntax, unknown or varying units (months, years)
    and for a ``+-`` tolerance, which is not a single duration.
    """
    sign, minutes = _split(text)
    if sign == "+-":
        raise DurationError(
            text, "a +- tolerance is not allowed here", 'write a single duration such as "7d"'
        )
    return timedelta(minutes=-minutes if sign == "-" else minutes)


def parse_days(text: object) -> int:
    """Read a signed duration that must be a whole number of days; return the day count.

    ``"6w"`` is 42, ``"-1d"`` is -1, ``"72h"`` is 3. ``"36h"`` raises :class:`DurationError`
    because schedules and windows are counted in calendar dates, not hours.
    """
    delta = parse_duration(text)
    if delta % timedelta(days=1):
        raise DurationError(
            text,
            "schedules and windows are counted in whole days",
            'round to whole days or weeks, e.g. "2d" instead of "36h"',
        )
    return delta.days


def parse_tolerance_days(text: object) -> int:
    """Read a symmetric window tolerance such as ``"+-7d"``; return the day count (7).

    Raises :class:`DurationError` when the text has no ``+-`` sign (``"7d"`` would be
    ambiguous: before, after or both?) or is not a whole number of days.
    """
    sign, minutes = _split(text)
    if sign != "+-":
        raise DurationError(
            text,
            "a window tolerance needs a +- sign",
            'write "+-7d" for 7 days either side, or window = { from = "-7d", to = "+7d" }',
        )
    if minutes % _UNIT_MINUTES["d"]:
        raise DurationError(text, "windows are counted in whole days", 'write e.g. "+-3d"')
    return minutes // _UNIT_MINUTES["d"]


def format_days(days: int) -> str:
    """Write a day count the way a protocol file would: 42 -> ``"6w"``, 45 -> ``"6w3d"``, -1 -> ``"-1d"``."""
    sign = "-" if days < 0 else ""
    weeks, rest = divmod(abs(days), 7)
    parts = (f"{weeks}w" if weeks else "") + (f"{rest}d" if rest or not weeks else "")
    return sign + parts
