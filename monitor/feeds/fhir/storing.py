"""Storing one polled resource: the raw JSON in ``messages``, its event applied to the exams.

The FHIR counterpart of :mod:`monitor.feeds.hl7.intake`, for resources that are polled rather than
pushed. Decisions:

* ``messages.payload`` is the Appointment's JSON (compact, keys sorted: a page's raw
  bytes hold many resources, so each is re-serialised); ``message_type`` is the resource
  type; ``control_id`` is ``id/_history/versionId``, else ``id/_history/<meta.lastUpdated>``,
  else the id; ``dedupe_key`` is ``feed|Type/control_id``.
* ``body_digest`` covers the resource and the event it mapped to, so that a change in a
  referenced resource that the event shows (the order's code, the MRN, a room's name) is
  applied even when the Appointment's version stayed; a change that the event does not
  show (a patient's address) is not.
* Re-polling an unchanged resource writes nothing at all (not even a duplicate counter:
  a poll every five minutes would otherwise rewrite every row in the window).
* The same key with a different digest is stored and applied again, linked to the first
  row (``original_id``, ``key_reused``), as the intake does for a reused HL7 control id;
  it is compared with the latest row of that chain, so a flip back is applied too.
* A booked Appointment whose start moved is applied as ``rescheduled``: FHIR says only
  what the appointment is now, and the office wants to hear that it moved.
* Malformed entries and invalid JSON bodies are stored as ``rejected`` (payload kept for
  the audit trail and purged by retention like any raw message), once per distinct body.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import datetime
from enum import Enum
from typing import Any, Literal

from sqlalchemy import Connection

from monitor.events import EventKind, Rejection, ScheduleEvent
from monitor.feeds.fhir.bundle import Problem
from monitor.store.exams import apply_event, exam_start
from monitor.store.messages import NewMessage, insert_message, latest_of_key, malformed_seen

Stored = Literal["accepted", "skipped", "rejected", "unchanged"]


def canonical(data: Any) -> bytes:
    """Compact JSON with sorted keys: the stored payload and the digest's input."""
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_plain
    ).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(type(value).__name__)


def control_id(resource: dict[str, Any]) -> str:
    rid = resource.get("id") if isinstance(resource.get("id"), str) else ""
    meta = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
    version = meta.get("versionId") or meta.get("lastUpdated") if isinstance(meta, dict) else None
    return f"{rid}/_history/{version}" if rid and isinstance(version, str) and version else str(rid)


def store_resource(
    conn: Connection,
    feed: str,
    resource: dict[str, Any],
    mapped: ScheduleEvent | Rejection,
    now: datetime,
) -> Stored:
    """Store ``resource`` and apply ``mapped`` unless this exact content was stored before."""
    kind = str(resource.get("resourceType") or "")
    cid = control_id(resource)
    payload = canonical(resource)
    digest = hashlib.sha256(payload + b"\n" + canonical(dataclasses.asdict(mapped))).hexdigest()
    dedupe_key: str | None = f"{feed}|{kind}/{cid}"[:600] if cid else None
    original_id: int | None = None
    if dedupe_key is not None:
        chain = latest_of_key(conn, dedupe_key)
        if chain is not None:
            first, latest = chain
            if latest == digest:
                return "unchanged"
            original_id, dedupe_key = first, None
    if isinstance(mapped, Rejection):
        outcome: Stored = "skipped" if mapped.skipped else "rejected"
        _insert(conn, feed, kind, cid, payload, digest, now, outcome, dedupe_key, original_id, mapped)
        return outcome
    message_id = _insert(
        conn, feed, kind, cid, payload, digest, now, "accepted", dedupe_key, original_id, None
    )
    apply_event(conn, _as_reschedule(conn, mapped), message_id, now)
    return "accepted"


def store_problem(conn: Connection, feed: str, problem: Problem, raw: bytes, now: datetime) -> bool:
    """Store a malformed entry or body as rejected, once per distinct body; True when new."""
    digest = hashlib.sha256(raw).hexdigest()
    dedupe_key = f"{feed}|malformed|{digest}"
    if malformed_seen(conn, dedupe_key):
        return False
    rejection = Rejection(problem.reason, "100" if "entry" in problem.reason else "102")
    _insert(
        conn,
        feed,
        problem.resource_type,
        problem.resource_id,
        raw,
        digest,
        now,
        "rejected",
        dedupe_key,
        None,
        rejection,
    )
    return True


def _insert(
    conn: Connection,
    feed: str,
    kind: str,
    cid: str,
    payload: bytes,
    digest: str,
    now: datetime,
    outcome: str,
    dedupe_key: str | None,
    original_id: int | None,
    rejection: Rejection | None,
) -> int:
    message = NewMessage(
        feed=feed,
        received_at=now,
        payload=payload,
        body_digest=digest,
        outcome=outcome,
        control_id=cid,
        message_type=kind,
        error_code=rejection.error_code if rejection and not rejection.skipped else "",
        error=rejection.reason if rejection else "",
        dedupe_key=dedupe_key,
        original_id=original_id,
    )
    message_id = insert_message(conn, message)
    assert message_id is not None  # the key was looked up first (one poller per feed)
    return message_id


def _as_reschedule(conn: Connection, event: ScheduleEvent) -> ScheduleEvent:
    if event.kind is not EventKind.BOOKED or event.start is None:
        return event
    before = exam_start(conn, event.source, event.external_id)
    if before is not None and before != event.start:
        return dataclasses.replace(event, kind=EventKind.RESCHEDULED)
    return event
