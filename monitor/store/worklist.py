"""The findings work queue: what needs action, most urgent first, filtered and counted.

A coordinator opens Findings to work through it, so the default is the open problems
(``in_window`` is a verdict, not a problem) in order of urgency: first the findings whose
visit window is still open, the window closing soonest first (they can still be saved),
then the others (closed windows, exams outside any window), newest window first; within
each, critical before warning before info. Every filter narrows the same list, and the
counts beside each filter value are what choosing it would show with the other filters
kept (facets), so the page never offers a choice that leads to an empty list unawares.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Literal

from sqlalchemy import Connection, Select, and_, case, func, select

from monitor.store.accounts import User
from monitor.store.dashboard import _finding_scope
from monitor.store.findings import OPEN
from monitor.store.schema import findings

Status = Literal["open", "resolved", "all"]
STATUSES: tuple[Status, ...] = ("open", "resolved", "all")
FACETS = ("trial", "kind", "severity")
_SEVERITY_RANK = case({"critical": 0, "warning": 1, "info": 2}, value=findings.c.severity, else_=3)


@dataclass(frozen=True, slots=True)
class FindingFilter:
    """What the office narrows the list to; every field empty means "any"."""

    status: Status = "open"
    trial: str = ""
    kind: str = ""
    severity: str = ""
    subject: str = ""
    window_from: date | None = None  # the visit window overlaps these days
    window_to: date | None = None

    def without(self, facet: str) -> FindingFilter:
        """The same filter with ``facet`` (one of :data:`FACETS`) set to "any"."""
        changes: dict[str, Any] = {facet: ""}
        return replace(self, **changes)


def _filtered(query: Select[Any], user: User, wanted: FindingFilter) -> Select[Any]:
    query = _finding_scope(query, user)
    if wanted.status == "open":
        query = query.where(findings.c.status == OPEN, findings.c.kind != "in_window")
    elif wanted.status == "resolved":
        query = query.where(findings.c.status != OPEN)
    for name in (*FACETS, "subject"):
        value = getattr(wanted, name)
        if value:
            query = query.where(findings.c[name] == value)
    if wanted.window_from is not None:  # a finding with no window has no place in a date range
        query = query.where(findings.c.window_end >= wanted.window_from)
    if wanted.window_to is not None:
        query = query.where(findings.c.window_start <= wanted.window_to)
    return query


def urgency_order(today: date) -> tuple[Any, ...]:
    """Open windows first, closing soonest; then the rest, newest window first; then severity."""
    still_open = and_(findings.c.window_end.is_not(None), findings.c.window_end >= today)
    return (
        case((still_open, 0), else_=1),
        case((still_open, findings.c.window_end), else_=None),
        findings.c.window_end.is_(None),
        findings.c.window_end.desc(),
        _SEVERITY_RANK,
        findings.c.id,
    )


def queue_rows(
    conn: Connection, user: User, wanted: FindingFilter, today: date, *, limit: int | None, offset: int = 0
) -> list[Any]:
    """One page of the findings ``user`` may see under ``wanted``, most urgent first (``limit``
    None: every one, as the CSV export takes them); :func:`counted` counts them."""
    query = _filtered(select(findings), user, wanted).order_by(*urgency_order(today))
    if limit is not None:
        query = query.limit(limit).offset(offset)
    return list(conn.execute(query))


def counted(conn: Connection, user: User, wanted: FindingFilter) -> tuple[int, dict[str, dict[str, int]]]:
    """How many findings ``wanted`` shows, and per facet each value's count with that facet
    itself set to "any" (the other filters kept), from one grouped scan.

    The findings are counted per (trial, kind, severity) under the filter with every facet
    set to "any" (a few hundred groups at most); a facet's counts are then the groups that
    match the *other* facets' choices, and the total those that match all of them."""
    columns = [findings.c[facet] for facet in FACETS]
    base = replace(wanted, trial="", kind="", severity="")  # FACETS, each "any"
    query = _filtered(select(*columns, func.count()).select_from(findings), user, base).group_by(*columns)
    groups = [(tuple(str(value) for value in row[:-1]), int(row[-1])) for row in conn.execute(query)]
    chosen = [getattr(wanted, facet) for facet in FACETS]

    def matches(values: tuple[str, ...], skip: int | None = None) -> bool:
        pairs = enumerate(zip(values, chosen, strict=True))
        return all(not want or value == want for i, (value, want) in pairs if i != skip)

    counts: dict[str, dict[str, int]] = {}
    for index, facet in enumerate(FACETS):
        per_value: dict[str, int] = {}
        for values, count in groups:
            if matches(values, skip=index):
                per_value[values[index]] = per_value.get(values[index], 0) + count
        counts[facet] = dict(sorted(per_value.items()))
    return sum(count for values, count in groups if matches(values)), counts
