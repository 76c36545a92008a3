"""Messages about one exam: which earlier message a new one updates, and what it says changed.

Every message about an exam on one address shares a ``thread_key`` (``exam:42``); the first
one delivered is the thread's root (Slack threads the rest under it). When a new row comes:

- a **booking notice** for an exam whose booking was already posted (the exam was
  rescheduled: its start is part of the dedupe key) *updates* that message: Slack edits it
  in place and says "Updated: moved from ... to ..." in its thread; email sends a follow-up;
- a **cancellation or no-show alert** about such an exam updates it as well, saying the
  visit is open again, and so does a warning alert caused by moving the exam (rebooked out
  of its window): the channel's message about the exam never shows a stale booking;
- anything else is a new message in the thread (a critical alert always is: Slack also
  broadcasts it to the channel, where an edit would notify nobody); when the exam's time
  differs from the one the thread last showed, it carries ``previous_exam_start``.

Also here: the error code an outbox row keeps (``last_error``): the provider's code, or a
fixed word for the refusals the notifiers raise without one. Never a message text.
"""

from __future__ import annotations

from dataclasses import replace

from monitor.store.outbox.claims import SentBefore
from notifiers.base import AlertContent, Delivery, MessageKind, NotifierError
from rules import FindingKind

__all__ = ["against_history", "error_code"]

_CLOSES_EXAM = {
    FindingKind.CANCELLED.value: "exam cancelled; the visit is open again",
    FindingKind.NO_SHOW.value: "no-show; the visit is open again",
}

_UNCODED = (
    ("disabled", "channel_disabled"),
    ("is not set", "missing_secret"),
    ("not configured", "not_configured"),
    ("unknown channel", "unknown_channel"),
    ("template", "template_error"),
)


def against_history(
    kind: MessageKind, finding_kind: str, content: AlertContent, history: list[SentBefore]
) -> tuple[AlertContent, Delivery | None]:
    """``content`` with what changed since the thread's last message, and the delivery to update
    (None: send a new message). ``history`` is the thread's delivered messages, oldest first."""
    if not history:
        return content, None
    last = history[-1]
    moved = last.exam_start is not None and content.exam_start not in (None, last.exam_start)
    if moved:
        content = replace(content, previous_exam_start=last.exam_start)
    booking = next((sent for sent in history if sent.kind == MessageKind.BOOKING.value), None)
    if booking is None:
        return content, None
    if kind is MessageKind.BOOKING:
        return content, booking.delivery
    if kind is MessageKind.ALERT and finding_kind in _CLOSES_EXAM:
        return replace(content, change=_CLOSES_EXAM[finding_kind]), booking.delivery
    # Any other alert, after a reschedule too, is a new message the channel sees (it says
    # what moved): a warning edited into an old post is one nobody reads.
    return content, None


def error_code(exc: NotifierError) -> str:
    """What ``last_error`` keeps: the provider's code, or a fixed word for our own refusals."""
    if exc.code:
        return exc.code
    text = str(exc)
    for words, code in _UNCODED:
        if words in text:
            return code
    return "permanent" if exc.permanent else "transient"
