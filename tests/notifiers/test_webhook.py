"""JSON webhooks against a local receiver that verifies the HMAC signature as documented."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from monitor.config import Settings
from monitor.render import Renderer
from notifiers import MessageKind, NotifierError, PhiPolicy, notifier_for
from notifiers.webhook import WebhookNotifier, WebhookTarget, sign, verify
from tests.notifiers.conftest import (
    INITIALS,
    MakeNotification,
    assert_no_phi,
    content_for,
    digest_content,
)

SECRET = "whsec-test-0123456789"


@dataclass
class Receiver:
    """Verifies each request like a real receiver would; answers from ``statuses`` when queued."""

    secret: str = SECRET
    accepted: list[dict[str, Any]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    rejected: int = 0
    statuses: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    seen_deliveries: set[str] = field(default_factory=set)
    duplicates: int = 0
    delay: float = 0.0


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers["Content-Length"]))
        receiver.raw.append(body)
        time.sleep(receiver.delay)
        timestamp = self.headers.get("X-Hiro-Timestamp", "")
        signature = self.headers.get("X-Hiro-Signature", "")
        status, headers = receiver.statuses.pop(0) if receiver.statuses else (202, {})
        now = time.time()  # real clock: a receiver checks the timestamp against its own time
        if not verify(receiver.secret, timestamp, body, signature, now=now):
            receiver.rejected += 1
            status = 401
        elif status < 300:
            delivery = self.headers["X-Hiro-Delivery"]
            if delivery in receiver.seen_deliveries:
                receiver.duplicates += 1
            receiver.seen_deliveries.add(delivery)
            receiver.accepted.append(json.loads(body))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, receiver: Receiver) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.receiver = receiver


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()
    server = _Server(receiver)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield receiver, f"http://127.0.0.1:{server.server_address[1]}/hooks/hiro"
    server.shutdown()
    server.server_close()


def webhook(
    url: str, renderer: Renderer, policy: PhiPolicy = PhiPolicy.NONE, **kwargs: Any
) -> WebhookNotifier:
    return WebhookNotifier({"teams": WebhookTarget(url, SECRET, policy, **kwargs)}, renderer=renderer)


def test_receiver_verifies_the_signature_and_gets_the_documented_json(
    receiver: tuple[Receiver, str], renderer: Renderer, make_notification: MakeNotification
) -> None:
    inbox, url = receiver
    notification = make_notification("webhook:teams")
    delivery = webhook(url, renderer).send(notification)
    [document] = inbox.accepted
    assert inbox.rejected == 0 and delivery.status == "HTTP 202" and delivery.destination == "teams"
    documented = "version event kind audience dedupe_key thread_key title text content previous"
    assert list(document) == documented.split()
    assert document["event"] == "created" and document["dedupe_key"] == notification.dedupe_key
    assert document["content"]["exam_start"] == "2026-03-03T14:30:00+00:00"
    assert document["content"]["window_end"] == "2026-03-09"
    assert document["title"].startswith("[ONC-2101] Wrong orderable")


@pytest.mark.parametrize("kind", list(MessageKind))
def test_a_none_webhook_never_sees_mrn_name_or_birth_date(
    receiver: tuple[Receiver, str], renderer: Renderer, make_notification: MakeNotification, kind: MessageKind
) -> None:
    inbox, url = receiver
    content = content_for(kind)
    notifier = webhook(url, renderer)
    delivery = notifier.send(make_notification("webhook:teams", kind, content=content))
    notifier.update(make_notification("webhook:teams", kind, content=content), delivery)
    assert len(inbox.raw) == 2
    for body in inbox.raw:
        assert_no_phi(body)


def test_a_limited_webhook_shows_initials_only(
    receiver: tuple[Receiver, str], renderer: Renderer, make_notification: MakeNotification
) -> None:
    inbox, url = receiver
    webhook(url, renderer, PhiPolicy.LIMITED).send(make_notification("webhook:teams"))
    assert inbox.accepted[0]["content"]["patient_initials"] == INITIALS
    assert_no_phi(inbox.raw[0], initials_allowed=True)


def test_a_forged_or_stale_signature_does_not_verify() -> None:
    body, now = b'{"x":1}', 1_795_000_000.0  # a fixed moment (2026-11-18): verify() is told the time
    good = sign(SECRET, str(int(now)), body)
    assert verify(SECRET, str(int(now)), body, good, now=now)
    assert not verify("other-secret", str(int(now)), body, good, now=now)
    assert not verify(SECRET, str(int(now)), body + b" ", good, now=now)
    assert not verify(SECRET, str(int(now) - 600), body, sign(SECRET, str(int(now) - 600), body), now=now)
    assert not verify(SECRET, "yesterday", body, good, now=now)


def test_a_resend_carries_the_same_delivery_id_so_the_receiver_can_drop_it(
    receiver: tuple[Receiver, str], renderer: Renderer, make_notification: MakeNotification
) -> None:
    inbox, url = receiver
    notification = make_notification("webhook:teams")
    first = webhook(url, renderer).send(notification)
    second = webhook(url, renderer).send(notification)
    assert first.external_id == second.external_id and inbox.duplicates == 1
    update = webhook(url, renderer).update(notification, first)
    assert update.external_id != first.external_id
    assert inbox.accepted[-1]["event"] == "updated" and inbox.accepted[-1]["previous"] == first.external_id


@pytest.mark.parametrize(
    ("status", "permanent", "retry_after"),
    [(400, True, None), (401, True, None), (404, True, None), (410, True, None), (301, True, None),
     (408, False, None), (429, False, 7.0), (500, False, None), (503, False, 7.0)],
)  # fmt: skip
def test_status_codes_map_to_permanent_or_transient(
    receiver: tuple[Receiver, str],
    renderer: Renderer,
    make_notification: MakeNotification,
    status: int,
    permanent: bool,
    retry_after: float | None,
) -> None:
    inbox, url = receiver
    headers = {"Retry-After": "7"} if retry_after else {}
    if status == 301:
        headers["Location"] = "http://example.org/elsewhere"
    inbox.statuses.append((status, headers))
    with pytest.raises(NotifierError) as caught:
        webhook(url, renderer).send(make_notification("webhook:teams"))
    error = caught.value
    assert (error.permanent, error.retry_after, error.code) == (permanent, retry_after, f"http_{status}")
    assert_no_phi(str(error))


def test_a_timeout_is_transient_and_may_have_been_delivered(
    receiver: tuple[Receiver, str], renderer: Renderer, make_notification: MakeNotification
) -> None:
    inbox, url = receiver
    inbox.delay = 1.0
    with pytest.raises(NotifierError) as caught:
        webhook(url, renderer, timeout_seconds=0.2).send(make_notification("webhook:teams"))
    assert not caught.value.permanent and caught.value.maybe_sent


def test_an_oversized_digest_drops_its_text_then_entries_to_fit(
    receiver: tuple[Receiver, str], renderer: Renderer, make_notification: MakeNotification
) -> None:
    inbox, url = receiver
    webhook(url, renderer).send(
        make_notification("webhook:teams", MessageKind.DIGEST, content=digest_content(60))
    )
    assert len(inbox.raw[0]) <= WebhookNotifier.max_body_bytes
    content = inbox.accepted[0]["content"]
    assert content["entries_omitted"] > 0 and len(content["entries"]) + content["entries_omitted"] == 60


def test_webhooks_come_from_settings_with_secrets_from_the_environment(
    receiver: tuple[Receiver, str], renderer: Renderer, make_notification: MakeNotification
) -> None:
    inbox, url = receiver
    settings = Settings.model_validate({"webhooks": {"onc-teams": {"url": "http://unused.invalid/"}}})
    environ = {"HIRO_WEBHOOK_ONC_TEAMS_SECRET": SECRET, "HIRO_WEBHOOK_ONC_TEAMS_URL": url}
    notifier = notifier_for("webhook:onc-teams", settings, renderer=renderer, environ=environ)
    notifier.send(make_notification("webhook:onc-teams"))
    assert len(inbox.accepted) == 1
    with pytest.raises(NotifierError, match="HIRO_WEBHOOK_ONC_TEAMS_SECRET is not set") as caught:
        notifier_for("webhook:onc-teams", settings, renderer=renderer, environ={})
    assert caught.value.permanent
    with pytest.raises(NotifierError, match="not configured"):
        notifier_for("webhook:other", settings, renderer=renderer, environ=environ)


def test_webhooks_refuse_the_full_policy(renderer: Renderer) -> None:
    with pytest.raises(ValueError, match="not allowed"):
        webhook("http://x", renderer, PhiPolicy.FULL)
