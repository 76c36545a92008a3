"""Tables of the store (SQLAlchemy Core).

Core rather than the ORM: the MLLP hot path runs a handful of statements per message and
the ORM's unit of work would cost more than the parse. Alembic migrations in
``migrations/versions`` create exactly these tables; a test compares the two.

Times are stored as naive UTC (:class:`UTCDateTime` converts at the boundary), so SQLite
and PostgreSQL hold the same values and comparisons in SQL stay correct.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; naive UTC in the database."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("refusing to store a naive datetime: times are stored in UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite returns text for some expressions (e.g. max())
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC)


# One row per HL7 message (or other feed input) received, whatever became of it.
# ``payload`` is PHI: it is set to NULL after the retention period (``purged_at``).
messages = Table(
    "messages",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("feed", String(64), nullable=False),
    Column("sender_application", String(180), nullable=False, default=""),
    Column("sender_facility", String(180), nullable=False, default=""),
    Column("control_id", String(199), nullable=False, default=""),
    Column("message_type", String(40), nullable=False, default=""),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("peer", String(80), nullable=False, default=""),
    Column("payload", LargeBinary, nullable=True),
    Column("body_digest", String(64), nullable=False),
    # accepted | skipped | rejected | pending (stored, not yet processed)
    Column("outcome", String(16), nullable=False),
    Column("ack_code", String(2), nullable=False, default=""),
    Column("error_code", String(8), nullable=False, default=""),
    Column("error", Text, nullable=False, default=""),  # plain reason, never PHI
    # feed|MSH-3|MSH-4|MSH-10 for the first message with that key; NULL on a reused key
    # (FHIR: feed|Type/id/_history/version). Finds the original of a reused key.
    Column("dedupe_key", String(600), nullable=True, unique=True),
    # SHA-256 of feed, MSH-3, MSH-4, MSH-10 and the body digest: what makes a message a
    # resend of a stored one (messages without MSH-10 included). One row per content.
    Column("content_key", String(64), nullable=True),
    Column("duplicates", Integer, nullable=False, default=0),
    Column("original_id", ForeignKey("messages.id"), nullable=True),
    Column("key_reused", Integer, nullable=False, default=0),
    Column("purged_at", UTCDateTime(), nullable=True),
)
Index("ix_messages_received_at", messages.c.received_at)
Index("uq_messages_content_key", messages.c.content_key, unique=True)
Index("ix_messages_original_id", messages.c.original_id)  # feed health lists reused keys
Index("ix_messages_outcome", messages.c.outcome, messages.c.received_at)

exams = Table(
    "exams",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("source", String(64), nullable=False),
    Column("external_id", String(199), nullable=False),
    Column("status", String(16), nullable=False),
    Column("last_event", String(16), nullable=False),
    Column("status_code", String(80), nullable=False, default=""),
    Column("mrn", String(80), nullable=True),
    Column("patient_ids", JSON, nullable=False, default=list),
    Column("accession", String(80), nullable=True),
    Column("order_number", String(80), nullable=True),
    Column("procedure_code", String(80), nullable=True),
    Column("procedure_text", String(250), nullable=True),
    Column("procedure_system", String(80), nullable=True),
    Column("modality", String(16), nullable=True),
    Column("location", String(250), nullable=True),
    Column("resources", JSON, nullable=False, default=list),
    Column("start_at", UTCDateTime(), nullable=True),
    Column("duration_minutes", Integer, nullable=True),
    Column("comments", JSON, nullable=False, default=list),
    Column("extra", JSON, nullable=False, default=dict),
    Column("replaces_exam_id", ForeignKey("exams.id"), nullable=True),
    Column("last_message_id", ForeignKey("messages.id"), nullable=True),
    # The source's own time (EVN-2, MSH-7, FHIR meta.lastUpdated) of the earliest event and of
    # the newest: an event older than ``last_event_time`` does not set the state by arriving.
    Column("first_event_time", UTCDateTime(), nullable=True),
    Column("last_event_time", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("source", "external_id", name="uq_exams_source_external_id"),
)
Index("ix_exams_mrn", exams.c.mrn)
Index("ix_exams_start_at", exams.c.start_at)
Index("ix_exams_replaces_exam_id", exams.c.replaces_exam_id)  # rebook linking looks for successors

exam_events = Table(
    "exam_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("exam_id", ForeignKey("exams.id"), nullable=False),
    Column("message_id", ForeignKey("messages.id"), nullable=True),
    Column("kind", String(16), nullable=False),
    Column("trigger", String(40), nullable=False, default=""),
    Column("status_code", String(80), nullable=False, default=""),
    Column("start_at", UTCDateTime(), nullable=True),
    Column("location", String(250), nullable=True),
    Column("procedure_code", String(80), nullable=True),
    Column("recorded_at", UTCDateTime(), nullable=False),
    # The source's time of the event (our receipt time when the message carries none), and
    # every column the event set: the exam's state is these events folded in time order.
    Column("event_time", UTCDateTime(), nullable=True),
    Column("fields", JSON, nullable=True),
)
Index("ix_exam_events_exam_id", exam_events.c.exam_id)

# Tables declared in their own modules register on ``metadata`` here, so that everything
# that imports the schema (Alembic's env, the migration test) sees the whole store.
import monitor.store.calendar  # noqa: E402  (calendar_tokens)
import monitor.store.findings  # noqa: E402  (findings, occurrences)
import monitor.store.outbox  # noqa: E402  (notifications)
import monitor.store.polls  # noqa: E402  (feed_polls)
import monitor.store.registry  # noqa: E402  (trial_versions, enrolments, enrolment_mrns)
import monitor.store.web  # noqa: E402, F401  (users, web_sessions, audit_log)
