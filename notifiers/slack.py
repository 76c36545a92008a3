"""Slack: Block Kit messages through slack-sdk's ``WebClient``, threaded per exam.

How one dedupe key becomes one Slack message:

- Every message carries Slack message metadata ``{"event_type": "hiro_notification",
  "event_payload": {"dedupe_key": ..., "thread_key": ...}}``. Before re-sending a row found
  in ``sending`` (a crash between the post and the bookkeeping) or after an ambiguous error,
  the dispatcher calls :meth:`SlackNotifier.find_existing`: it reads the channel's recent
  history (and the exam's thread) with ``include_all_metadata`` and returns the message
  that already carries the key, so the row is recorded as sent instead of posted twice.
- Threads per exam: the first message about an exam in a channel is posted top level; the
  dispatcher passes its :class:`Delivery` as ``Notification.thread`` for the next ones,
  which become replies (``thread_ts``). Warning and critical alerts are also broadcast to
  the channel (``reply_broadcast``).
- ``update`` edits the message in place (``chat.update``; edits do not notify anyone) and
  says what changed in a threaded reply, which does.

Rate limits: a 429 whose ``Retry-After`` is at most ``max_inline_wait_seconds`` is waited out
by slack-sdk's :class:`RateLimitErrorRetryHandler`, once; a longer one (or a second one)
becomes a transient :class:`NotifierError` with ``retry_after``, and the dispatcher
reschedules the row. That handler sleeps with ``time.sleep``: **call this notifier from a
worker thread, never on the asyncio event loop** (it would stall the MLLP listener).

Token: ``HIRO_SLACK_TOKEN`` (or ``HIRO_SLACK_TOKEN_FILE``); scopes chat:write,
channels:history, groups:history, channels:read, groups:read.
"""

from __future__ import annotations

import functools
import http.client
import logging
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, ClassVar
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web import SlackResponse

from notifiers.base import (
    AlertContent,
    Delivery,
    MessageKind,
    Notification,
    Notifier,
    NotifierError,
    Renderer,
)
from notifiers.compose import message_context
from notifiers.policy import PhiPolicy
from notifiers.settings import ChannelSettings, SecretUnreadable, read_secret
from notifiers.slack_blocks import build_message, escape

__all__ = ["METADATA_EVENT", "SlackNotifier"]

log = logging.getLogger("notifiers.slack")

METADATA_EVENT = "hiro_notification"

# Slack's error codes (https://api.slack.com/methods/chat.postMessage#errors and
# https://api.slack.com/web#errors): these cannot succeed on a retry.
PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found", "invalid_auth", "not_in_channel", "account_inactive", "token_revoked",
        "token_expired", "not_authed", "no_permission", "missing_scope", "is_archived",
        "channel_is_archived", "invalid_blocks", "invalid_blocks_format", "msg_too_long", "no_text",
        "invalid_metadata_format", "invalid_metadata_schema", "metadata_too_large",
        "metadata_must_be_sent_from_app", "restricted_action", "team_access_not_granted",
        "ekm_access_denied", "invalid_arguments", "message_not_found", "cant_update_message",
        "edit_window_closed",
    }
)  # fmt: skip
# "It's possible some aspect of the operation succeeded before the error was raised."
MAYBE_DONE_ERRORS = frozenset({"internal_error", "fatal_error", "request_timeout", "service_unavailable"})
# chat.update cannot edit the message any more: post a new one instead.
GONE_ERRORS = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})

_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")


def _retry_after(headers: Mapping[str, Any]) -> float | None:
    for key, value in headers.items():
        if key.lower() == "retry-after":
            raw = value[0] if isinstance(value, list | tuple) else value
            try:
                return max(0.0, float(raw))
            except (TypeError, ValueError):
                return None
    return None


class _ShortRateLimitWait(RateLimitErrorRetryHandler):
    """slack-sdk's 429 handler, but only for a short ``Retry-After``: long waits belong to the dispatcher."""

    def __init__(self, max_wait_seconds: float) -> None:
        super().__init__(max_retry_count=1)
        self.max_wait_seconds = max_wait_seconds

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if not super()._can_retry(state=state, request=request, response=response, error=error):
            return False
        assert response is not None  # the parent answers True only for a 429 response
        wait = _retry_after(response.headers)
        return wait is not None and wait <= self.max_wait_seconds


class SlackNotifier(Notifier):
    """Posts to ``slack:#channel`` (a name) or ``slack:C0123ABCD`` (an id) with one ``WebClient``."""

    name: ClassVar[str] = "slack"
    edits_in_place: ClassVar[bool] = True
    can_find_existing: ClassVar[bool] = True

    # https://api.slack.com/methods/chat.postMessage#rate_limiting: "generally allows an app to post
    # 1 message per second to a specific channel", short bursts tolerated. The dispatcher paces by it.
    messages_per_second_per_channel: ClassVar[float] = 1.0
    # Retry-After values up to this are waited out in-process (one retry); longer go back to the outbox.
    max_inline_wait_seconds: ClassVar[float] = 5.0
    # https://api.slack.com/methods/conversations.history: `limit` "no more than 1000", 200 recommended;
    # Tier 3 (50+ calls per minute), so the check before a resend reads a bounded window.
    history_page_size: ClassVar[int] = 200
    history_pages: ClassVar[int] = 5
    history_margin: ClassVar[timedelta] = timedelta(minutes=10)

    def __init__(
        self,
        *,
        token: str,
        renderer: Renderer,
        policy: PhiPolicy = PhiPolicy.NONE,
        base_url: str = "https://slack.com/api/",
        timeout_seconds: int = 30,
    ) -> None:
        if policy is PhiPolicy.FULL:
            raise ValueError("Slack may not carry MRNs or names: use phi_policy 'none' or 'limited'")
        self.policy = policy
        self.renderer = renderer
        self.client = WebClient(
            token=token,
            base_url=base_url,
            timeout=timeout_seconds,
            retry_handlers=[_ShortRateLimitWait(self.max_inline_wait_seconds)],
        )
        self._channel_ids: dict[str, str] = {}

    @classmethod
    def from_settings(
        cls, settings: ChannelSettings, *, renderer: Renderer, environ: Mapping[str, str] | None = None
    ) -> SlackNotifier:
        if not settings.slack.enabled:
            raise NotifierError("slack is disabled in the settings ([slack] enabled)", permanent=True)
        token = _secret("HIRO_SLACK_TOKEN", environ)
        if not token:
            raise NotifierError("HIRO_SLACK_TOKEN is not set", permanent=True)
        return cls(
            token=token,
            renderer=renderer,
            policy=PhiPolicy(settings.slack.phi_policy),
            base_url=settings.slack.base_url,
            timeout_seconds=settings.slack.timeout_seconds,
        )

    # -- sending -----------------------------------------------------------------------------

    def _payload(self, notification: Notification) -> tuple[dict[str, Any], dict[str, Any]]:
        """The ``chat.postMessage`` arguments, and the policy-filtered context they were built from."""
        context = message_context(self.renderer, notification, self.policy)
        text, blocks = build_message(self.renderer, context)
        metadata = {
            "event_type": METADATA_EVENT,
            "event_payload": {"dedupe_key": notification.dedupe_key, "thread_key": notification.thread_key},
        }
        return {"text": text, "blocks": blocks, "metadata": metadata}, context

    def send(self, notification: Notification) -> Delivery:
        payload, _ = self._payload(notification)
        channel = notification.target
        if notification.thread is not None:
            channel = notification.thread.destination
            payload["thread_ts"] = notification.thread.external_id
            content = notification.content
            severe = isinstance(content, AlertContent) and content.severity in ("warning", "critical")
            # A warning or critical alert is also shown in the channel, not only inside the
            # exam's thread: a problem after a reschedule must not hide under an old post.
            payload["reply_broadcast"] = severe and notification.kind is MessageKind.ALERT
        response = self._call(
            "chat.postMessage",
            lambda: self.client.chat_postMessage(
                channel=channel, unfurl_links=False, unfurl_media=False, **payload
            ),
            posts=True,
        )
        channel_id = str(response["channel"])
        self._channel_ids.setdefault(notification.target, channel_id)
        return Delivery(
            channel=self.name, external_id=str(response["ts"]), destination=channel_id, status="ok"
        )

    def update(self, notification: Notification, previous: Delivery) -> Delivery:
        payload, context = self._payload(notification)
        try:
            self._call(
                "chat.update",
                lambda: self.client.chat_update(
                    channel=previous.destination, ts=previous.external_id, **payload
                ),
                posts=False,
            )
        except NotifierError as exc:
            if exc.code in GONE_ERRORS:
                log.info("slack: message %s can no longer be edited; posting a new one", previous.external_id)
                return self.send(notification)
            raise
        note = self._change_note(context)
        if note:
            root = notification.thread.external_id if notification.thread else previous.external_id
            reply = {
                "event_type": "hiro_update",
                "event_payload": {"dedupe_key": notification.dedupe_key},
            }
            self._call(
                "chat.postMessage",
                lambda: self.client.chat_postMessage(
                    channel=previous.destination, thread_ts=root, text=note, metadata=reply
                ),
                posts=True,
            )
        return previous

    def _change_note(self, context: dict[str, Any]) -> str:
        """What changed, from the policy-filtered context (never from the raw content)."""
        if context.get("change"):
            return f"Updated: {escape(context['change'])}"
        if context.get("previous_exam_start") and context.get("exam_start"):
            before = self.renderer.format_datetime(context["previous_exam_start"])
            after = self.renderer.format_datetime(context["exam_start"])
            return f"Updated: moved from {before} to {after}"
        return ""

    # -- the check before a resend -----------------------------------------------------------

    def find_existing(self, notification: Notification) -> Delivery | None:
        """The message carrying ``notification.dedupe_key`` in its metadata, searched in the
        exam's thread (when known) and the channel's history since shortly before ``due_at``."""
        if notification.thread is not None:
            channel = notification.thread.destination
            found = self._search(
                channel,
                lambda cursor: self.client.conversations_replies(
                    channel=channel,
                    ts=notification.thread.external_id if notification.thread else "",
                    include_all_metadata=True,
                    limit=self.history_page_size,
                    cursor=cursor,
                ),
                notification.dedupe_key,
            )
            if found is not None:
                return found
        else:
            channel = self._channel_id(notification.target)
        oldest = None
        if notification.due_at is not None:
            oldest = f"{(notification.due_at - self.history_margin).timestamp():.6f}"
        return self._search(
            channel,
            lambda cursor: self.client.conversations_history(
                channel=channel,
                include_all_metadata=True,
                limit=self.history_page_size,
                oldest=oldest,
                cursor=cursor,
            ),
            notification.dedupe_key,
        )

    def _search(
        self, channel: str, page: Callable[[str | None], SlackResponse], dedupe_key: str
    ) -> Delivery | None:
        cursor: str | None = None
        for _ in range(self.history_pages):
            response = self._call("conversations.history", functools.partial(page, cursor), posts=False)
            for message in response.get("messages") or []:
                metadata = message.get("metadata") or {}
                payload = metadata.get("event_payload") or {}
                if metadata.get("event_type") == METADATA_EVENT and payload.get("dedupe_key") == dedupe_key:
                    return Delivery(
                        self.name, external_id=str(message["ts"]), destination=channel, status="found"
                    )
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        return None

    def _channel_id(self, target: str) -> str:
        """``C0123ABCD`` as is; ``#name`` through ``conversations.list`` (cached)."""
        if _CHANNEL_ID.match(target):
            return target
        if target in self._channel_ids:
            return self._channel_ids[target]
        wanted = target.lstrip("#")
        cursor: str | None = None
        for _ in range(50):  # 50 pages of 1000 channels: any real workspace
            response = self._call(
                "conversations.list",
                functools.partial(
                    self.client.conversations_list,
                    types="public_channel,private_channel",
                    exclude_archived=True,
                    limit=1000,
                    cursor=cursor,
                ),
                posts=False,
            )
            for channel in response.get("channels") or []:
                if channel.get("name") == wanted:
                    self._channel_ids[target] = str(channel["id"])
                    return str(channel["id"])
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        raise NotifierError(f"slack {target}: channel_not_found", permanent=True, code="channel_not_found")

    # -- errors --------------------------------------------------------------------------------

    def _call(self, method: str, call: Callable[[], SlackResponse], *, posts: bool) -> SlackResponse:
        """Run one Web API call; any failure becomes a :class:`NotifierError` naming the method and code."""
        try:
            return call()
        except SlackApiError as exc:
            status = exc.response.status_code
            code = str(exc.response.get("error") or f"http_{status}")
            headers = exc.response.headers or {}
            if code in PERMANENT_ERRORS:
                raise NotifierError(f"slack {method}: {code}", permanent=True, code=code) from None
            retry_after = _retry_after(headers)
            if status == 429 or code in ("ratelimited", "rate_limited"):
                raise NotifierError(
                    f"slack {method}: ratelimited",
                    permanent=False,
                    retry_after=retry_after or 1.0,
                    code=code,
                    rate_limited=True,
                ) from None
            maybe = posts and (status >= 500 or code in MAYBE_DONE_ERRORS)
            raise NotifierError(
                f"slack {method}: {code}",
                permanent=False,
                retry_after=retry_after,
                maybe_sent=maybe,
                code=code,
            ) from None
        except (URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            refused = isinstance(reason, ConnectionRefusedError)
            raise NotifierError(
                f"slack {method}: connection failed ({type(reason).__name__})",
                permanent=False,
                maybe_sent=posts and not refused,
                code="connection",
            ) from None
        except SlackClientError as exc:
            raise NotifierError(
                f"slack {method}: client error ({type(exc).__name__})", permanent=True
            ) from None


def _secret(name: str, environ: Mapping[str, str] | None) -> str | None:
    try:
        return read_secret(name, environ)
    except SecretUnreadable as exc:
        raise NotifierError(str(exc), permanent=True) from None
