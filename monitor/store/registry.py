"""The trial office's registry: protocol versions and enrolments (SQLAlchemy Core tables).

- ``trial_versions``: every stored text of a trial's protocol file. Versions are numbered
  per trial from 1; the highest number is the protocol in force (the file's own
  ``[[versions]]`` amendments live inside ``content``). Loading the text already in force
  is a no-op; loading an older text again (a revert) stores it as a new version, so the
  history reads in the order things happened.
- ``enrolments``: one subject in one trial. ``anchors`` is ``{name: "YYYY-MM-DD"}``.
- ``enrolment_mrns``: the subject's MRNs (a patient may carry several), indexed by MRN so
  an exam event finds its enrolments with one lookup. MRNs are PHI: never log them.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from monitor.store.schema import UTCDateTime, metadata

trial_versions = Table(
    "trial_versions",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("trial", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("content", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("source", String(500), nullable=False, default=""),
    Column("loaded_at", UTCDateTime(), nullable=False),
    UniqueConstraint("trial", "version", name="uq_trial_versions_trial_version"),
)
Index("ix_trial_versions_sha256", trial_versions.c.trial, trial_versions.c.sha256)

enrolments = Table(
    "enrolments",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("trial", String(64), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("arm", String(64), nullable=True),
    Column("status", String(16), nullable=False),
    Column("off_study", Date(), nullable=True),
    Column("anchors", JSON, nullable=False, default=dict),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("trial", "subject", name="uq_enrolments_trial_subject"),
)

enrolment_mrns = Table(
    "enrolment_mrns",
    metadata,
    Column("enrolment_id", ForeignKey("enrolments.id"), nullable=False),
    Column("mrn", String(80), nullable=False),
    PrimaryKeyConstraint("enrolment_id", "mrn", name="pk_enrolment_mrns"),
)
Index("ix_enrolment_mrns_mrn", enrolment_mrns.c.mrn)
