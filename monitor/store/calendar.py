"""Calendar feed tokens: who may read which iCalendar feed without signing in.

- ``calendar_tokens``: one secret feed address. The token itself (``secrets.token_urlsafe``)
  is shown once, when it is made; only its SHA-256 (hex) is stored, so a copy of the
  database does not open any feed. ``scope_kind`` is ``trial`` (``scope_value`` a trial id)
  or ``coordinator`` (``scope_value`` a user name: the trials assigned to that account when
  the feed is read). ``label`` says whose calendar it is ("Dana's phone"), for the audit
  trail. A revoked token (``revoked_at``) answers 404 like an unknown one; ``last_used_at``
  tells the office which feeds are still read.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, insert, select, update

from monitor.store.schema import calendar_tokens


class CalendarScope(StrEnum):
    """Whose exams a feed lists: one trial's, or those of the trials assigned to a coordinator."""

    TRIAL = "trial"
    COORDINATOR = "coordinator"


@dataclass(frozen=True, slots=True)
class CalendarToken:
    """A stored feed address (never the token itself: that is shown once and not kept)."""

    id: int
    scope_kind: CalendarScope
    scope_value: str
    label: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    last_used_at: datetime | None


def token_digest(token: str) -> str:
    """The stored form of ``token``: its SHA-256 in hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _token(row: Any) -> CalendarToken:
    return CalendarToken(
        id=int(row.id),
        scope_kind=CalendarScope(row.scope_kind),
        scope_value=row.scope_value,
        label=row.label,
        created_at=row.created_at,
        created_by=row.created_by,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


def issue_token(
    conn: Connection, scope: CalendarScope, value: str, label: str, created_by: str, now: datetime
) -> tuple[int, str]:
    """A new feed token for ``scope``/``value``: (row id, the token). Only its hash is stored.

    Checks nothing about ``value``: the caller decides whether the trial or account exists.
    """
    token = secrets.token_urlsafe(32)
    result = conn.execute(
        insert(calendar_tokens).values(
            token_sha256=token_digest(token),
            scope_kind=scope.value,
            scope_value=value,
            label=label,
            created_at=now,
            created_by=created_by,
        )
    )
    return int(result.inserted_primary_key[0]), token  # type: ignore[index]


def token_in_force(conn: Connection, token: str) -> CalendarToken | None:
    """The unrevoked token ``token``, or None (unknown and revoked look the same)."""
    row = conn.execute(
        select(calendar_tokens).where(
            calendar_tokens.c.token_sha256 == token_digest(token), calendar_tokens.c.revoked_at.is_(None)
        )
    ).first()
    return _token(row) if row is not None else None


def mark_used(conn: Connection, token_id: int, now: datetime) -> None:
    conn.execute(update(calendar_tokens).where(calendar_tokens.c.id == token_id).values(last_used_at=now))


def list_tokens(conn: Connection) -> list[CalendarToken]:
    """Every token ever issued, oldest first (revoked ones included)."""
    return [_token(row) for row in conn.execute(select(calendar_tokens).order_by(calendar_tokens.c.id))]


def revoke_token(conn: Connection, token_id: int, now: datetime) -> bool:
    """Revoke token ``token_id``; False when there is no such token or it was already revoked."""
    result = conn.execute(
        update(calendar_tokens)
        .where(calendar_tokens.c.id == token_id, calendar_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return result.rowcount == 1
