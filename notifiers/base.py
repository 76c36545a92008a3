"""The message model and the one interface every channel implements.

A :class:`Notification` says what to send and to whom (``"slack:#onc-2101-imaging"``,
``"email:team@example.org"``, ``"webhook:teams"``, ``"console:"``); its ``content`` holds
everything a message may show, PHI included. A channel never shows ``content`` as is: it
passes it through its PHI policy (:mod:`notifiers.policy`) and renders only that view.

A :class:`Notifier` sends one notification and returns a :class:`Delivery` (the external
reference the outbox keeps: Slack channel + ts, SMTP Message-ID, webhook delivery id). It
fails with :class:`NotifierError` only, and never retries on its own beyond what its
provider's client does for a rate limit: retries and backoff live in the outbox dispatcher.

Notifiers block (sockets, ``time.sleep`` in slack-sdk's rate-limit handler): the dispatcher
must call them from a worker thread (``asyncio.to_thread`` or a thread pool), never on the
event loop that also runs the MLLP listener.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self

from notifiers.settings import ChannelSettings
from rules.model import Audience, FindingKind, Severity

__all__ = [
    "AlertContent",
    "Audience",
    "Content",
    "Delivery",
    "DigestContent",
    "MessageKind",
    "Notification",
    "Notifier",
    "NotifierError",
    "OperationsContent",
    "Renderer",
    "parse_address",
]


class Renderer(Protocol):
    """What a channel needs of the application's templates (``monitor.render.Renderer``):
    named Jinja2 templates, and times written in the site's zone."""

    def render(self, name: str, context: Mapping[str, Any]) -> str: ...

    def format_datetime(self, value: datetime) -> str: ...

    def format_date(self, value: date | datetime) -> str: ...


class MessageKind(enum.StrEnum):
    """What a message is; the first three share their values with ``rules.NotificationKind``."""

    REMINDER = "reminder"  # coordinator, at a lead time before a booked research exam
    INSTRUCTIONS = "instructions"  # technologist instruction sheet
    ALERT = "alert"  # coordinator, a problem finding
    DIGEST = "digest"  # coordinator, the daily summary of one trial
    BOOKING = "booking"  # coordinator, a research exam was booked (timepoint + window status)
    OPERATIONS = "operations"  # the integration team: a feed or the outbox needs a look, or recovered


def _aware(value: datetime | None, name: str) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} must be timezone-aware")


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertContent:
    """Everything one message about one exam or visit may show.

    ``timepoint`` is the visit's label ("Week 12 restaging"); ``exam_start`` is aware (UTC in
    practice). ``next_step`` is the one line that tells the reader what to do ("Ask
    scheduling to change the order to IMG1234 before Tue 09:30"). ``same_scanner`` is the room
    the baseline was scanned in when the exam type demands the same scanner
    (``same_scanner_as`` names that baseline visit).

    The last four fields are PHI. Only policies that allow them pass them on (see
    :mod:`notifiers.policy`); they are left out of ``repr`` so a logged object leaks nothing.
    """

    trial: str
    subject: str
    trial_title: str = ""
    timepoint: str = ""
    exam_label: str = ""
    exam_id: int | None = None
    exam_start: datetime | None = None
    previous_exam_start: datetime | None = None
    modality: str = ""
    room: str = ""
    accession: str = ""
    appointment_id: str = ""  # the EHR's appointment number (Epic's CSN): what scheduling looks up
    order_number: str = ""
    procedure_code: str = ""
    dashboard_url: str = ""
    next_step: str = ""
    warning: str = ""  # what a technologist must know before scanning (an order not fixed)
    late: str = ""  # a reminder or sheet sent after its time says so ("it was due ...")
    finding_kind: FindingKind | None = None
    severity: Severity | None = None
    detail: str = ""
    change: str = ""
    window_start: date | None = None
    window_end: date | None = None
    parameters: tuple[str, ...] = ()
    preparation: tuple[str, ...] = ()
    same_scanner: str = ""
    same_scanner_as: str = ""
    paperwork: tuple[str, ...] = ()
    contacts: tuple[str, ...] = ()
    instructions_template: str = ""
    # PHI: shown only where the channel's policy allows.
    patient_initials: str = field(default="", repr=False)
    mrn: str = field(default="", repr=False)
    patient_name: str = field(default="", repr=False)
    birth_date: date | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _aware(self.exam_start, "exam_start")
        _aware(self.previous_exam_start, "previous_exam_start")


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestContent:
    """One trial's daily summary for coordinators: one entry per exam or open finding."""

    trial: str
    day: date
    trial_title: str = ""
    entries: tuple[AlertContent, ...] = ()
    dashboard_url: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OperationsContent:
    """A feed or the outbox needs a look (``state`` "raised") or is well again ("recovered").

    For the operations channel: no patient, exam or trial in it by construction, only the
    feed, what was measured and what to check."""

    condition: str  # quiet_feed | rejections | outbox_backlog
    state: str  # raised | recovered
    summary: str  # "Feed epic has sent nothing for 47 minutes"
    since: datetime  # when the condition began
    feed: str = ""
    detail: str = ""  # what to check
    dashboard_url: str = ""

    def __post_init__(self) -> None:
        _aware(self.since, "since")


Content = AlertContent | DigestContent | OperationsContent


def parse_address(address: str) -> tuple[str, str]:
    """``"slack:#ct-techs"`` -> ``("slack", "#ct-techs")``; ``"console:"`` -> ``("console", "")``.

    Raises ``ValueError`` for an address without a channel name.
    """
    channel, colon, target = address.partition(":")
    channel = channel.strip().lower()
    if not colon or not channel:
        raise ValueError(f"{address!r} is not a channel address (write 'channel:target')")
    return channel, target.strip()


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a sent message lives, for updates, threads and the check before a resend.

    ``channel`` is the notifier's name; ``external_id`` the provider's reference (Slack
    ``ts``, SMTP ``Message-ID``, webhook delivery id); ``destination`` where it went (Slack
    channel id, recipient, webhook name); ``status`` the provider's answer, for the record.
    """

    channel: str
    external_id: str
    destination: str = ""
    status: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "channel": self.channel,
            "external_id": self.external_id,
            "destination": self.destination,
            "status": self.status,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Delivery:
        return cls(
            channel=str(data["channel"]),
            external_id=str(data["external_id"]),
            destination=str(data.get("destination", "")),
            status=str(data.get("status", "")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    """One message to one address, delivered once per ``dedupe_key``.

    ``thread_key`` groups messages about one exam (``"exam:42"``): Slack threads them, email
    sets a shared ``References`` header. ``thread`` is the first delivered message of that
    thread on the same channel and destination, which the dispatcher looks up in the outbox;
    without it the message starts a new thread. ``due_at`` bounds the history Slack searches
    in :meth:`Notifier.find_existing`.
    """

    address: str
    audience: Audience
    kind: MessageKind
    dedupe_key: str
    content: Content
    thread_key: str = ""
    thread: Delivery | None = None
    due_at: datetime | None = None

    def __post_init__(self) -> None:
        parse_address(self.address)
        _aware(self.due_at, "due_at")
        if not self.dedupe_key:
            raise ValueError("dedupe_key must not be empty")

    @property
    def channel(self) -> str:
        return parse_address(self.address)[0]

    @property
    def target(self) -> str:
        return parse_address(self.address)[1]


class NotifierError(Exception):
    """A message could not be delivered (its text carries no PHI: codes and channel names only).

    ``permanent``: retrying cannot help (bad channel, bad token, rejected recipient, a
    template bug): the outbox marks the row failed. Otherwise the dispatcher retries with
    backoff, no sooner than ``retry_after`` seconds when the provider said so.
    ``maybe_sent``: the request may have reached the provider before the failure (timeout or
    connection lost after sending); before retrying, the dispatcher should ask
    :meth:`Notifier.find_existing` where the channel can answer. ``code`` is the provider's
    error code when there is one (``channel_not_found``, ``550``, ``http_404``).
    ``rate_limited``: the provider said to slow down (HTTP 429, Slack's ``ratelimited``): the
    dispatcher holds the whole address back for ``retry_after`` and does not count an attempt.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        retry_after: float | None = None,
        maybe_sent: bool = False,
        code: str = "",
        rate_limited: bool = False,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
        self.maybe_sent = maybe_sent
        self.code = code
        self.rate_limited = rate_limited

    def __repr__(self) -> str:
        kind = "permanent" if self.permanent else "transient"
        return f"NotifierError({str(self)!r}, {kind}, retry_after={self.retry_after})"


class Notifier(abc.ABC):
    """One channel (Slack, email, webhook, console), serving every target of that channel.

    Subclasses declare ``name``, whether :meth:`update` edits in place (``edits_in_place``)
    and whether :meth:`find_existing` can look (``can_find_existing``). Every method may
    raise :class:`NotifierError` and nothing else.
    """

    name: ClassVar[str]
    edits_in_place: ClassVar[bool] = False
    can_find_existing: ClassVar[bool] = False

    @classmethod
    @abc.abstractmethod
    def from_settings(
        cls, settings: ChannelSettings, *, renderer: Renderer, environ: Mapping[str, str] | None = None
    ) -> Self:
        """The notifier the settings describe; secrets from ``environ`` (default: the process's).

        Raises a permanent :class:`NotifierError` when the channel is disabled or a secret is missing.
        """

    @abc.abstractmethod
    def send(self, notification: Notification) -> Delivery:
        """Deliver ``notification``; the returned :class:`Delivery` is the outbox's external reference."""

    @abc.abstractmethod
    def update(self, notification: Notification, previous: Delivery) -> Delivery:
        """Tell the reader of ``previous`` that its content changed (exam moved, finding changed).

        Slack edits the message (``chat.update``) and says what changed in its thread; email
        and webhooks send a follow-up that refers to ``previous``. Returns the reference to
        keep for the next update.
        """

    def find_existing(self, notification: Notification) -> Delivery | None:
        """The message already delivered for ``notification.dedupe_key``, if the channel can tell.

        Called before re-sending a row found in ``sending`` after a crash, or after an error
        with ``maybe_sent``. Channels that cannot look return None (``can_find_existing`` is
        False) and the dispatcher re-sends (email and webhooks carry an idempotency id so the
        far end can drop the copy).
        """
        return None

    def close(self) -> None:  # noqa: B027 (an optional hook, not an abstract method)
        """Release connections; the notifier must not be used afterwards."""

    def __enter__(self) -> Notifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
