"""Enrolments in the store: checking, adding, updating and listing them.

What the office enters for a subject is an :class:`EnrolmentEntry`; :func:`check_entry`
judges it against the trial in force (required anchor dates, anchors and arms the protocol
declares) and :func:`save_entries` writes a checked batch in the caller's transaction.
Problems are plain sentences that name the trial, subject and field, never an MRN.

An MRN may be given with its identifier pool (the assigning authority, PID-3 CX-4), written
``E1234 (HOSP)`` or as pasted from an HL7 CX field, ``E1234^^^HOSP``: :func:`parse_mrns`
reads both, :func:`mrn_label` writes the first.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update

from monitor.store.findings import chunks
from monitor.store.registry.records import anchors_from_json
from monitor.store.schema import enrolment_mrns, enrolments
from rules import EnrolmentStatus, Trial, check_enrolment

__all__ = [
    "EnrolmentEntry",
    "EnrolmentView",
    "SavedEntries",
    "check_entries",
    "check_entry",
    "find_entry",
    "list_enrolments",
    "mrn_conflicts",
    "mrn_label",
    "parse_mrns",
    "parse_status",
    "save_entries",
]

_LIMITS = {"subject": 64, "arm": 64, "mrn": 80}
_WITH_POOL = re.compile(r"^(?P<mrn>[^()]+?)\s*\((?P<pool>[^()]*)\)$")


def parse_mrns(texts: Iterable[str]) -> tuple[tuple[str, ...], dict[str, str]]:
    """MRNs as the office writes them, one a text (``E1234``, ``E1234 (HOSP)``,
    ``E1234^^^HOSP``): the MRNs in order, each once, and the pool of those given one.
    ValueError when one MRN is given with two different pools (the message names no MRN)."""
    mrns: dict[str, None] = {}
    pools: dict[str, str] = {}
    for text in texts:
        text = text.strip()
        if not text:
            continue
        if (match := _WITH_POOL.match(text)) is not None:
            mrn, pool = match["mrn"].strip(), match["pool"].strip()
        elif "^" in text:
            parts = text.split("^")
            mrn, pool = parts[0].strip(), (parts[3].strip() if len(parts) > 3 else "")
        else:
            mrn, pool = text, ""
        if not mrn:
            continue
        if pool and pools.setdefault(mrn, pool).casefold() != pool.casefold():
            raise ValueError("an MRN is given twice with different pools")
        mrns[mrn] = None
    return tuple(mrns), pools


def mrn_label(mrn: str, pool: str = "") -> str:
    """An MRN as the office writes it: ``E1234 (HOSP)``, or the bare number without a pool."""
    return f"{mrn} ({pool})" if pool else mrn


@dataclass(frozen=True, slots=True)
class EnrolmentEntry:
    """One subject in one trial as the office enters it (``anchors``: name -> date).

    ``monitored_from``: the day the office starts watching the subject (windows that closed
    before it are history); None: the day it is first saved (an update keeps the stored day).
    """

    trial: str
    subject: str
    mrns: tuple[str, ...]
    anchors: Mapping[str, date] = field(default_factory=dict)
    arm: str | None = None
    status: EnrolmentStatus = EnrolmentStatus.ON_STUDY
    off_study: date | None = None
    monitored_from: date | None = None
    pools: Mapping[str, str] = field(default_factory=dict)  # MRN -> its identifier pool, where given

    def mrn_labels(self) -> tuple[str, ...]:
        return tuple(mrn_label(mrn, self.pools.get(mrn, "")) for mrn in self.mrns)


def parse_status(text: str) -> EnrolmentStatus:
    """``on_study``, ``On study``, ``on-study`` ... as a status; ValueError naming the choices."""
    cleaned = text.strip().lower().replace("-", "_").replace(" ", "_")
    try:
        return EnrolmentStatus(cleaned)
    except ValueError:
        choices = ", ".join(status.value for status in EnrolmentStatus)
        raise ValueError(f"status {text!r} is not one of {choices}") from None


def check_entry(trial: Trial | None, entry: EnrolmentEntry) -> list[str]:
    """Problems with ``entry`` for ``trial`` (None: the trial has no protocol loaded); empty: fine."""
    found: list[str] = []
    if trial is None:
        found.append(f"trial {entry.trial!r} has no protocol loaded (run: hiro-monitor trials load FILE)")
    if not entry.subject:
        found.append("the subject id is empty")
    elif len(entry.subject) > _LIMITS["subject"]:
        found.append(f"the subject id is longer than {_LIMITS['subject']} characters")
    if not entry.mrns:
        found.append("no MRN given")
    elif any(len(mrn) > _LIMITS["mrn"] for mrn in entry.mrns):
        found.append(f"an MRN is longer than {_LIMITS['mrn']} characters")
    if any(len(pool) > _LIMITS["mrn"] for pool in entry.pools.values()):
        found.append(f"an identifier pool is longer than {_LIMITS['mrn']} characters")
    if entry.arm is not None and len(entry.arm) > _LIMITS["arm"]:
        found.append(f"the arm is longer than {_LIMITS['arm']} characters")
    if trial is not None:
        found += check_enrolment(trial, entry.anchors, entry.arm)
    return found


@dataclass(frozen=True, slots=True)
class EnrolmentView:
    """An enrolment as stored, for listing (it carries MRNs: show it, never log it)."""

    id: int
    trial: str
    subject: str
    mrns: tuple[str, ...]
    arm: str | None
    status: str
    off_study: date | None
    anchors: dict[str, date]
    created_at: datetime
    updated_at: datetime
    monitored_from: date | None = None
    pools: Mapping[str, str] = field(default_factory=dict)  # MRN -> its identifier pool, where given

    def mrn_labels(self) -> tuple[str, ...]:
        return tuple(mrn_label(mrn, self.pools.get(mrn, "")) for mrn in self.mrns)

    def entry(self) -> EnrolmentEntry:
        return EnrolmentEntry(
            self.trial,
            self.subject,
            self.mrns,
            dict(self.anchors),
            self.arm,
            EnrolmentStatus(self.status),
            self.off_study,
            self.monitored_from,
            dict(self.pools),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "trial": self.trial,
            "subject": self.subject,
            "mrns": list(self.mrns),
            "mrn_pools": {mrn: self.pools[mrn] for mrn in self.mrns if mrn in self.pools},
            "arm": self.arm,
            "status": self.status,
            "off_study": self.off_study.isoformat() if self.off_study else None,
            "anchors": {name: value.isoformat() for name, value in sorted(self.anchors.items())},
            "monitored_from": self.monitored_from.isoformat() if self.monitored_from else None,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def list_enrolments(
    conn: Connection, *, trial: str | None = None, subject: str | None = None
) -> list[EnrolmentView]:
    """Enrolments ordered by trial and subject, optionally of one trial (and one subject)."""
    query = select(enrolments).order_by(enrolments.c.trial, enrolments.c.subject)
    if trial is not None:
        query = query.where(enrolments.c.trial == trial)
    if subject is not None:
        query = query.where(enrolments.c.subject == subject)
    rows = list(conn.execute(query))
    mrns: dict[int, list[str]] = {}
    pools: dict[int, dict[str, str]] = {}
    mrn_query = select(enrolment_mrns.c.enrolment_id, enrolment_mrns.c.mrn, enrolment_mrns.c.pool)
    for part in chunks([int(row.id) for row in rows]):
        for enrolment_id, mrn, pool in conn.execute(mrn_query.where(enrolment_mrns.c.enrolment_id.in_(part))):
            mrns.setdefault(int(enrolment_id), []).append(mrn)
            if pool:
                pools.setdefault(int(enrolment_id), {})[mrn] = pool
    return [
        EnrolmentView(
            id=int(row.id),
            trial=row.trial,
            subject=row.subject,
            mrns=tuple(sorted(mrns.get(int(row.id), ()))),
            arm=row.arm,
            status=row.status,
            off_study=row.off_study,
            anchors=anchors_from_json(row.anchors),
            created_at=row.created_at,
            updated_at=row.updated_at,
            monitored_from=row.monitored_from,
            pools=pools.get(int(row.id), {}),
        )
        for row in rows
    ]


def find_entry(conn: Connection, trial: str, subject: str) -> EnrolmentView | None:
    found = list_enrolments(conn, trial=trial, subject=subject)
    return found[0] if found else None


def mrn_conflicts(conn: Connection, entries: Sequence[EnrolmentEntry]) -> list[str | None]:
    """For each entry: which other subject of the same trial already holds one of its MRNs, if any.

    Looks at the store and at the other entries (earlier ones win). The same number in two
    named, different pools is two patients, not a conflict. The MRN itself is never named.
    """
    wanted = {mrn for entry in entries for mrn in entry.mrns}
    holders: dict[tuple[str, str], list[tuple[str, str]]] = {}  # (trial, MRN) -> [(subject, pool)]
    query = select(enrolments.c.trial, enrolments.c.subject, enrolment_mrns.c.mrn, enrolment_mrns.c.pool)
    query = query.join(enrolment_mrns, enrolment_mrns.c.enrolment_id == enrolments.c.id)
    replaced = {(entry.trial, entry.subject) for entry in entries}
    for part in chunks(wanted):
        for trial, subject, mrn, pool in conn.execute(query.where(enrolment_mrns.c.mrn.in_(part))):
            if (trial, subject) not in replaced:
                holders.setdefault((trial, mrn), []).append((subject, pool))
    found: list[str | None] = []
    for entry in entries:
        other = next(
            (
                subject
                for mrn in entry.mrns
                for subject, pool in holders.get((entry.trial, mrn), ())
                if subject != entry.subject and _same_pool(pool, entry.pools.get(mrn, ""))
            ),
            None,
        )
        found.append(
            None if other is None else f"an MRN given is already that of subject {other} of {entry.trial}"
        )
        for mrn in entry.mrns:
            holders.setdefault((entry.trial, mrn), []).append((entry.subject, entry.pools.get(mrn, "")))
    return found


def _same_pool(one: str, other: str) -> bool:
    """Whether two pools can be the same patient's: equal, or either not given."""
    return not one or not other or one.casefold() == other.casefold()


@dataclass(frozen=True, slots=True)
class SavedEntries:
    """What :func:`save_entries` did; ``changed_ids`` are the enrolments to re-evaluate."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    changed_ids: tuple[int, ...] = ()


def _anchors_json(anchors: Mapping[str, date]) -> dict[str, str]:
    return {name: value.isoformat() for name, value in sorted(anchors.items())}


def _normalised(entry: EnrolmentEntry) -> EnrolmentEntry:
    mrns = tuple(sorted(set(entry.mrns)))
    pools = {mrn: pool for mrn in mrns if (pool := entry.pools.get(mrn, "").strip())}
    return replace(entry, mrns=mrns, anchors=dict(entry.anchors), pools=pools)


def save_entries(
    conn: Connection, entries: Iterable[EnrolmentEntry], now: datetime, *, today: date | None = None
) -> SavedEntries:
    """Insert new enrolments and update existing ones (by trial and subject) in the caller's transaction.

    The entries must have been checked (:func:`check_entry`, :func:`mrn_conflicts`). An
    update replaces arm, status, off-study date, anchors and the MRN list (and the
    monitoring start when the entry gives one); an entry equal to what is stored changes
    nothing. A new enrolment without a monitoring start is watched from ``today`` (the
    site's date; default ``now``'s UTC date).
    """
    batch = [_normalised(entry) for entry in entries]
    stored: dict[tuple[str, str], EnrolmentView] = {}
    for trial in sorted({entry.trial for entry in batch}):
        stored.update({(view.trial, view.subject): view for view in list_enrolments(conn, trial=trial)})
    added = updated = unchanged = 0
    changed: list[int] = []
    for entry in batch:
        existing = stored.get((entry.trial, entry.subject))
        if entry.monitored_from is None:
            kept = existing.monitored_from if existing is not None else None
            entry = replace(entry, monitored_from=kept or today or now.date())
        values = {
            "arm": entry.arm,
            "status": entry.status.value,
            "off_study": entry.off_study,
            "anchors": _anchors_json(entry.anchors),
            "monitored_from": entry.monitored_from,
        }
        if existing is None:
            result = conn.execute(
                enrolments.insert().values(
                    trial=entry.trial, subject=entry.subject, created_at=now, updated_at=now, **values
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            enrolment_id = int(key[0])
            added += 1
        elif existing.entry() == entry:
            unchanged += 1
            continue
        else:
            enrolment_id = existing.id
            conn.execute(
                update(enrolments).where(enrolments.c.id == enrolment_id).values(updated_at=now, **values)
            )
            conn.execute(delete(enrolment_mrns).where(enrolment_mrns.c.enrolment_id == enrolment_id))
            updated += 1
        conn.execute(
            enrolment_mrns.insert(),
            [
                {"enrolment_id": enrolment_id, "mrn": mrn, "pool": entry.pools.get(mrn, "")}
                for mrn in entry.mrns
            ],
        )
        changed.append(enrolment_id)
    return SavedEntries(added, updated, unchanged, tuple(changed))


def check_entries(
    conn: Connection, trials: Mapping[str, Trial], entries: Sequence[EnrolmentEntry]
) -> list[list[str]]:
    """For each entry, its problems (:func:`check_entry` plus MRNs held by another subject)."""
    return [
        [*check_entry(trials.get(entry.trial), entry), *([conflict] if conflict else [])]
        for entry, conflict in zip(entries, mrn_conflicts(conn, entries), strict=True)
    ]


def enrolment_ids_of_trials(conn: Connection, trials: Collection[str]) -> list[int]:
    """The ids of every enrolment in ``trials`` (to re-evaluate them after a protocol change)."""
    query = select(enrolments.c.id).where(enrolments.c.trial.in_(sorted(trials)))
    return [int(i) for (i,) in conn.execute(query)]
