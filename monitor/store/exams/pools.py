"""Identifier pools: the assigning authorities (PID-3 CX-4) the stored exams' identifiers
come from, and the exams whose chosen MRN missed an enrolment another identifier holds.

With ``[hl7] mrn_authorities = []`` the MRN is chosen by identifier type alone
(:func:`monitor.feeds.hl7.common.choose_mrn`): when a feed carries several pools (the
site's MR number and another facility's, listed first) the wrong one can win, and an
enrolled subject's exam is matched to nobody: the office never hears of that scan.

- :func:`survey_pools` (``check-config``): which pools the latest exams carry;
- :func:`missed_enrolled` (Feed health): exams whose MRN is no enrolment's although one
  of their other identifiers is an enrolled MRN.

Both report authorities, type codes and counts, never an identifier's value: MRNs are PHI.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, func, or_, select

from monitor.store.schema import enrolment_mrns, enrolments, exams

__all__ = [
    "MISSED_AFTER",
    "MISSED_BEFORE",
    "MISSED_SHOWN",
    "SURVEY_SIZE",
    "MissedExam",
    "MissedExams",
    "PoolSurvey",
    "missed_enrolled",
    "pool_label",
    "survey_pools",
]

# check-config looks at the latest exams only: what the feed sends now, read through the
# primary key in a few tens of milliseconds whatever the size of the table.
SURVEY_SIZE = 10_000
MISSED_SHOWN = 50
# Feed health looks at the exams of the last week and of the Upcoming page's two weeks
# (by start time, ix_exams_start_at): the scans the office can still act on, in a window
# whose cost does not grow with the table (see missed_enrolled).
MISSED_BEFORE = timedelta(days=7)
MISSED_AFTER = timedelta(days=14)


def pool_label(authority: str, type_code: str = "") -> str:
    """How a pool is named to people: its authority, and the identifier type when given."""
    name = authority.strip() or "(no authority)"
    return f"{name} ({type_code.strip()})" if type_code.strip() else name


def _identifiers(stored: Any) -> list[tuple[str, str, str]]:
    """``exams.patient_ids`` as (value, authority, type code) triples; odd entries skipped."""
    found = []
    for entry in stored or ():
        if isinstance(entry, Sequence) and not isinstance(entry, str) and len(entry) >= 3:
            found.append((str(entry[0] or ""), str(entry[1] or ""), str(entry[2] or "")))
    return found


@dataclass(frozen=True, slots=True)
class PoolSurvey:
    """What the latest ``exams`` exams carry among their MR-type identifiers (CX-5 one of
    ``mrn_type_codes``; any type when that list is empty)."""

    exams: int  # exams looked at
    pools: dict[str, int] = field(default_factory=dict)  # authority -> exams with an MR-type id of it
    several: int = 0  # exams with more than one MR-type identifier
    # authority -> exams with an identifier of it (any type) that is an enrolled MRN
    enrolled: dict[str, int] = field(default_factory=dict)
    # configured authority -> exams whose MR-type identifier of it is not the exam's MRN
    passed_over: dict[str, int] = field(default_factory=dict)

    @property
    def mixed(self) -> bool:
        """Several pools: another pool's identifier can be chosen as an exam's MRN."""
        return len(self.pools) > 1 or self.several > 0


def survey_pools(
    conn: Connection,
    source: str,
    type_codes: Iterable[str],
    authorities: Iterable[str] = (),
    size: int = SURVEY_SIZE,
) -> PoolSurvey:
    """The pools of the latest ``size`` exams of the feed ``source`` (by id: a few tens of
    milliseconds whatever the size of the table), the pools the enrolled MRNs were found in, and, with
    ``authorities`` (the configured ``mrn_authorities``), how many exams have an MR-type
    identifier of one of them that was not chosen as their MRN. Comparisons ignore case,
    as the mapping's do."""
    types = {t.strip().upper() for t in type_codes}
    configured = {a.strip().upper() for a in authorities}
    enrolled_mrns = set(conn.execute(select(enrolment_mrns.c.mrn).distinct()).scalars())
    pools: Counter[str] = Counter()
    enrolled: Counter[str] = Counter()
    passed_over: Counter[str] = Counter()
    several = 0
    looked_at = 0
    rows = conn.execute(
        select(exams.c.mrn, exams.c.patient_ids)
        .where(exams.c.source == source)
        .order_by(exams.c.id.desc())
        .limit(size)
    )
    for mrn, stored in rows:
        looked_at += 1
        ids = [(v, a.strip().upper(), t.strip().upper()) for v, a, t in _identifiers(stored)]
        typed = [(v, a) for v, a, t in ids if not types or t in types]
        several += len(typed) > 1
        pools.update({a for _, a in typed})
        enrolled.update({a for v, a, _ in ids if v in enrolled_mrns})
        passed_over.update({a for v, a in typed if a in configured and v != mrn})
    return PoolSurvey(looked_at, dict(pools), several, dict(enrolled), dict(passed_over))


@dataclass(frozen=True, slots=True)
class MissedExam:
    """An exam matched to no enrolment although one of its identifiers is an enrolled MRN."""

    id: int
    source: str
    external_id: str  # the sender's appointment or order id (SCH-2, the CSN at Epic)
    start: datetime | None
    chosen_pool: str  # the pool (authority and type) of the identifier taken as its MRN
    found_pool: str  # the pool of the identifier that is an enrolled MRN
    found_authority: str  # that identifier's authority: what mrn_authorities would name
    enrolments: tuple[tuple[str, str], ...]  # (trial, subject) holding that MRN


@dataclass(frozen=True, slots=True)
class MissedExams:
    total: int  # in the window
    since: datetime
    until: datetime
    exams: list[MissedExam]  # the latest ``limit`` by start time


# The first identifiers are read by position (JSON path: the cheapest test in both
# databases); an exam with more is searched whole.
_BY_POSITION = 3


def _holds_enrolled_identifier(dialect: str, holders: Select[Any]) -> ColumnElement[bool]:
    """Whether one of the exam's stored identifiers is in ``holders`` (MRNs)."""
    ids = exams.c.patient_ids
    by_position = [ids[(k, 0)].as_string().in_(holders) for k in range(_BY_POSITION)]
    if dialect == "postgresql":
        each = func.json_array_elements(ids).table_valued("value").alias("pid")
        value: ColumnElement[Any] = func.json_extract_path_text(each.c.value, "0")
    else:
        each = func.json_each(ids).table_valued("value").alias("pid")
        value = func.json_extract(each.c.value, "$[0]")
    longer = and_(
        func.json_array_length(ids) > _BY_POSITION,
        select(1).select_from(each).where(value.in_(holders)).exists(),
    )
    return or_(*by_position, longer)


def missed_enrolled(
    conn: Connection, now: datetime, trials: Collection[str] | None = None, limit: int = MISSED_SHOWN
) -> MissedExams:
    """Exams starting from :data:`MISSED_BEFORE` before ``now`` to :data:`MISSED_AFTER`
    after it whose MRN no enrolment holds while one of their other stored identifiers an
    enrolment (of ``trials``; None: of any trial) does: how many, and the ``limit`` latest.

    Cost, in one statement: the window is a range of ``ix_exams_start_at`` (exams without a
    start time, orders not yet scheduled, are left out); each exam in it is read, its MRN
    looked up in the enrolled MRNs (hashed once) and its first identifiers read out of the
    JSON by position; only the ``limit`` rows shown come back. The cost follows the exams in
    the window, not the table: at a million exams over two years (1,400 a day), the 21 days
    hold ~29,000 exams and take ~100 ms on SQLite, ~70 ms on PostgreSQL (a shared two-core
    machine); 60 days took ~250 and ~170 ms, too much of the page's 150-300 ms p95. Finding
    them through an index instead would take a table of the identifiers kept by the feed
    writer: not worth its cost on every message for a list that should be empty.
    """
    since, until = now - MISSED_BEFORE, now + MISSED_AFTER
    holders = select(enrolment_mrns.c.mrn)
    if trials is not None:
        holders = holders.join(enrolments, enrolments.c.id == enrolment_mrns.c.enrolment_id).where(
            enrolments.c.trial.in_(sorted(trials))
        )
    query = (
        select(
            exams.c.id,
            exams.c.source,
            exams.c.external_id,
            exams.c.start_at,
            exams.c.mrn,
            exams.c.patient_ids,
            func.count().over().label("total"),
        )
        .where(
            exams.c.start_at >= since,
            exams.c.start_at < until,
            exams.c.mrn.not_in(select(enrolment_mrns.c.mrn)),
            _holds_enrolled_identifier(conn.dialect.name, holders),
        )
        .order_by(exams.c.start_at.desc(), exams.c.id.desc())
        .limit(limit)
    )
    found = conn.execute(query).all()
    if not found:
        return MissedExams(0, since, until, [])
    values = {v for row in found for v, _, _ in _identifiers(row.patient_ids) if v != row.mrn}
    holding: dict[str, list[tuple[str, str]]] = {}
    scoped = select(enrolment_mrns.c.mrn, enrolments.c.trial, enrolments.c.subject).join(
        enrolments, enrolments.c.id == enrolment_mrns.c.enrolment_id
    )
    if trials is not None:
        scoped = scoped.where(enrolments.c.trial.in_(sorted(trials)))
    for mrn, trial, subject in conn.execute(
        scoped.where(enrolment_mrns.c.mrn.in_(sorted(values))).order_by(
            enrolments.c.trial, enrolments.c.subject
        )
    ):
        holding.setdefault(mrn, []).append((trial, subject))
    missed = []
    for row in found:
        ids = _identifiers(row.patient_ids)
        chosen = next(((a, t) for v, a, t in ids if v == row.mrn), ("", ""))
        other = next(((v, a, t) for v, a, t in ids if v != row.mrn and v in holding), None)
        if other is None:  # an enrolment went between the two statements
            continue
        missed.append(
            MissedExam(
                id=int(row.id),
                source=row.source,
                external_id=row.external_id,
                start=row.start_at,
                chosen_pool=pool_label(*chosen),
                found_pool=pool_label(other[1], other[2]),
                found_authority=other[1],
                enrolments=tuple(holding[other[0]]),
            )
        )
    return MissedExams(int(found[0].total), since, until, missed)
