"""Trial protocols in the store: storing new versions, reading the ones in force.

A protocol file's text is stored as it was written (comments and all), with its SHA-256.
Storing a text identical to the version in force changes nothing; any other text becomes
the next version of that trial (an older text loaded again is stored anew, marked as a
revert). The version in force is the highest-numbered one.

Texts are checked with :func:`rules.load_protocol` before they are stored; a stored text
that no longer loads (a stricter rules release) is skipped with a warning naming the trial,
so its enrolments show up as having no protocol instead of stopping every evaluation.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, func, select

from monitor.store.schema import enrolments, trial_versions
from rules import ProtocolError, Trial, load_protocol

__all__ = [
    "ProtocolCatalogue",
    "StoredProtocol",
    "StoredVersion",
    "TrialSummary",
    "describe_changes",
    "list_trials",
    "sha256_of",
    "store_protocol",
]

log = logging.getLogger("monitor.store.registry")


def sha256_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """The outcome of :func:`store_protocol` for one file."""

    trial: str
    version: int
    stored: bool  # False: the text was already the version in force
    previous: int | None = None  # the version it replaces
    reverts_to: int | None = None  # an older version with the same text
    changes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StoredProtocol:
    """The version of one trial's protocol in force (without its text)."""

    id: int
    trial: str
    version: int
    sha256: str
    source: str
    loaded_at: datetime


_LATEST = (
    select(trial_versions.c.trial, func.max(trial_versions.c.version).label("version"))
    .group_by(trial_versions.c.trial)
    .subquery("latest")
)
_IN_FORCE = (
    select(
        trial_versions.c.id,
        trial_versions.c.trial,
        trial_versions.c.version,
        trial_versions.c.sha256,
        trial_versions.c.source,
        trial_versions.c.loaded_at,
    )
    .join(
        _LATEST,
        and_(trial_versions.c.trial == _LATEST.c.trial, trial_versions.c.version == _LATEST.c.version),
    )
    .order_by(trial_versions.c.trial)
)


def protocols_in_force(conn: Connection, trial_ids: Collection[str] | None = None) -> list[StoredProtocol]:
    query = _IN_FORCE if trial_ids is None else _IN_FORCE.where(trial_versions.c.trial.in_(sorted(trial_ids)))
    return [StoredProtocol(*row) for row in conn.execute(query)]


def store_protocol(conn: Connection, trial: Trial, text: str, source: str, now: datetime) -> StoredVersion:
    """Store ``text`` (already loaded as ``trial``) as the next version unless it is the one in force."""
    digest = sha256_of(text)
    latest = conn.execute(
        select(trial_versions.c.version, trial_versions.c.sha256, trial_versions.c.content)
        .where(trial_versions.c.trial == trial.id)
        .order_by(trial_versions.c.version.desc())
        .limit(1)
    ).first()
    if latest is not None and latest.sha256 == digest:
        return StoredVersion(trial.id, int(latest.version), stored=False)
    earlier = conn.execute(
        select(func.max(trial_versions.c.version)).where(
            trial_versions.c.trial == trial.id, trial_versions.c.sha256 == digest
        )
    ).scalar()
    version = 1 if latest is None else int(latest.version) + 1
    conn.execute(
        trial_versions.insert().values(
            trial=trial.id, version=version, content=text, sha256=digest, source=source[:500], loaded_at=now
        )
    )
    changes: tuple[str, ...] = ()
    if latest is not None:
        try:
            changes = tuple(describe_changes(load_protocol(latest.content, "stored"), trial))
        except ProtocolError:
            changes = ("the version in force no longer loads; replaced whole",)
    return StoredVersion(
        trial.id,
        version,
        stored=True,
        previous=None if latest is None else int(latest.version),
        reverts_to=int(earlier) if earlier is not None else None,
        changes=changes,
    )


def _named_changes(what: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    found = [f"{what} {name!r} added" for name in new if name not in old]
    found += [f"{what} {name!r} removed" for name in old if name not in new]
    found += [f"{what} {name!r} changed" for name in new if name in old and old[name] != new[name]]
    return found


def describe_changes(old: Trial, new: Trial) -> list[str]:
    """What differs between two protocols of one trial, one plain line per difference."""
    found: list[str] = []
    for label, before, after in (
        ("title", old.title, new.title),
        ("required anchors", old.required_anchors, new.required_anchors),
        ("event anchors", old.event_anchors, new.event_anchors),
        ("arms", old.arms, new.arms),
        ("match_within", old.match_within, new.match_within),
        ("anchor_is_day", old.anchor_is_day, new.anchor_is_day),
    ):
        if before != after:
            found.append(f"{label}: {before!r} -> {after!r}")
    found += _named_changes(
        "amendment",
        {v.name: v.effective for v in old.versions},
        {v.name: v.effective for v in new.versions},
    )
    was, now = old.versions[-1], new.versions[-1]  # the schedule in force last
    found += _named_changes("exam type", dict(was.exams), dict(now.exams))
    found += _named_changes("timepoint", {t.id: t for t in was.timepoints}, {t.id: t for t in now.timepoints})
    if old.routing != new.routing:
        found.append("routing changed")
    return found or ["comments or wording only (no change to the schedule)"]


class ProtocolCatalogue:
    """The protocols in force, parsed once per distinct text (cached by SHA-256).

    Keep one per long-lived evaluator: each call costs one small query; texts are read and
    parsed only when a trial gets a new version.
    """

    def __init__(self) -> None:
        self._parsed: dict[str, Trial | None] = {}
        self._sha: dict[str, str] = {}  # trial id -> the text of its version in force, last seen

    def trials(
        self,
        conn: Connection,
        trial_ids: Collection[str] | None = None,
        *,
        in_force: Sequence[StoredProtocol] | None = None,
    ) -> dict[str, Trial]:
        """Trials in force by id (``trial_ids`` None: all). Trials whose text fails to load are
        left out. ``in_force``: what :func:`protocols_in_force` just returned for ``trial_ids``
        (saves reading it again)."""
        if trial_ids is not None and not trial_ids:
            return {}
        if in_force is None:
            in_force = protocols_in_force(conn, trial_ids)
        missing = [row.id for row in in_force if row.sha256 not in self._parsed]
        if missing:
            query = select(trial_versions.c.trial, trial_versions.c.sha256, trial_versions.c.content)
            for text_row in conn.execute(query.where(trial_versions.c.id.in_(missing))):
                self._parsed[text_row.sha256] = self._load(text_row)
        found: dict[str, Trial] = {}
        for row in in_force:
            self._sha[row.trial] = row.sha256
            trial = self._parsed.get(row.sha256)
            if trial is not None:
                found[row.trial] = trial
        return found

    def sha_of(self, trial_id: str) -> str:
        """The SHA-256 of the protocol text of ``trial_id`` in force when :meth:`trials` last
        returned it (``""`` when it did not): what a judgement of its enrolments was made from."""
        return self._sha.get(trial_id, "")

    @staticmethod
    def _load(row: Row[*tuple[Any, ...]]) -> Trial | None:
        try:
            return load_protocol(row.content, f"{row.trial} (stored)")
        except ProtocolError as error:
            log.warning(
                "stored protocol of %s no longer loads (%d problems): its enrolments are skipped",
                row.trial,
                len(error.problems),
            )
            return None


@dataclass(frozen=True, slots=True)
class TrialSummary:
    """One trial as ``trials list`` shows it."""

    id: str
    title: str
    nct: str
    irb: str
    version: int
    versions: int
    amendments: tuple[str, ...]
    source: str
    sha256: str
    loaded_at: datetime
    enrolments: int
    loads: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "nct": self.nct,
            "irb": self.irb,
            "version": self.version,
            "versions": self.versions,
            "amendments": list(self.amendments),
            "source": self.source,
            "sha256": self.sha256,
            "loaded_at": self.loaded_at.isoformat(),
            "enrolments": self.enrolments,
            "loads": self.loads,
        }


def list_trials(conn: Connection, catalogue: ProtocolCatalogue | None = None) -> list[TrialSummary]:
    """Every trial with its version in force, how many versions it has and how many enrolments."""
    catalogue = catalogue or ProtocolCatalogue()
    parsed = catalogue.trials(conn)
    counts = {
        trial: int(count)
        for trial, count in conn.execute(
            select(trial_versions.c.trial, func.count()).group_by(trial_versions.c.trial)
        )
    }
    enrolled = {
        trial: int(count)
        for trial, count in conn.execute(
            select(enrolments.c.trial, func.count()).group_by(enrolments.c.trial)
        )
    }
    summaries = []
    for row in protocols_in_force(conn):
        trial = parsed.get(row.trial)
        summaries.append(
            TrialSummary(
                id=row.trial,
                title=trial.title if trial else "",
                nct=trial.nct if trial else "",
                irb=trial.irb if trial else "",
                version=row.version,
                versions=counts.get(row.trial, 0),
                amendments=tuple(v.name for v in trial.versions) if trial else (),
                source=row.source,
                sha256=row.sha256,
                loaded_at=row.loaded_at,
                enrolments=enrolled.get(row.trial, 0),
                loads=trial is not None,
            )
        )
    return summaries


def trial_known(conn: Connection, trial: str) -> bool:
    """Whether any version of ``trial``'s protocol was ever stored."""
    return (
        conn.execute(select(trial_versions.c.id).where(trial_versions.c.trial == trial).limit(1)).first()
        is not None
    )


def protocol_text(conn: Connection, version_id: int) -> str:
    """The stored TOML text of one protocol version."""
    return str(
        conn.execute(select(trial_versions.c.content).where(trial_versions.c.id == version_id)).scalar_one()
    )
