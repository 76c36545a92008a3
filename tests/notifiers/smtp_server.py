"""A real SMTP server (aiosmtpd) on a free loopback port, plain, STARTTLS or implicit TLS.

Recipients steer the answer: ``nobody@…`` is refused with 550, ``busy@…`` with 451.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.tls import make_certificate

__all__ = ["PASSWORD", "USER", "Inbox", "SmtpServer", "make_certificate"]

USER, PASSWORD = "hiro", "s3cret-smtp"


@dataclass
class Inbox:
    """The aiosmtpd handler: keeps every accepted message."""

    received: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 No such user"
        if address.startswith("busy@"):
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted"


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


class SmtpServer(Controller):
    """aiosmtpd's Controller bound to port 0; ``port`` is the real one once started."""

    def __init__(self, inbox: Inbox, *, mode: str, cert: tuple[Path, Path] | None = None) -> None:
        kwargs: dict[str, Any] = {}
        if mode in ("starttls", "ssl"):
            assert cert is not None
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*cert)
            if mode == "starttls":
                kwargs.update(tls_context=context, require_starttls=True, authenticator=_authenticate)
                kwargs.update(auth_require_tls=True)
            else:
                kwargs.update(ssl_context=context)
        super().__init__(inbox, hostname="127.0.0.1", port=0, **kwargs)

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()
