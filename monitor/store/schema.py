"""Every table of the store (SQLAlchemy Core), in one place, private to :mod:`monitor.store`.

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
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
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
    # A message stored by reprocessing a rejected one (the message browser) points at it.
    Column("reprocess_of", ForeignKey("messages.id"), nullable=True),
)
Index("ix_messages_received_at", messages.c.received_at, messages.c.id)  # the browser's keyset pages
Index("ix_messages_control_id", messages.c.control_id)
Index(
    "ix_messages_reprocess_of",
    messages.c.reprocess_of,
    postgresql_where=messages.c.reprocess_of.is_not(None),
    sqlite_where=messages.c.reprocess_of.is_not(None),
)
# The browser's type filter: a type that never came must not read every message.
Index(
    "ix_messages_type",
    messages.c.message_type,
    messages.c.received_at,
    messages.c.id,
    postgresql_ops={"message_type": "varchar_pattern_ops"},  # the family search: LIKE 'SIU^%'
)

# The browser's "resent" filter: the few messages a sender resent, newest first.
Index(
    "ix_messages_resent",
    messages.c.received_at,
    messages.c.id,
    postgresql_where=messages.c.duplicates > 0,
    sqlite_where=messages.c.duplicates > 0,
)
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
    # The assigning authority (PID-3 CX-4, a FHIR identifier's system) of the identifier
    # chosen as ``mrn``: an enrolment MRN given with a pool claims only exams of that pool.
    Column("mrn_pool", String(80), nullable=True),
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
Index("ix_exams_accession", exams.c.accession)  # a PACS study is matched by accession first
Index("ix_exams_external_id", exams.c.external_id)  # the message browser's appointment search
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
Index("ix_exam_events_message_id", exam_events.c.message_id)  # the exams a message touched


# --- The trial office's registry: protocol versions and enrolments (API: monitor/store/registry)
# - ``trial_versions``: every stored text of a trial's protocol file. Versions are numbered
#   per trial from 1; the highest number is the protocol in force (the file's own
#   ``[[versions]]`` amendments live inside ``content``). Loading the text already in force
#   is a no-op; loading an older text again (a revert) stores it as a new version, so the
#   history reads in the order things happened.
# - ``enrolments``: one subject in one trial. ``anchors`` is ``{name: "YYYY-MM-DD"}``.
# - ``enrolment_mrns``: the subject's MRNs (a patient may carry several), indexed by MRN so
#   an exam event finds its enrolments with one lookup, each with the identifier pool
#   (assigning authority) it belongs to where the office gave one ("": any pool). MRNs are
#   PHI: never log them.

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
    # The day the office started watching the subject (site date): windows that closed before
    # it are history, not missed visits. Set when added or imported unless given.
    Column("monitored_from", Date(), nullable=True),
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
    Column("pool", String(80), nullable=False, default="", server_default=""),
    PrimaryKeyConstraint("enrolment_id", "mrn", name="pk_enrolment_mrns"),
)
Index("ix_enrolment_mrns_mrn", enrolment_mrns.c.mrn)


# --- Findings and occurrences (API: monitor/store/findings.py)
# - ``findings``: one row per finding key the engine ever produced (``rules.model`` explains
#   the keys). A key the engine produces again keeps its row (same id); when its content
#   changes the row is updated; a key that no longer appears is ``resolved`` (with
#   ``resolved_at``); a resolved key that reappears is opened again. ``detail`` names the
#   subject by study id only: never a name or MRN.
# - ``occurrences``: the latest schedule of each evaluated enrolment (one row per due visit,
#   keyed like the engine's ``Occurrence.key``), for the dashboard's subject x timepoint
#   matrix. Visits that disappear (an anchor moved, the protocol changed) are deleted: the
#   schedule has no history, the findings do.
#
# :func:`record_evaluation` writes the difference between what the store holds for a set of
# enrolments and what the engine concluded for them, with bulk statements only.

findings = Table(
    "findings",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("key", String(400), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("trial", String(64), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("enrolment_id", ForeignKey("enrolments.id"), nullable=False),
    Column("timepoint", String(64), nullable=True),
    Column("occurrence_key", String(300), nullable=True),
    Column("occurrence_label", String(200), nullable=True),
    Column("exam_id", ForeignKey("exams.id"), nullable=True),
    Column("window_start", Date(), nullable=True),
    Column("window_end", Date(), nullable=True),
    Column("detail", Text, nullable=False),
    Column("status", String(16), nullable=False),  # open | resolved
    Column("opened_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("resolved_at", UTCDateTime(), nullable=True),
)
Index("ix_findings_enrolment_id", findings.c.enrolment_id)
Index("ix_findings_status", findings.c.status, findings.c.trial)
# The dashboard: an exam's findings, and the newest change (its page cache's data version).
Index("ix_findings_exam_id", findings.c.exam_id)
Index("ix_findings_updated_at", findings.c.updated_at)


occurrences = Table(
    "occurrences",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("key", String(300), nullable=False, unique=True),
    Column("enrolment_id", ForeignKey("enrolments.id"), nullable=False),
    Column("trial", String(64), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("timepoint", String(64), nullable=False),
    Column("number", Integer, nullable=False),  # the engine's occurrence index
    Column("label", String(200), nullable=False),
    Column("due", Date(), nullable=False),
    Column("window_start", Date(), nullable=False),
    Column("window_end", Date(), nullable=False),
    Column("status", String(32), nullable=False),
    Column("exam_id", ForeignKey("exams.id"), nullable=True),
    Column("version", String(200), nullable=False),
    Column("required_scanner", String(250), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
)
Index("ix_occurrences_enrolment_id", occurrences.c.enrolment_id)
Index("ix_occurrences_trial", occurrences.c.trial, occurrences.c.subject)
Index("ix_occurrences_exam_id", occurrences.c.exam_id)
Index("ix_occurrences_updated_at", occurrences.c.updated_at)


# --- The outbox (API: monitor/store/outbox.py)
# "The database is the queue" (STYLE.md): planning (:mod:`monitor.store.outbox.planning`) writes
# rows, the dispatcher (:mod:`monitor.dispatch.dispatcher`) claims them, sends them and
# records the outcome here. A row's life::
#
#     pending ──claim──> sending ──> sent
#        ^  │                │
#        │  │                ├──> pending   (transient error: next_attempt_at = now + backoff)
#        │  │                └──> failed    (permanent error, or attempts exhausted)
#        │  └── key no longer planned ──> cancelled ──key planned again──> pending
#        └──────── retried by a person (:func:`retry_failed`) <── failed
#
#     (planned) ──quiet first run──> skipped   (a booking notice never to be sent)
#
# - ``dedupe_key`` is unique: one key, one row, one delivered message (DESIGN.md, invariant 4).
# - ``next_attempt_at`` is when the row may next be claimed (``due_at`` at first, later the
#   backoff); ``due_at`` stays what the plan said.
# - ``claimed_by``/``claimed_at`` name the dispatcher holding a ``sending`` row. A row left in
#   ``sending`` by a dispatcher that died is put back to ``pending`` with ``maybe_sent`` set,
#   so the next attempt first asks the channel whether the message already arrived.
# - ``external_ref`` is :meth:`notifiers.Delivery.as_dict` (Slack channel id + ts, SMTP
#   Message-ID, webhook delivery id): the thread root and the message an update edits.
# - ``last_error`` holds an error type or provider code only (``channel_not_found``,
#   ``ratelimited``, ``KeyError``), never a message text that could quote PHI.
# - ``summary`` and ``body`` are for the dashboard and ``hiro-monitor notifications``, never for
#   sending: content is rebuilt from the store at send time (it is then current), and what was
#   sent is recorded rendered under the ``none`` PHI policy, so the outbox holds no identifiers.
#   ``summary`` is the finding's one-line detail until the row is sent, then the headline.
# - ``exam_start`` is the exam time the sent message showed: a later message about the same
#   exam compares it to say "moved from ... to ...".
# - ``skipped`` rows are booking notices the first planning found already booked (``[dispatch]
#   quiet_first_run``): kept so that their key is never planned, and sent, again.

notifications = Table(
    "notifications",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("dedupe_key", String(700), nullable=False, unique=True),
    Column("audience", String(16), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("address", String(300), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("trial", String(64), nullable=False, default=""),
    Column("enrolment_id", ForeignKey("enrolments.id"), nullable=True),
    Column("exam_id", ForeignKey("exams.id"), nullable=True),
    Column("finding_key", String(400), nullable=False, default=""),
    Column("finding_kind", String(32), nullable=False, default=""),
    Column("thread_key", String(400), nullable=False, default=""),
    Column("due_at", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("maybe_sent", Boolean(), nullable=False, default=False),
    Column("claimed_by", String(200), nullable=True),
    Column("claimed_at", UTCDateTime(), nullable=True),
    Column("last_error", String(200), nullable=False, default=""),
    Column("external_ref", JSON, nullable=True),
    Column("exam_start", UTCDateTime(), nullable=True),
    Column("summary", Text, nullable=False, default=""),
    Column("body", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime(), nullable=True),
)
# The dispatcher's claim: pending rows by the time they may be sent, per address (lane).
Index("ix_notifications_status", notifications.c.status, notifications.c.next_attempt_at)
Index(
    "ix_notifications_address",
    notifications.c.address,
    notifications.c.status,
    notifications.c.next_attempt_at,
)
# Thread roots and the message an update edits: sent rows of one exam on one address.
Index("ix_notifications_thread_key", notifications.c.thread_key, notifications.c.address)
Index("ix_notifications_enrolment_id", notifications.c.enrolment_id, notifications.c.status)
Index("ix_notifications_exam_id", notifications.c.exam_id)
Index("ix_notifications_updated_at", notifications.c.updated_at)  # the dashboard cache's data version


# --- Accounts, sessions and the audit trail (API: monitor/store/accounts.py)
# - ``users``: one local account. ``password_hash`` is an argon2id hash (empty for accounts
#   that only sign in through the trusted reverse proxy). ``role`` is admin, coordinator,
#   technologist or viewer; ``trials`` (coordinators) and ``modalities`` (technologists) are
#   JSON lists that scope what the account may see.
# - ``web_sessions``: one signed-in browser. ``id`` is 32 random bytes (URL-safe text), the
#   only thing the cookie carries; ``csrf_token`` is the session's token for forms.
# - ``audit_log``: who viewed or changed what, when, from where. ``object_id`` names a store
#   row (exam id, finding id, trial id), never an MRN; ``detail`` is free text written by the
#   application (a finding's acknowledgement comment), never patient identifiers.

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
    # What a change found and what it left (migration 0010; empty for views and older rows).
    Column("before", Text, nullable=False, default="", server_default=""),
    Column("after", Text, nullable=False, default="", server_default=""),
)
Index("ix_audit_log_at", audit_log.c.at)
Index("ix_audit_log_object", audit_log.c.object_type, audit_log.c.object_id)


# --- Calendar feed tokens (API: monitor/store/calendar.py)
# - ``calendar_tokens``: one secret feed address. The token itself (``secrets.token_urlsafe``)
#   is shown once, when it is made; only its SHA-256 (hex) is stored, so a copy of the
#   database does not open any feed. ``scope_kind`` is ``trial`` (``scope_value`` a trial id)
#   or ``coordinator`` (``scope_value`` a user name: the trials assigned to that account when
#   the feed is read). ``label`` says whose calendar it is ("Dana's phone"), for the audit
#   trail. A revoked token (``revoked_at``) answers 404 like an unknown one; ``last_used_at``
#   tells the office which feeds are still read.

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


# --- Feed polls (API: monitor/store/polls.py)
# ``ok`` says whether the poll ran to its end; ``resources``, ``accepted`` and ``rejected``
# count what it saw; ``error`` says why it failed, or what it warns about when it did not
# (a server that answered STU3, OperationOutcome issues). Never PHI: no MRN, name or URL
# query in ``error``. The last successful poll of a feed is where the next incremental
# (``_lastUpdated``) search starts.

feed_polls = Table(
    "feed_polls",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("feed", String(64), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("ok", Boolean(), nullable=False, default=False),
    Column("resources", Integer, nullable=False, default=0),
    Column("accepted", Integer, nullable=False, default=0),
    Column("rejected", Integer, nullable=False, default=0),
    Column("error", Text, nullable=False, default=""),
)
Index("ix_feed_polls_feed", feed_polls.c.feed, feed_polls.c.started_at)


# --- PACS studies (API: monitor/store/images.py)
# The studies of research exams the PACS holds, by their metadata only (never pixel data):
# matched to an exam by accession number, else by patient id + study date + modality
# (``matched_by``; NULL ``exam_id``: a study of an enrolled patient that matched no exam, or
# several, listed for the office and never guessed). ``series`` holds, per series, the
# distinct values its images carry for the attributes the acquisition rules name.
# ``instances`` is what the study listing said when the series were read: a study still
# arriving is read again when its count grows. Studies of patients not enrolled are never
# stored (minimum necessary).

pacs_studies = Table(
    "pacs_studies",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("study_uid", String(64), nullable=False, unique=True),
    Column("accession", String(80), nullable=False, default=""),
    Column("patient_id", String(80), nullable=False, default=""),
    Column("study_date", Date(), nullable=True),
    Column("modalities", String(80), nullable=False, default=""),
    Column("instances", Integer, nullable=False, default=0),
    Column("series", JSON, nullable=False, default=list),
    Column("exam_id", ForeignKey("exams.id"), nullable=True),
    Column("matched_by", String(32), nullable=False, default=""),
    Column("first_seen_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)
Index("ix_pacs_studies_exam_id", pacs_studies.c.exam_id)
Index("ix_pacs_studies_patient_id", pacs_studies.c.patient_id)
Index("ix_pacs_studies_updated_at", pacs_studies.c.updated_at)


# --- Core-lab submissions (API: monitor/store/submissions.py)
# One row per research exam of a trial with a core lab, made when its images first arrive:
# when the de-identified copy is due (the trial's deadline after the images), and what
# became of it. ``status``: due, refused (the copy failed the de-identification check and was
# not sent), failed (the send failed), submitted (sent by the PACS, or recorded by the office
# with the sponsor's confirmation number). Overdue is due/refused/failed past ``due_at``.
# ``problems`` are the check's findings (attribute names and counts, never values).

submissions = Table(
    "submissions",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("exam_id", ForeignKey("exams.id"), nullable=False, unique=True),
    Column("trial", String(64), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("timepoint", String(64), nullable=False),
    Column("status", String(32), nullable=False),
    Column("images_at", UTCDateTime(), nullable=False),
    Column("due_at", UTCDateTime(), nullable=False),
    Column("destination", String(300), nullable=False, default=""),
    Column("copy_uids", JSON, nullable=False, default=list),
    Column("instances", Integer, nullable=False, default=0),
    Column("problems", JSON, nullable=False, default=list),
    Column("error", String(500), nullable=False, default=""),
    Column("confirmation", String(120), nullable=False, default=""),
    Column("submitted_at", UTCDateTime(), nullable=True),
    Column("submitted_by", String(120), nullable=False, default=""),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("form", JSON, nullable=True),  # the completed transmittal form, kept with the submission
)
Index("ix_submissions_status", submissions.c.status, submissions.c.due_at)


# A core lab's questions about an exam it received (API: monitor/store/submissions.py):
# received on, the text (shown in the dashboard only, never in a message), the date the
# answer is due, and the office's answer. ``status``: open or answered.
core_lab_queries = Table(
    "core_lab_queries",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("exam_id", ForeignKey("exams.id"), nullable=False),
    Column("trial", String(64), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("received_on", Date(), nullable=False),
    Column("text", String(2000), nullable=False),
    Column("answer_due", Date(), nullable=False),
    Column("status", String(16), nullable=False, default="open"),
    Column("answer", String(2000), nullable=False, default=""),
    Column("answered_at", UTCDateTime(), nullable=True),
    Column("answered_by", String(120), nullable=False, default=""),
    Column("logged_at", UTCDateTime(), nullable=False),
    Column("logged_by", String(120), nullable=False),
)
Index("ix_core_lab_queries_exam_id", core_lab_queries.c.exam_id)
Index("ix_core_lab_queries_trial", core_lab_queries.c.trial, core_lab_queries.c.status)


# --- Channel pace (API: monitor/store/outbox/pace.py)
# Per address, the wall-clock time (Unix seconds) before which the next message may not go:
# replicas on one PostgreSQL take their sending slots here (Slack: one message a second per
# channel, whatever the number of replicas).
channel_pace = Table(
    "channel_pace",
    metadata,
    Column("address", String(300), primary_key=True),
    Column("next_at", Float(), nullable=False),
)


# --- Judgements (API: monitor/store/judgements.py)
# What the evaluation sweeps judged, so that a new process (``hiro-monitor evaluate``, a
# restarted daemon) judges again only what changed instead of every enrolment. Per
# enrolment: a fingerprint of what it was judged from (the enrolment, its protocol version,
# the evaluation settings and the program's version) and until when that judgement holds
# (``rules.stable_until``). ``sweep_state``: the exam event mark the last sweep took into
# account, when it ran, when the last full sweep started, under which settings.

judgements = Table(
    "judgements",
    metadata,
    Column(
        "enrolment_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    ),
    Column("fingerprint", String(64), nullable=False),
    Column("until", UTCDateTime(), nullable=False),
)

sweep_state = Table(
    "sweep_state",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("mark", BigInteger(), nullable=False),
    Column("judged_at", UTCDateTime(), nullable=False),
    Column("full_at", UTCDateTime(), nullable=False),
    Column("settings", String(64), nullable=False),
)

# Operations alerts (monitor/dispatch/operations.py): one row per condition and feed, the
# current or last episode. No patient data: feeds, counts and times.
operations_alerts = Table(
    "operations_alerts",
    metadata,
    Column("key", String(200), primary_key=True),  # condition|feed
    Column("condition", String(32), nullable=False),  # quiet_feed | rejections | outbox_backlog
    Column("feed", String(64), nullable=False),
    Column("raised_at", UTCDateTime(), nullable=False),
    Column("summary", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("cleared_at", UTCDateTime(), nullable=True),  # NULL: the episode is open
    Column("recovery", Text, nullable=False),  # what the recovery message said
)
