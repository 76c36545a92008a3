"""Receiving one HL7 message: store it, apply it, decide the acknowledgement.

This is the single code path behind the MLLP listener and ``hiro-monitor ingest``: both
hand raw bytes to :meth:`Intake.receive_batch` and get back one :class:`Receipt` each.

Decisions (DESIGN invariant 1 and 2):

- The raw message and its effect on the exams are committed in one transaction, and the
  receipt says AA only after that commit returned.
- Content that cannot be processed is still stored (outcome ``rejected``) and answered AE
  with the HL7 table 0357 error code (AR for an unsupported message type or trigger, as
  HL7 v2.5 section 2.9.2 asks); input that is valid but not ours (a hold with no
  patient) is stored as ``skipped`` and answered AA.
- A message whose MSH-3/4/10 *and* body (MSH-7 aside, since some engines restamp it on
  resend) match any stored message of the feed is a duplicate: nothing changes, and it is
  answered as the stored one was (AA, or the same AE/AR and reason). Without MSH-10 the
  feed and the body alone decide. The same key with a different body is stored, processed
  and flagged ``key_reused`` (linked to the first message of the key): a sender whose
  counter restarted still gets its real updates through, and feed health lists the reuse.
  Whatever order messages arrive in, an exam is never moved back to an older state
  (:mod:`monitor.store.exams`).
- When the store is unavailable the receipt says AR (the listener may send nothing), so
  the sender keeps the message and retries.

Messages are written in batches by one writer per feed: several connections' messages
share one durable commit (group commit) and a feed's messages keep their order.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError, SQLAlchemyError

from monitor.clock import SYSTEM_CLOCK
from monitor.events import Rejection, ScheduleEvent
from monitor.feeds.hl7.ack import build_ack, message_key, message_type
from monitor.feeds.hl7.mapping import MappingSettings, to_events
from monitor.logs import where
from monitor.store.accounts import record_audit
from monitor.store.exams import apply_event
from monitor.store.message_browser import reprocess_source, reprocessing_of
from monitor.store.messages import (
    NewMessage,
    StoredAnswer,
    count_resend,
    first_of_key,
    insert_message,
    pending_messages,
    set_outcome,
    stored_answer,
)

log = logging.getLogger("monitor.intake")

AckCode = Literal["AA", "AE", "AR"]
Outcome = Literal["accepted", "skipped", "rejected", "duplicate", "pending", "unavailable"]


@dataclass(frozen=True, slots=True)
class Arrival:
    """One message as it arrived: bytes, from where, when."""

    raw: bytes
    peer: str = ""
    received_at: datetime | None = None  # None: the intake's clock when it is stored


@dataclass(frozen=True, slots=True)
class Receipt:
    """What became of one message, and the acknowledgement it earned."""

    outcome: Outcome
    ack_code: AckCode
    message_id: int | None = None
    error_code: str = ""
    reason: str = ""
    exam_ids: tuple[int, ...] = ()
    key_reused: bool = False

    def ack(self, raw: bytes) -> bytes:
        """The HL7 ACK for ``raw`` that this receipt calls for."""
        if self.ack_code == "AA":
            return build_ack(raw, "AA")
        return build_ack(raw, self.ack_code, error_code=self.error_code or "207", text=self.reason)


UNAVAILABLE = Receipt("unavailable", "AR", error_code="207", reason="store unavailable, please resend")

# Errors that mean "the store cannot take anything now": answer AR and let the sender retry.
_STORE_DOWN = (OperationalError, DisconnectionError)


def body_digest(raw: bytes) -> str:
    """SHA-256 of the message with MSH-7 (time of message) blanked."""
    end = raw.find(b"\r")
    head, rest = (raw, b"") if end < 0 else (raw[:end], raw[end:])
    if head.startswith(b"MSH") and len(head) > 3:
        fields = head.split(head[3:4])
        if len(fields) > 6:
            fields[6] = b""
            head = head[3:4].join(fields)
    return hashlib.sha256(head + rest).hexdigest()


def content_key(feed: str, key: tuple[str, str, str] | None, digest: str) -> str:
    """What makes a message a resend of a stored one: feed, MSH-3, MSH-4, MSH-10 (each as
    stored, so clipped) and the body digest. Migration 0008 computes the same for old rows."""
    app, facility, control_id = key or ("", "", "")
    text = "\x1f".join((feed, app[:180], facility[:180], control_id[:199], digest))
    return hashlib.sha256(text.encode()).hexdigest()


class Intake:
    """Stores and applies HL7 messages of one feed. Not thread-safe: one writer per feed."""

    def __init__(
        self,
        engine: Engine,
        mapping: MappingSettings,
        *,
        store_raw_first: bool = False,
        clock: Callable[[], datetime] = SYSTEM_CLOCK,
    ) -> None:
        self.engine = engine
        self.mapping = mapping
        self.feed = mapping.source
        self.store_raw_first = store_raw_first
        self.clock = clock

    # -- the batch entry point -------------------------------------------------------

    def receive_batch(self, arrivals: Sequence[Arrival]) -> list[Receipt]:
        """Store and apply ``arrivals`` in order; one receipt each, in the same order.

        One transaction for the batch; if it fails, each message is retried alone so one
        bad message cannot take its neighbours down. Never raises for a database error:
        the receipt says AR instead.
        """
        try:
            with self.engine.begin() as conn:
                return [self._receive(conn, arrival) for arrival in arrivals]
        except SQLAlchemyError as exc:
            if len(arrivals) == 1:
                return [self._after_failure(arrivals[0], exc)]
            log.warning("batch of %d failed (%s); retrying one by one", len(arrivals), type(exc).__name__)
            return [self.receive(arrival) for arrival in arrivals]

    def receive(self, arrival: Arrival) -> Receipt:
        return self.receive_batch([arrival])[0]

    # -- one message -----------------------------------------------------------------

    def _receive(self, conn: Connection, arrival: Arrival) -> Receipt:
        raw = arrival.raw
        key = message_key(raw)
        digest = body_digest(raw)
        stored = _StoredMessage(
            arrival,
            key,
            digest,
            "|".join((self.feed, *key)) if key and key[2] else None,
            content_key(self.feed, key, digest),
            None,
        )
        mapped: list[ScheduleEvent] | Rejection = []
        if self.store_raw_first:
            receipt = Receipt("pending", "AA")
        else:
            mapped = self._map(raw)
            receipt = Receipt("accepted", "AA")
            if isinstance(mapped, Rejection):
                receipt = _rejection_receipt(mapped, key_reused=False)
        message_id = insert_message(conn, self._row(stored, receipt))
        if message_id is None:  # the content or the key was seen before
            same = stored_answer(conn, stored.content_key) if stored.content_key else None
            if same is not None:  # a resend: answered as the first time, nothing changes
                count_resend(conn, same.id)
                return _duplicate_receipt(same)
            assert stored.dedupe_key is not None  # a new content, so it was the key
            stored = replace(stored, dedupe_key=None, original_id=first_of_key(conn, stored.dedupe_key))
            receipt = replace(receipt, key_reused=True)
            message_id = insert_message(conn, self._row(stored, receipt))
            assert message_id is not None  # a new content and no dedupe key: no conflict
        if isinstance(mapped, list) and mapped:
            now = self.clock()
            exam_ids = tuple(apply_event(conn, event, message_id, now) for event in mapped)
            receipt = replace(receipt, exam_ids=exam_ids)
        return replace(receipt, message_id=message_id)

    def _map(self, raw: bytes) -> list[ScheduleEvent] | Rejection:
        try:
            return to_events(raw, self.mapping)
        except Exception as exc:  # a mapping bug must not lose the message: store, answer AE
            log.error("mapping failed: %s", where(exc))  # the message text could quote PHI
            return Rejection(f"internal mapping error ({type(exc).__name__})", "207")

    def _row(self, stored: _StoredMessage, receipt: Receipt) -> NewMessage:
        app, facility, control_id = stored.key or ("", "", "")
        arrival = stored.arrival
        return NewMessage(
            feed=self.feed,
            received_at=arrival.received_at or self.clock(),
            payload=arrival.raw,
            body_digest=stored.digest,
            outcome=receipt.outcome,
            sender_application=app,
            sender_facility=facility,
            control_id=control_id,
            message_type=message_type(arrival.raw),
            peer=arrival.peer,
            ack_code=receipt.ack_code,
            error_code=receipt.error_code,
            error=receipt.reason,
            dedupe_key=stored.dedupe_key,
            content_key=stored.content_key,
            original_id=stored.original_id,
        )

    def _after_failure(self, arrival: Arrival, exc: SQLAlchemyError) -> Receipt:
        """A single message failed in the database: store down (AR) or content the store refused (AE)."""
        if isinstance(exc, _STORE_DOWN) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
            log.error("store unavailable (%s): answering AR", type(exc).__name__)
            return UNAVAILABLE
        log.error("message could not be applied (%s): storing it as rejected", type(exc).__name__)
        reason = f"could not be stored as an exam ({type(exc).__name__})"
        try:
            with self.engine.begin() as conn:
                stored = _StoredMessage(
                    arrival, message_key(arrival.raw), body_digest(arrival.raw), None, None, None
                )
                receipt = Receipt("rejected", "AE", error_code="207", reason=reason)
                message_id = insert_message(conn, self._row(stored, receipt))
        except SQLAlchemyError:
            return UNAVAILABLE
        return replace(receipt, message_id=message_id)

    # -- messages stored but not yet processed (ack mode "after storing raw") -------------

    def process_pending(self, limit: int = 500) -> list[Receipt]:
        """Apply up to ``limit`` messages stored with outcome ``pending``, oldest first, in one
        transaction; one receipt each (empty when nothing was pending)."""
        with self.engine.begin() as conn:
            now = self.clock()
            receipts: list[Receipt] = []
            for pending in pending_messages(conn, self.feed, limit):
                mapped = self._map(pending.payload)
                if isinstance(mapped, Rejection):
                    receipt = _rejection_receipt(mapped, pending.key_reused)
                else:
                    exam_ids = tuple(apply_event(conn, event, pending.id, now) for event in mapped)
                    receipt = Receipt("accepted", "AA", pending.id, exam_ids=exam_ids)
                receipts.append(receipt)
                set_outcome(
                    conn, pending.id, receipt.outcome, receipt.ack_code, receipt.error_code, receipt.reason
                )
        return receipts

    # -- reprocessing a rejected message (the message browser) ---------------------------

    def reprocess(self, message_id: int, *, by: str, client: str = "") -> Reprocessed:
        """Process a rejected message of this feed again, through the same mapping and the
        same exam updates, after a mapping or configuration fix.

        The attempt is a message of its own (``reprocess_of`` the original, peer
        ``reprocess``), applied, audited (``by``, from ``client``) and committed in one
        transaction; the original keeps its row and the answer its sender got. Idempotent:
        once an attempt is not rejected, asking again changes nothing and names that
        attempt. Asking for an attempt reprocesses its original. Never raises for a message
        that cannot be reprocessed: ``done`` is False and ``reason`` says why."""
        with self.engine.begin() as conn:
            found = reprocess_source(conn, message_id)
            if found is not None and found.reprocess_of is not None:
                found = reprocess_source(conn, int(found.reprocess_of))
            if found is None:
                return Reprocessed(message_id, reason=f"there is no message {message_id}")
            original = int(found.id)
            refusal = self._refusal(found)
            if refusal:
                return Reprocessed(original, reason=refusal)
            settled = reprocessing_of(conn, original).settled
            if settled is not None:
                reason = f"already reprocessed as message {settled.id} ({settled.outcome})"
                return Reprocessed(original, int(settled.id), settled.outcome, reason=reason)
            payload = bytes(found.payload)
            mapped = self._map(payload)
            receipt = Receipt("accepted", "AA")
            if isinstance(mapped, Rejection):
                receipt = _rejection_receipt(mapped, key_reused=False)
            key = message_key(payload)
            stored = _StoredMessage(
                Arrival(payload, peer="reprocess", received_at=self.clock()),
                key, body_digest(payload), None, None, None,
            )  # fmt: skip
            attempt = insert_message(conn, replace(self._row(stored, receipt), reprocess_of=original))
            assert attempt is not None  # no dedupe or content key: nothing to conflict with
            exam_ids: tuple[int, ...] = ()
            if isinstance(mapped, list) and mapped:
                now = self.clock()
                exam_ids = tuple(apply_event(conn, event, attempt, now) for event in mapped)
            detail = f"attempt {attempt}: {receipt.outcome}" + (
                f" ({receipt.reason})" if receipt.reason else ""
            )
            record_audit(conn, self.clock(), by, "message.reprocess", "message", original, client, detail)
            return Reprocessed(original, attempt, receipt.outcome, receipt.reason, exam_ids, done=True)

    def _refusal(self, found: Any) -> str:
        if found.feed != self.feed:
            return f"message {found.id} came from feed {found.feed!r}; this intake is {self.feed!r}"
        if found.outcome != "rejected":
            return f"message {found.id} was {found.outcome}: only rejected messages are reprocessed"
        if found.payload is None:
            return f"message {found.id}'s content was purged after the retention period"
        return ""


@dataclass(frozen=True, slots=True)
class Reprocessed:
    """What reprocessing a message did: ``done`` when an attempt was made now (its outcome
    may be ``rejected`` again); otherwise ``reason`` says why not, and ``attempt`` names
    the earlier attempt that settled it, if that is the reason."""

    original: int
    attempt: int | None = None
    outcome: str = ""
    reason: str = ""
    exam_ids: tuple[int, ...] = ()
    done: bool = False


@dataclass(frozen=True, slots=True)
class _StoredMessage:
    arrival: Arrival
    key: tuple[str, str, str] | None
    digest: str
    dedupe_key: str | None
    content_key: str | None
    original_id: int | None

    @property
    def key_reused(self) -> bool:
        return self.original_id is not None


# HL7 v2.5 section 2.9.2: a message whose type, trigger, processing id or version the
# receiver does not support is rejected (AR); content errors are application errors (AE).
_APPLICATION_REJECT = frozenset({"200", "201", "202", "203"})


def _duplicate_receipt(first: StoredAnswer) -> Receipt:
    """A resend's receipt: the first one's acknowledgement (a message rejected once is
    rejected again, with the same reason), nothing applied."""
    if first.ack_code == "AE" or first.ack_code == "AR":
        code: AckCode = "AE" if first.ack_code == "AE" else "AR"
        return Receipt("duplicate", code, first.id, error_code=first.error_code, reason=first.error)
    return Receipt("duplicate", "AA", message_id=first.id)


def _rejection_receipt(rejection: Rejection, key_reused: bool) -> Receipt:
    if rejection.skipped:
        return Receipt("skipped", "AA", reason=rejection.reason, key_reused=key_reused)
    code: AckCode = "AR" if rejection.error_code in _APPLICATION_REJECT else "AE"
    return Receipt(
        "rejected", code, error_code=rejection.error_code, reason=rejection.reason, key_reused=key_reused
    )
