"""Email through smtplib against a real SMTP server (aiosmtpd) on a free loopback port."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path

import pytest

from monitor.config import Settings
from monitor.render import Renderer
from notifiers import Delivery, MessageKind, NotifierError, PhiPolicy, notifier_for
from notifiers.email import EmailNotifier
from tests.notifiers.conftest import INITIALS, MRN, NAME, MakeNotification, assert_no_phi
from tests.notifiers.smtp_server import PASSWORD, USER, Inbox, SmtpServer, make_certificate

TEAM = "onc2101-team@hospital.example.org"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


def running(inbox: Inbox, mode: str, certificate: tuple[Path, Path] | None = None) -> Iterator[SmtpServer]:
    server = SmtpServer(inbox, mode=mode, cert=certificate)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def plain_server(inbox: Inbox) -> Iterator[SmtpServer]:
    yield from running(inbox, "plain")


def plain_notifier(server: SmtpServer, renderer: Renderer, **kwargs: object) -> EmailNotifier:
    return EmailNotifier(
        host="127.0.0.1",
        port=server.port,
        security="plain",
        from_address="hiro-monitor@hospital.example.org",
        renderer=renderer,
        **kwargs,  # type: ignore[arg-type]
    )


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def test_alert_arrives_as_multipart_text_and_html_with_a_message_id(
    plain_server: SmtpServer, inbox: Inbox, renderer: Renderer, make_notification: MakeNotification
) -> None:
    notifier = plain_notifier(plain_server, renderer)
    delivery = notifier.send(make_notification(f"email:{TEAM}"))
    [(sender, recipients, message)] = inbox.received
    assert (sender, recipients) == ("hiro-monitor@hospital.example.org", [TEAM])
    assert message.get_content_type() == "multipart/alternative"
    assert message["Subject"].startswith("[ONC-2101] Wrong orderable · subject 014 · Week 12 restaging")
    assert message["Auto-Submitted"] == "auto-generated"
    assert delivery == Delivery("email", external_id=message["Message-ID"], destination=TEAM, status="250")
    assert delivery.external_id.endswith("@hospital.example.org>")
    text, html = parts(message)
    assert "Next step: Ask scheduling to change the order to IMG1234" in text
    assert '<a href="https://hiro.example.org/exams/42"' in html


def test_an_external_recipient_gets_no_phi_even_under_the_full_policy(
    plain_server: SmtpServer, inbox: Inbox, renderer: Renderer, make_notification: MakeNotification
) -> None:
    notifier = plain_notifier(
        plain_server, renderer, policy=PhiPolicy.FULL, internal_domains=("hospital.example.org",)
    )
    notifier.send(make_notification("email:cro-monitor@sponsor.example.com"))
    [(_, _, message)] = inbox.received
    assert_no_phi(message.as_string())
    text, _ = parts(message)
    assert "Patient identifiers are not shown on this channel" in text


def test_the_full_policy_shows_mrn_and_name_to_an_internal_recipient(
    plain_server: SmtpServer, inbox: Inbox, renderer: Renderer, make_notification: MakeNotification
) -> None:
    notifier = plain_notifier(
        plain_server, renderer, policy=PhiPolicy.FULL, internal_domains=("hospital.example.org",)
    )
    notifier.send(make_notification(f"email:{TEAM}"))
    [(_, _, message)] = inbox.received
    text, html = parts(message)
    assert f"MRN:        {MRN}" in text and NAME in text and "born 1958-11-23" in text
    assert f"<td>{MRN}</td>" in html


def test_the_limited_policy_shows_initials_only(
    plain_server: SmtpServer, inbox: Inbox, renderer: Renderer, make_notification: MakeNotification
) -> None:
    notifier = plain_notifier(
        plain_server, renderer, policy=PhiPolicy.LIMITED, internal_domains=("hospital.example.org",)
    )
    notifier.send(make_notification(f"email:{TEAM}"))
    [(_, _, message)] = inbox.received
    text, _ = parts(message)
    assert f"Initials:   {INITIALS}" in text
    assert_no_phi(message.as_string(), initials_allowed=True)


def test_the_instruction_sheet_is_the_html_part(
    plain_server: SmtpServer, inbox: Inbox, renderer: Renderer, make_notification: MakeNotification
) -> None:
    notifier = plain_notifier(plain_server, renderer)
    notifier.send(make_notification("email:ct3@hospital.example.org", MessageKind.INSTRUCTIONS))
    [(_, _, message)] = inbox.received
    text, html = parts(message)
    assert "<h2>Required parameters</h2>" in html and "@page" in html
    assert "REQUIRED PARAMETERS" in text
    assert message["Subject"].startswith("[ONC-2101] Scan instructions · Week 12 restaging · CT3")


def test_a_resend_after_a_crash_carries_the_same_message_id(
    plain_server: SmtpServer, inbox: Inbox, renderer: Renderer, make_notification: MakeNotification
) -> None:
    notification = make_notification(f"email:{TEAM}")
    first = plain_notifier(plain_server, renderer).send(notification)
    second = plain_notifier(plain_server, renderer).send(notification)
    assert first.external_id == second.external_id
    other = plain_notifier(plain_server, renderer).send(replace(notification, dedupe_key="another"))
    assert other.external_id != first.external_id
    assert plain_notifier(plain_server, renderer).find_existing(notification) is None  # SMTP cannot tell


def test_an_update_is_a_follow_up_in_the_same_thread(
    plain_server: SmtpServer, inbox: Inbox, renderer: Renderer, make_notification: MakeNotification
) -> None:
    notifier = plain_notifier(plain_server, renderer)
    notification = make_notification(f"email:{TEAM}", MessageKind.BOOKING)
    first = notifier.send(notification)
    follow = notifier.update(notification, first)
    (_, _, original), (_, _, update) = inbox.received
    assert update["In-Reply-To"] == first.external_id
    assert first.external_id in update["References"]
    assert original["References"].split()[0] == update["References"].split()[0]  # the exam's thread
    assert update["Subject"].startswith("Update: [ONC-2101]")
    assert follow.external_id != first.external_id


def test_starttls_with_login_and_a_verified_certificate(
    inbox: Inbox,
    certificate: tuple[Path, Path],
    renderer: Renderer,
    make_notification: MakeNotification,
) -> None:
    for server in running(inbox, "starttls", certificate):
        settings = Settings.model_validate(
            {
                "email": {
                    "enabled": True,
                    "host": "127.0.0.1",
                    "port": server.port,
                    "security": "starttls",
                    "username": USER,
                    "from_address": "hiro-monitor@hospital.example.org",
                    "ca_file": str(certificate[0]),
                }
            }
        )
        notifier = notifier_for(
            f"email:{TEAM}", settings, renderer=renderer, environ={"HIRO_SMTP_PASSWORD": PASSWORD}
        )
        notifier.send(make_notification(f"email:{TEAM}"))
        assert len(inbox.received) == 1
        wrong = notifier_for(
            f"email:{TEAM}", settings, renderer=renderer, environ={"HIRO_SMTP_PASSWORD": "nope"}
        )
        with pytest.raises(NotifierError) as caught:
            wrong.send(make_notification(f"email:{TEAM}"))
        assert caught.value.permanent and caught.value.code == "535"
        assert "nope" not in str(caught.value)


def test_starttls_refuses_a_certificate_it_cannot_verify(
    inbox: Inbox, certificate: tuple[Path, Path], renderer: Renderer, make_notification: MakeNotification
) -> None:
    for server in running(inbox, "starttls", certificate):
        notifier = EmailNotifier(
            host="127.0.0.1",
            port=server.port,
            from_address="hiro@hospital.example.org",
            renderer=renderer,
            tls_context=ssl.create_default_context(),  # the system's CAs do not know it
        )
        with pytest.raises(NotifierError, match="certificate") as caught:
            notifier.send(make_notification(f"email:{TEAM}"))
        assert caught.value.permanent and inbox.received == []


def test_implicit_tls(
    inbox: Inbox, certificate: tuple[Path, Path], renderer: Renderer, make_notification: MakeNotification
) -> None:
    for server in running(inbox, "ssl", certificate):
        notifier = EmailNotifier(
            host="127.0.0.1",
            port=server.port,
            security="ssl",
            from_address="hiro@hospital.example.org",
            renderer=renderer,
            tls_context=ssl.create_default_context(cafile=str(certificate[0])),
        )
        notifier.send(make_notification(f"email:{TEAM}"))
        assert len(inbox.received) == 1


def test_a_5xx_refusal_is_permanent_and_a_4xx_one_transient(
    plain_server: SmtpServer, renderer: Renderer, make_notification: MakeNotification
) -> None:
    notifier = plain_notifier(plain_server, renderer)
    with pytest.raises(NotifierError) as refused:
        notifier.send(make_notification("email:nobody@hospital.example.org"))
    assert refused.value.permanent and refused.value.code == "550"
    with pytest.raises(NotifierError) as later:
        notifier.send(make_notification("email:busy@hospital.example.org"))
    assert not later.value.permanent and later.value.code == "451" and not later.value.maybe_sent


def test_an_unreachable_server_is_transient(renderer: Renderer, make_notification: MakeNotification) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    notifier = EmailNotifier(
        host="127.0.0.1",
        port=port,
        security="plain",
        from_address="h@x.org",
        renderer=renderer,
        timeout_seconds=2,
    )
    with pytest.raises(NotifierError) as caught:
        notifier.send(make_notification(f"email:{TEAM}"))
    assert not caught.value.permanent and not caught.value.maybe_sent


def test_an_address_that_is_not_one_mailbox_is_refused_before_connecting(
    renderer: Renderer, make_notification: MakeNotification
) -> None:
    notifier = EmailNotifier(host="127.0.0.1", port=1, from_address="h@x.org", renderer=renderer)
    for address in ("email:team", "email:a@x.org, b@y.org", "email:a@x.org\r\nBcc: c@z.org"):
        with pytest.raises(NotifierError) as caught:
            notifier.send(make_notification(address))
        assert caught.value.permanent
