"""From a notification and a PHI policy to the words every channel shows.

Which template renders what (names relative to ``templates/``, overridable by the site):

==============  ===============================  ==============================
kind            HTML (email)                     text (email, console, webhook)
==============  ===============================  ==============================
instructions    ``instructions/<protocol's>``    ``instructions/default.txt``
                or ``instructions/default.html``
digest          ``digest/email.html``            ``digest/email.txt``
operations      ``operations/email.html``        ``operations/email.txt``
anything else   ``alerts/email.html``            ``alerts/email.txt``
==============  ===============================  ==============================

One line, ``common/headline.txt``, is the email subject, the Slack header and the
webhook title. Templates receive only :func:`notifiers.policy.content_view` of the content
(plus ``kind``, ``audience``, ``title``, ``finding_title`` and ``headline``), never the
content itself. A template failure becomes a permanent :class:`NotifierError`.
"""

from __future__ import annotations

import enum
import re
from datetime import UTC, date, datetime
from typing import Any

import jinja2

from notifiers.base import AlertContent, MessageKind, Notification, NotifierError, Renderer
from notifiers.policy import PhiPolicy, content_view
from rules.model import FindingKind

__all__ = [
    "FINDING_TITLES",
    "KIND_TITLES",
    "headline",
    "html_body",
    "jsonable",
    "message_context",
    "render_sheet",
    "sheet_template",
    "text_body",
]

FINDING_TITLES: dict[FindingKind, str] = {
    FindingKind.IN_WINDOW: "In window",
    FindingKind.EARLY: "Booked before the window",
    FindingKind.LATE: "Booked after the window",
    FindingKind.WRONG_ORDERABLE: "Wrong orderable",
    FindingKind.DUE_UNSCHEDULED: "Due, nothing booked",
    FindingKind.MISSED: "Visit missed",
    FindingKind.CANCELLED: "Research exam cancelled",
    FindingKind.NO_SHOW: "No-show",
    FindingKind.DUPLICATE: "Duplicate exam",
    FindingKind.UNMATCHED_EXAM: "Exam serves no visit",
    FindingKind.AFTER_OFF_STUDY: "Exam after off-study",
}

KIND_TITLES: dict[MessageKind, str] = {
    MessageKind.REMINDER: "Upcoming research scan",
    MessageKind.INSTRUCTIONS: "Scan instructions",
    MessageKind.ALERT: "Alert",
    MessageKind.DIGEST: "Daily digest",
    MessageKind.BOOKING: "Research scan booked",
    MessageKind.OPERATIONS: "Feed operations",
}

_SHEET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.html$")


def _render(renderer: Renderer, name: str, context: dict[str, Any]) -> str:
    try:
        return renderer.render(name, context)
    except jinja2.TemplateNotFound as exc:
        raise NotifierError(f"template {exc.name} not found", permanent=True) from exc
    except jinja2.TemplateError as exc:
        raise NotifierError(f"template {name}: {exc.message}", permanent=True) from exc
    except ValueError as exc:  # a naive datetime reached a time filter
        raise NotifierError(f"template {name}: {exc}", permanent=True) from exc


def sheet_template(content: AlertContent) -> str:
    """The instruction sheet's template: the protocol's own (``ExamType.instructions``) or the default.

    A name the protocol gives must exist (a missing sheet fails loudly, it is not replaced
    by the default without anyone noticing). Raises :class:`NotifierError` for a name that is
    not a plain ``.html`` file name.
    """
    name = content.instructions_template.strip()
    if not name:
        return "instructions/default.html"
    if not _SHEET_NAME.match(name):
        raise NotifierError(
            f"instruction sheet name {name!r} must be a plain file name ending in .html", permanent=True
        )
    return f"instructions/{name}"


def message_context(renderer: Renderer, notification: Notification, policy: PhiPolicy) -> dict[str, Any]:
    """The template context: the policy's view of the content, the kind's titles and the headline."""
    content = notification.content
    context = content_view(content, policy)
    finding_kind = getattr(content, "finding_kind", None)
    finding_title = FINDING_TITLES.get(finding_kind, "") if finding_kind else ""
    context["kind"] = notification.kind.value
    context["audience"] = notification.audience.value
    is_alert = notification.kind is MessageKind.ALERT
    context["title"] = finding_title if is_alert and finding_title else KIND_TITLES[notification.kind]
    context["finding_title"] = finding_title
    line = _render(renderer, "common/headline.txt", context)
    context["headline"] = " ".join(line.split())
    return context


def headline(renderer: Renderer, notification: Notification, policy: PhiPolicy) -> str:
    """One line: email subject, Slack header, webhook title."""
    return str(message_context(renderer, notification, policy)["headline"])


def _names(notification: Notification) -> tuple[str, str]:
    content = notification.content
    if notification.kind is MessageKind.INSTRUCTIONS and isinstance(content, AlertContent):
        return sheet_template(content), "instructions/default.txt"
    if notification.kind is MessageKind.DIGEST:
        return "digest/email.html", "digest/email.txt"
    if notification.kind is MessageKind.OPERATIONS:
        return "operations/email.html", "operations/email.txt"
    return "alerts/email.html", "alerts/email.txt"


def text_body(renderer: Renderer, notification: Notification, policy: PhiPolicy) -> str:
    """The plain-text body (email text part, console, webhook ``text``)."""
    return _render(renderer, _names(notification)[1], message_context(renderer, notification, policy))


def html_body(renderer: Renderer, notification: Notification, policy: PhiPolicy) -> str:
    """The HTML body (email HTML part; for instructions, the printable sheet itself)."""
    return _render(renderer, _names(notification)[0], message_context(renderer, notification, policy))


def render_sheet(renderer: Renderer, content: AlertContent, policy: PhiPolicy, *, text: bool = False) -> str:
    """The technologist instruction sheet for ``content`` (for ``hiro-monitor instructions``):
    the printable HTML, or with ``text`` the plain-text version the emails carry."""
    context = content_view(content, policy)
    context.update(kind=MessageKind.INSTRUCTIONS.value, audience="technologist")
    context.update(title=KIND_TITLES[MessageKind.INSTRUCTIONS], finding_title="")
    context["headline"] = " ".join(_render(renderer, "common/headline.txt", context).split())
    return _render(renderer, "instructions/default.txt" if text else sheet_template(content), context)


def jsonable(value: Any) -> Any:
    """A view made JSON-ready: datetimes as ISO 8601 UTC, dates as ISO, enums as values, tuples as lists."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
