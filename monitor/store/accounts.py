"""Accounts, sessions and the audit trail of the dashboard (no HTTP here).

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's second recommended
parameter set). A session id is 32 random bytes; the cookie carries nothing else. A session
ends ``idle`` after its last request or ``lifetime`` after sign-in, whichever comes first;
an ended session's row is deleted when it is next presented.

Nothing here logs a password, a session id or a CSRF token.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, delete, func, insert, select, update

from monitor.store.schema import audit_log, users, web_sessions

__all__ = [
    "Role",
    "SessionPolicy",
    "User",
    "add_user",
    "check_password",
    "end_session",
    "find_user",
    "open_session",
    "record_audit",
    "resume_session",
]

_HASHER = PasswordHasher()
_TOUCH_EVERY = timedelta(seconds=30)
# Verified when the user name is unknown, so that a wrong name costs as long as a wrong password.
_DUMMY_HASH = _HASHER.hash("not a password of anyone")


class Role(StrEnum):
    ADMIN = "admin"
    COORDINATOR = "coordinator"
    TECHNOLOGIST = "technologist"
    VIEWER = "viewer"
    # The hospital's integration team: feed health and the message browser (raw messages,
    # reprocessing); no trial, no exam, no finding (their scopes below are empty).
    INTEGRATION = "integration"


@dataclass(frozen=True, slots=True)
class User:
    """A signed-in account and what it may see.

    ``trials`` scopes a coordinator, ``modalities`` a technologist; other roles ignore them.
    """

    id: int
    username: str
    role: Role
    trials: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def sees_mrn(self) -> bool:
        """Only admins and coordinators (for their own trials) see MRNs on the dashboard."""
        return self.role in (Role.ADMIN, Role.COORDINATOR)

    @property
    def identifies_patients(self) -> bool:
        """Who sees two patient identifiers (name and birth date, and the MRN) on an
        instruction sheet: whoever may stand before the patient at the scanner. Viewers
        do not; a technologist sees no MRN anywhere else."""
        return self.role in (Role.ADMIN, Role.COORDINATOR, Role.TECHNOLOGIST)

    @property
    def may_change(self) -> bool:
        """Whether the account may acknowledge or resolve findings."""
        return self.role in (Role.ADMIN, Role.COORDINATOR)

    def trial_scope(self) -> tuple[str, ...] | None:
        """The trials this account may see; None means every trial."""
        if self.role is Role.INTEGRATION:
            return ()
        return self.trials if self.role is Role.COORDINATOR else None

    def modality_scope(self) -> tuple[str, ...] | None:
        """The modalities this account may see; None means every modality."""
        if self.role is Role.INTEGRATION:
            return ()
        return self.modalities if self.role is Role.TECHNOLOGIST else None

    @property
    def reads_messages(self) -> bool:
        """Who may search and read stored messages (PHI, audited) and reprocess rejected ones."""
        return self.role in (Role.ADMIN, Role.INTEGRATION)


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    idle: timedelta = timedelta(minutes=15)
    lifetime: timedelta = timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    user: User
    csrf_token: str


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def _user(row: Any) -> User:
    return User(
        id=int(row.id),
        username=row.username,
        role=Role(row.role),
        trials=tuple(row.trials or ()),
        modalities=tuple(m.upper() for m in row.modalities or ()),
    )


def add_user(
    conn: Connection,
    username: str,
    role: Role,
    password: str | None,
    now: datetime,
    *,
    trials: Sequence[str] = (),
    modalities: Sequence[str] = (),
) -> int:
    """Create or replace the account ``username``; returns its id.

    ``password`` None makes an SSO-only account (no password can sign it in). Raises
    ValueError for an empty user name or a coordinator without trials.
    """
    if not username.strip():
        raise ValueError("the user name is empty")
    if role is Role.COORDINATOR and not trials:
        raise ValueError("a coordinator needs at least one --trial")
    values = {
        "password_hash": hash_password(password) if password else "",
        "role": role.value,
        "trials": list(trials),
        "modalities": [m.upper() for m in modalities],
        "active": True,
        "updated_at": now,
    }
    existing = conn.execute(select(users.c.id).where(users.c.username == username)).scalar()
    if existing is not None:
        conn.execute(update(users).where(users.c.id == existing).values(**values))
        return int(existing)
    result = conn.execute(insert(users).values(username=username, created_at=now, **values))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


@dataclass(frozen=True, slots=True)
class Account:
    """An account as the admins manage it (never its password hash)."""

    username: str
    role: Role
    trials: tuple[str, ...]
    modalities: tuple[str, ...]
    active: bool
    sso_only: bool
    updated_at: datetime

    def access(self) -> str:
        """Role and scope in one line, as the audit trail keeps it before and after a change."""
        scope = ",".join(self.trials or self.modalities) or "all"
        return f"{self.role.value} [{scope}]" + ("" if self.active else " disabled")


def list_accounts(conn: Connection) -> list[Account]:
    rows = conn.execute(select(users).order_by(users.c.username))
    return [_account(row) for row in rows]


def find_account(conn: Connection, username: str) -> Account | None:
    row = conn.execute(select(users).where(users.c.username == username)).first()
    return _account(row) if row is not None else None


def _account(row: Any) -> Account:
    return Account(
        username=row.username,
        role=Role(row.role),
        trials=tuple(row.trials or ()),
        modalities=tuple(row.modalities or ()),
        active=bool(row.active),
        sso_only=not row.password_hash,
        updated_at=row.updated_at,
    )


def change_account(
    conn: Connection,
    username: str,
    now: datetime,
    *,
    active: bool | None = None,
    role: Role | None = None,
    trials: Sequence[str] | None = None,
    modalities: Sequence[str] | None = None,
) -> tuple[Account, Account]:
    """Change what is given of ``username``'s account (the password stays); returns the
    account before and after. A disabled account's sessions end at their next request.
    Raises LookupError for an unknown account, ValueError for a coordinator left without trials."""
    before = find_account(conn, username)
    if before is None:
        raise LookupError(f"no account {username!r}")
    new_role = role or before.role
    new_trials = tuple(trials) if trials is not None else before.trials
    if new_role is Role.COORDINATOR and not new_trials:
        raise ValueError("a coordinator needs at least one trial")
    values: dict[str, Any] = {"role": new_role.value, "trials": list(new_trials), "updated_at": now}
    if modalities is not None:
        values["modalities"] = [m.strip().upper() for m in modalities if m.strip()]
    if active is not None:
        values["active"] = active
    conn.execute(update(users).where(users.c.username == username).values(**values))
    after = find_account(conn, username)
    assert after is not None
    return before, after


def find_user(conn: Connection, username: str) -> User | None:
    """The active account ``username``, if any."""
    row = conn.execute(select(users).where(users.c.username == username, users.c.active.is_(True))).first()
    return _user(row) if row is not None else None


def check_password(conn: Connection, username: str, password: str) -> User | None:
    """The active account when ``password`` is its password; None otherwise (same cost either way)."""
    row = conn.execute(select(users).where(users.c.username == username, users.c.active.is_(True))).first()
    stored = row.password_hash if row is not None and row.password_hash else _DUMMY_HASH
    try:
        _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    return _user(row) if row is not None and row.password_hash else None


def open_session(conn: Connection, user: User, now: datetime) -> Session:
    """A new session (new random id and CSRF token) for ``user``."""
    session = Session(id=secrets.token_urlsafe(32), user=user, csrf_token=secrets.token_urlsafe(32))
    conn.execute(
        insert(web_sessions).values(
            id=session.id, user_id=user.id, csrf_token=session.csrf_token, created_at=now, last_seen=now
        )
    )
    return session


def resume_session(conn: Connection, session_id: str, now: datetime, policy: SessionPolicy) -> Session | None:
    """The live session ``session_id`` (its ``last_seen`` moved to ``now``), or None.

    An idle or expired session, or one whose account was deactivated, is deleted.
    """
    row = conn.execute(
        select(web_sessions, users)
        .join(users, users.c.id == web_sessions.c.user_id)
        .where(web_sessions.c.id == session_id)
    ).first()
    if row is None:
        return None
    m = row._mapping
    created: datetime = m[web_sessions.c.created_at]
    last_seen: datetime = m[web_sessions.c.last_seen]
    if not m[users.c.active] or now - last_seen > policy.idle or now - created > policy.lifetime:
        conn.execute(delete(web_sessions).where(web_sessions.c.id == session_id))
        return None
    if now - last_seen > _TOUCH_EVERY:  # one write per half minute, not one per request
        conn.execute(update(web_sessions).where(web_sessions.c.id == session_id).values(last_seen=now))
    user = User(
        id=int(m[users.c.id]),
        username=m[users.c.username],
        role=Role(m[users.c.role]),
        trials=tuple(m[users.c.trials] or ()),
        modalities=tuple(x.upper() for x in m[users.c.modalities] or ()),
    )
    return Session(id=session_id, user=user, csrf_token=m[web_sessions.c.csrf_token])


def end_session(conn: Connection, session_id: str) -> None:
    conn.execute(delete(web_sessions).where(web_sessions.c.id == session_id))


def record_audit(
    conn: Connection,
    now: datetime,
    username: str,
    action: str,
    object_type: str = "",
    object_id: str | int = "",
    client: str = "",
    detail: str = "",
    *,
    before: str = "",
    after: str = "",
) -> None:
    """One audit row: ``username`` did ``action`` on ``object_type``/``object_id`` from
    ``client``; a change says what it found (``before``) and what it left (``after``)."""
    conn.execute(
        insert(audit_log).values(
            at=now,
            username=username,
            action=action,
            object_type=object_type,
            object_id=str(object_id),
            client=client[:80],
            detail=detail,
            before=before,
            after=after,
        )
    )


def latest_reviews(conn: Connection, finding_ids: list[int], actions: Sequence[str]) -> dict[int, Any]:
    """The latest review (audit row) of each finding that has one (index lookups by id)."""
    reviews: dict[int, Any] = {}
    if not finding_ids:
        return reviews
    query = (
        select(audit_log)
        .where(
            audit_log.c.object_type == "finding",
            audit_log.c.object_id.in_(sorted({str(i) for i in finding_ids})),
            audit_log.c.action.in_(sorted(actions)),
        )
        .order_by(audit_log.c.id)
    )
    for row in conn.execute(query):
        reviews[int(row.object_id)] = row
    return reviews


def audit_trail(
    conn: Connection,
    *,
    username: str = "",
    object_type: str = "",
    action: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    older_than: int | None = None,
    limit: int = 500,
) -> list[Any]:
    """The newest ``limit`` audit rows, optionally of one user, object type or action, from
    ``since`` (included) to ``until`` (excluded), and before the row ``older_than`` (the
    next page: keyset paging by id, as cheap on the millionth row as on the first)."""
    query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if older_than is not None:
        query = query.where(audit_log.c.id < older_than)
    if username:
        query = query.where(audit_log.c.username == username)
    if object_type:
        query = query.where(audit_log.c.object_type == object_type)
    if action:
        query = query.where(audit_log.c.action == action)
    if since is not None:
        query = query.where(audit_log.c.at >= since)
    if until is not None:
        query = query.where(audit_log.c.at < until)
    return list(conn.execute(query))


def recent_failures(
    conn: Connection, action: str, client: str, since: datetime, limit: int, username: str | None = None
) -> tuple[int, datetime | None]:
    """How many of the last ``limit`` audit rows ``action`` from ``client`` (and ``username``)
    are newer than ``since``, and the oldest of those: what sign-in throttling counts."""
    recent = select(audit_log.c.at).where(
        audit_log.c.action == action, audit_log.c.at > since, audit_log.c.client == client
    )
    if username is not None:
        recent = recent.where(audit_log.c.username == username[:120])
    subquery = recent.order_by(audit_log.c.at.desc()).limit(limit).subquery()
    count, oldest = conn.execute(select(func.count(), func.min(subquery.c.at))).one()
    return int(count), oldest
