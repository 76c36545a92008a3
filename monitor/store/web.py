"""The dashboard's tables: local accounts, server-side sessions and the audit trail.

- ``users``: one local account. ``password_hash`` is an argon2id hash (empty for accounts
  that only sign in through the trusted reverse proxy). ``role`` is admin, coordinator,
  technologist or viewer; ``trials`` (coordinators) and ``modalities`` (technologists) are
  JSON lists that scope what the account may see.
- ``web_sessions``: one signed-in browser. ``id`` is 32 random bytes (URL-safe text), the
  only thing the cookie carries; ``csrf_token`` is the session's token for forms.
- ``audit_log``: who viewed or changed what, when, from where. ``object_id`` names a store
  row (exam id, finding id, trial id), never an MRN; ``detail`` is free text written by the
  application (a finding's acknowledgement comment), never patient identifiers.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from monitor.store.schema import UTCDateTime, metadata

users = Table(
    "users",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("username", String(120), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False, default=""),
    Column("role", String(16), nullable=False),
    Column("trials", JSON, nullable=False, default=list),
    Column("modalities", JSON, nullable=False, default=list),
    Column("active", Boolean(), nullable=False, default=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", ForeignKey("users.id"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_seen", UTCDateTime(), nullable=False),
)
Index("ix_web_sessions_user_id", web_sessions.c.user_id)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("username", String(120), nullable=False),
    Column("action", String(40), nullable=False),
    Column("object_type", String(40), nullable=False, default=""),
    Column("object_id", String(200), nullable=False, default=""),
    Column("client", String(80), nullable=False, default=""),
    Column("detail", Text, nullable=False, default=""),
)
Index("ix_audit_log_at", audit_log.c.at)
Index("ix_audit_log_object", audit_log.c.object_type, audit_log.c.object_id)
