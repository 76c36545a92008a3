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


def work_queue(
    conn: Connection, user: User, wanted: FindingFilter, today: date, *, limit: int | None, offset: int = 0
) -> tuple[list[Any], int]:
    """One page of the findings ``user`` may see under ``wanted``, most urgent first, and
    how many there are in all (``limit`` None: every one, as the CSV export takes them)."""
    total = conn.execute(_filtered(select(func.count()).select_from(findings), user, wanted)).scalar_one()
    query = _filtered(select(findings), user, wanted).order_by(*urgency_order(today))
    if limit is not None:
        query = query.limit(limit).offset(offset)
    return list(conn.execute(query)), int(total)


def facet_counts(conn: Connection, user: User, wanted: FindingFilter) -> dict[str, dict[str, int]]:
    """Per facet, each value's count under ``wanted`` with that facet itself set to "any"."""
    counts: dict[str, dict[str, int]] = {}
    for facet in FACETS:
        column = findings.c[facet]
        query = _filtered(select(column, func.count()).select_from(findings), user, wanted.without(facet))
        rows = conn.execute(query.group_by(column).order_by(column))
        counts[facet] = {str(value): int(count) for value, count in rows}
    return counts
