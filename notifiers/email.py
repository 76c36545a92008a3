"""Email with the standard library: multipart text + HTML from templates, over SMTP.

- ``security``: ``"starttls"`` (submission, port 587: plain connection upgraded with
  STARTTLS before login), ``"ssl"`` (implicit TLS, port 465) or ``"plain"`` (no encryption:
  a relay on localhost only). Certificates are verified (``ca_file`` or the system's CAs).
- The Message-ID is derived from the dedupe key (``<sha256…@from-domain>``): a message sent
  again after a crash between sending and bookkeeping carries the same Message-ID, which
  mail stores and clients use to drop the copy. SMTP cannot be asked whether a message was
  delivered, so :meth:`find_existing` answers None.
- Messages about one exam share a ``References`` header built from the thread key, so mail
  clients thread them; an update is a follow-up (``In-Reply-To`` the earlier message).
- PHI: the configured policy applies only to recipients in ``internal_domains``; anyone
  else gets ``none``.

Errors: SMTP 5xx replies (and TLS verification failures, missing STARTTLS) are permanent;
4xx replies, timeouts and lost connections are transient. A connection lost while the
message was being transmitted is marked ``maybe_sent``.
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate
from typing import ClassVar, Literal

from notifiers.base import Delivery, Notification, Notifier, NotifierError, Renderer
from notifiers.compose import html_body, message_context, text_body
from notifiers.policy import PhiPolicy
from notifiers.settings import ChannelSettings, SecretUnreadable, read_secret

__all__ = ["EmailNotifier"]

log = logging.getLogger("notifiers.email")

Security = Literal["starttls", "ssl", "plain"]


def _digest(text: str, length: int = 32) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


class EmailNotifier(Notifier):
    """Sends ``email:someone@example.org`` through one SMTP server, one connection per message."""

    name: ClassVar[str] = "email"
    # RFC 5321 section 4.5.3.1.8: a server must accept at least 100 recipients; we send one per message.
    max_recipients: ClassVar[int] = 1
    # RFC 5322 section 2.1.1: lines at most 998 characters. EmailMessage encodes bodies
    # (quoted-printable/base64) and folds headers, so long template lines are safe.
    max_line_length: ClassVar[int] = 998

    def __init__(
        self,
        *,
        host: str,
        port: int,
        from_address: str,
        renderer: Renderer,
        security: Security = "starttls",
        username: str = "",
        password: str | None = None,
        policy: PhiPolicy = PhiPolicy.NONE,
        internal_domains: Sequence[str] = (),
        timeout_seconds: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port, self.security = host, port, security
        self.from_address = from_address
        self.renderer = renderer
        self.username, self.password = username, password
        self.policy = policy
        self.internal_domains = frozenset(domain.strip().lower().lstrip("@") for domain in internal_domains)
        self.timeout = timeout_seconds
        self.tls_context = tls_context or ssl.create_default_context()
        self.domain = from_address.rpartition("@")[2] or "localhost"
        if policy is not PhiPolicy.NONE and not self.internal_domains:
            log.warning("email: phi_policy %s has no effect without internal_domains", policy.value)

    @classmethod
    def from_settings(
        cls, settings: ChannelSettings, *, renderer: Renderer, environ: Mapping[str, str] | None = None
    ) -> EmailNotifier:
        email = settings.email
        if not email.enabled:
            raise NotifierError("email is disabled in the settings ([email] enabled)", permanent=True)
        context = ssl.create_default_context(cafile=email.ca_file or None)
        return cls(
            host=email.host,
            port=email.port,
            from_address=email.from_address,
            renderer=renderer,
            security=email.security,
            username=email.username,
            password=_secret("HIRO_SMTP_PASSWORD", environ),
            policy=PhiPolicy(email.phi_policy),
            internal_domains=email.internal_domains,
            timeout_seconds=email.timeout_seconds,
            tls_context=context,
        )

    def policy_for(self, recipient: str) -> PhiPolicy:
        """The configured policy for an internal recipient, ``none`` for everyone else."""
        domain = recipient.rpartition("@")[2].strip().lower()
        return self.policy if domain in self.internal_domains else PhiPolicy.NONE

    def message_id(self, key: str) -> str:
        return f"<{_digest(key)}@{self.domain}>"

    def compose(self, notification: Notification, previous: Delivery | None = None) -> EmailMessage:
        """The message for ``notification`` (a follow-up to ``previous`` when given), not sent."""
        recipient = notification.target
        if "@" not in recipient or any(c in recipient for c in "\r\n,;<>"):
            raise NotifierError("email: the address is not a single mailbox", permanent=True, code="address")
        policy = self.policy_for(recipient)
        subject = str(message_context(self.renderer, notification, policy)["headline"])
        text = text_body(self.renderer, notification, policy)
        html = html_body(self.renderer, notification, policy)
        message = EmailMessage()
        message["From"] = self.from_address
        message["To"] = recipient
        message["Date"] = formatdate(localtime=False)
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a robot
        references: list[str] = []
        if notification.thread_key:
            references.append(self.message_id(f"thread|{notification.thread_key}|{recipient}"))
        if previous is None:
            message["Subject"] = subject
            message["Message-ID"] = self.message_id(notification.dedupe_key)
        else:
            message["Subject"] = f"Update: {subject}"
            message["Message-ID"] = self.message_id(f"{notification.dedupe_key}|update|{_digest(text)}")
            message["In-Reply-To"] = previous.external_id
            references.append(previous.external_id)
        if references:
            message["References"] = " ".join(references)
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        return message

    def send(self, notification: Notification) -> Delivery:
        return self._submit(self.compose(notification), notification.target)

    def update(self, notification: Notification, previous: Delivery) -> Delivery:
        return self._submit(self.compose(notification, previous), notification.target)

    # -- SMTP ----------------------------------------------------------------------------------

    def _connect(self) -> smtplib.SMTP:
        if self.security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self.tls_context
            )
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            smtp.ehlo()
            if self.security == "starttls":
                smtp.starttls(context=self.tls_context)
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _submit(self, message: EmailMessage, recipient: str) -> Delivery:
        transmitting = False
        try:
            smtp = self._connect()
            try:
                transmitting = True
                smtp.send_message(message, from_addr=self.from_address, to_addrs=[recipient])
                transmitting = False
            finally:
                try:
                    smtp.quit()
                except (smtplib.SMTPException, OSError):
                    smtp.close()
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            worst = max(codes) if codes else 550
            raise NotifierError(
                f"smtp: recipient refused ({worst})", permanent=worst >= 500, code=str(worst)
            ) from None
        except smtplib.SMTPResponseException as exc:  # sender refused, data, auth, helo, connect
            code = exc.smtp_code
            raise NotifierError(
                f"smtp: {type(exc).__name__} ({code})",
                permanent=code >= 500,
                maybe_sent=transmitting and code < 400,
                code=str(code),
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise NotifierError(
                "smtp: the server does not support STARTTLS or AUTH", permanent=True
            ) from None
        except ssl.SSLCertVerificationError:
            raise NotifierError("smtp: the server's certificate did not verify", permanent=True) from None
        except (smtplib.SMTPException, OSError) as exc:  # disconnects, timeouts, refused connections
            raise NotifierError(
                f"smtp: {type(exc).__name__}", permanent=False, maybe_sent=transmitting, code="connection"
            ) from None
        return Delivery(
            self.name, external_id=str(message["Message-ID"]), destination=recipient, status="250"
        )


def _secret(name: str, environ: Mapping[str, str] | None) -> str | None:
    try:
        return read_secret(name, environ)
    except SecretUnreadable as exc:
        raise NotifierError(str(exc), permanent=True) from None
