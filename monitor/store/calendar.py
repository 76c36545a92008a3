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

from sqlalchemy import BigInteger, Column, Integer, String, Table

from monitor.store.schema import UTCDateTime, metadata

calendar_tokens = Table(
    "calendar_tokens",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("scope_kind", String(16), nullable=False),  # trial | coordinator
    Column("scope_value", String(120), nullable=False),
    Column("label", String(200), nullable=False, default=""),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(120), nullable=False, default=""),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Column("last_used_at", UTCDateTime(), nullable=True),
)
