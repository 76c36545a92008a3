"""Generic JSON webhooks (a Teams workflow, a ticketing system), signed with HMAC-SHA256.

Each named webhook (``[webhooks.<name>]``, addressed ``webhook:<name>``) receives a POST:

.. code-block:: text

    Content-Type: application/json
    X-Hiro-Timestamp: 1767225600                 (Unix seconds)
    X-Hiro-Delivery: 3f2a…                       (stable per dedupe key: an idempotency key)
    X-Hiro-Signature: sha256=<hex>               (HMAC-SHA256(secret, timestamp + "." + body))

    {"version": 1, "event": "created" | "updated", "kind": "alert", "audience": "coordinator",
     "dedupe_key": "…", "thread_key": "exam:42", "title": "…", "text": "…",
     "content": {…the PHI policy's view, times in ISO 8601 UTC…}, "previous": null | "…"}

How a receiver verifies (the secret is ``HIRO_WEBHOOK_<NAME>_SECRET`` on our side):

1. Reject if ``X-Hiro-Timestamp`` is more than 5 minutes from its own clock (replays).
2. Compute ``hmac.new(secret, timestamp.encode() + b"." + raw_body, sha256).hexdigest()``
   over the raw bytes received (before any JSON parsing) and compare it with the value after
   ``sha256=`` using a constant-time comparison (``hmac.compare_digest``).
3. Drop a request whose ``X-Hiro-Delivery`` it has already processed: a retry after a lost
   answer carries the same id.

Errors: 2xx is delivered; 408, 429 and 5xx (and timeouts, refused connections) are
transient, with ``Retry-After`` honoured; any other 4xx is permanent, and so are redirects
(we do not follow them: a moved endpoint is a configuration change).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import requests

from notifiers.base import Delivery, Notification, Notifier, NotifierError, Renderer
from notifiers.compose import jsonable, message_context, text_body
from notifiers.policy import PhiPolicy, content_view
from notifiers.settings import ChannelSettings, SecretUnreadable, read_secret

__all__ = ["WebhookNotifier", "WebhookTarget", "sign", "verify"]

SIGNATURE_HEADER = "X-Hiro-Signature"
TIMESTAMP_HEADER = "X-Hiro-Timestamp"
DELIVERY_HEADER = "X-Hiro-Delivery"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 with ``secret`` over ``timestamp + "." + body``."""
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, *, now: float, tolerance: float = 300
) -> bool:
    """What a receiver does: a fresh timestamp and a matching signature (constant-time compare)."""
    try:
        fresh = abs(now - float(timestamp)) <= tolerance
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


def env_name(name: str) -> str:
    """``teams-oncology`` -> ``TEAMS_ONCOLOGY`` (for ``HIRO_WEBHOOK_<NAME>_SECRET``)."""
    return re.sub(r"[^A-Z0-9]", "_", name.upper())


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """One named webhook: where it posts, its signing secret and what it may see."""

    url: str
    secret: str
    policy: PhiPolicy = PhiPolicy.NONE
    timeout_seconds: float = 10.0


class WebhookNotifier(Notifier):
    """Posts to ``webhook:<name>`` for the webhooks it was given."""

    name: ClassVar[str] = "webhook"
    # Teams, the receiver this is mostly for: "The message size limit is 28 KB"
    # (https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/add-incoming-webhook).
    # A larger body loses its `text` (the content stays), then digest entries from the end.
    max_body_bytes: ClassVar[int] = 28_000
    # Same page: more than 4 requests per second are throttled (429); the dispatcher paces by it.
    requests_per_second: ClassVar[float] = 4.0

    def __init__(self, targets: Mapping[str, WebhookTarget], *, renderer: Renderer) -> None:
        for name, target in targets.items():
            if target.policy is PhiPolicy.FULL:
                raise ValueError(f"webhook {name}: policy 'full' is not allowed on webhooks")
        self.targets = dict(targets)
        self.renderer = renderer
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "hiro-monitor"

    @classmethod
    def from_settings(
        cls, settings: ChannelSettings, *, renderer: Renderer, environ: Mapping[str, str] | None = None
    ) -> WebhookNotifier:
        targets: dict[str, WebhookTarget] = {}
        for name, hook in settings.webhooks.items():
            key = env_name(name)
            signing = _secret(f"HIRO_WEBHOOK_{key}_SECRET", environ)
            if not signing:
                raise NotifierError(f"webhook {name}: HIRO_WEBHOOK_{key}_SECRET is not set", permanent=True)
            url = _secret(f"HIRO_WEBHOOK_{key}_URL", environ) or hook.url
            targets[name] = WebhookTarget(url, signing, PhiPolicy(hook.phi_policy), hook.timeout_seconds)
        return cls(targets, renderer=renderer)

    def body(self, notification: Notification, previous: Delivery | None = None) -> bytes:
        """The JSON body for ``notification`` under its webhook's policy."""
        target = self._target(notification)
        context = message_context(self.renderer, notification, target.policy)
        document: dict[str, Any] = {  # the field order is the documented one
            "version": 1,
            "event": "updated" if previous else "created",
            "kind": notification.kind.value,
            "audience": notification.audience.value,
            "dedupe_key": notification.dedupe_key,
            "thread_key": notification.thread_key,
            "title": context["headline"],
            "text": text_body(self.renderer, notification, target.policy),
            "content": jsonable(content_view(notification.content, target.policy)),
            "previous": previous.external_id if previous else None,
        }
        return self._fit(document)

    def _fit(self, document: dict[str, Any]) -> bytes:
        """The JSON bytes, made to fit :attr:`max_body_bytes` by dropping ``text``, then digest entries."""

        def encode() -> bytes:
            return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

        body = encode()
        if len(body) > self.max_body_bytes:
            document["text"] = document["title"]
            body = encode()
        content = document["content"]
        entries = content.get("entries")
        while len(body) > self.max_body_bytes and entries:
            keep = len(entries) // 2
            content["entries_omitted"] = content.get("entries_omitted", 0) + len(entries) - keep
            entries = content["entries"] = entries[:keep]
            body = encode()
        return body

    def _target(self, notification: Notification) -> WebhookTarget:
        target = self.targets.get(notification.target)
        if target is None:
            raise NotifierError(
                f"webhook {notification.target!r} is not configured", permanent=True, code="unknown"
            )
        return target

    def send(self, notification: Notification) -> Delivery:
        return self._post(notification, None)

    def update(self, notification: Notification, previous: Delivery) -> Delivery:
        return self._post(notification, previous)

    def _post(self, notification: Notification, previous: Delivery | None) -> Delivery:
        target = self._target(notification)
        body = self.body(notification, previous)
        name = notification.target
        if len(body) > self.max_body_bytes:
            raise NotifierError(
                f"webhook {name}: body of {len(body)} bytes is too large", permanent=True, code="size"
            )
        delivery_id = hashlib.sha256(
            f"{notification.dedupe_key}|{previous.external_id if previous else ''}".encode()
        ).hexdigest()[:32]
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(target.secret, timestamp, body),
            DELIVERY_HEADER: delivery_id,
        }
        try:
            response = self.session.post(
                target.url, data=body, headers=headers, timeout=target.timeout_seconds, allow_redirects=False
            )
        except requests.ConnectTimeout:  # nothing was sent
            raise NotifierError(
                f"webhook {name}: connect timed out", permanent=False, code="timeout"
            ) from None
        except requests.ConnectionError as exc:
            refused = "refused" in str(exc).lower()
            raise NotifierError(
                f"webhook {name}: connection failed",
                permanent=False,
                maybe_sent=not refused,
                code="connection",
            ) from None
        except requests.Timeout:
            raise NotifierError(
                f"webhook {name}: timed out", permanent=False, maybe_sent=True, code="timeout"
            ) from None
        except requests.RequestException as exc:
            raise NotifierError(f"webhook {name}: {type(exc).__name__}", permanent=True) from None
        status = response.status_code
        response.close()
        if 200 <= status < 300:
            return Delivery(self.name, external_id=delivery_id, destination=name, status=f"HTTP {status}")
        code = f"http_{status}"
        retry_after = _retry_after(response.headers.get("Retry-After"))
        if status in (408, 429) or status >= 500:
            raise NotifierError(
                f"webhook {name}: HTTP {status}",
                permanent=False,
                retry_after=retry_after,
                maybe_sent=status >= 500,
                code=code,
                rate_limited=status == 429,
            )
        raise NotifierError(f"webhook {name}: HTTP {status}", permanent=True, code=code)

    def close(self) -> None:
        self.session.close()


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date: the dispatcher's own backoff applies


def _secret(name: str, environ: Mapping[str, str] | None) -> str | None:
    try:
        return read_secret(name, environ)
    except SecretUnreadable as exc:
        raise NotifierError(str(exc), permanent=True) from None
