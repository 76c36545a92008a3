"""What a channel is configured with: its settings section, and where its secrets come from.

The sections are the ``[slack]``, ``[email]`` and ``[webhooks.<name>]`` tables of the site's
settings file; :mod:`monitor.config` puts them into its ``Settings``. A notifier is given
any object that has them (:class:`ChannelSettings`), never the application's settings type:
the channels sit below the application and know nothing of it.

Secrets never live in the settings file: each comes from ``NAME`` in the environment or
from the file named by ``NAME_FILE`` (healthchecks' ``envsecret``; a container's mounted
secret).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ChannelSettings",
    "EmailSettings",
    "SecretUnreadable",
    "SlackSettings",
    "WebhookSettings",
    "read_secret",
]


class _ChannelSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlackSettings(_ChannelSection):
    """Slack Web API. The bot token comes from ``HIRO_SLACK_TOKEN`` (or ``HIRO_SLACK_TOKEN_FILE``).
    ``full`` is not a choice: MRNs and names never go to chat (DESIGN.md, invariant 5)."""

    enabled: bool = False
    base_url: str = "https://slack.com/api/"
    phi_policy: Literal["none", "limited"] = "none"
    timeout_seconds: int = Field(default=30, ge=1)


class EmailSettings(_ChannelSection):
    """SMTP submission. The password comes from ``HIRO_SMTP_PASSWORD`` (or ``_FILE``).
    ``phi_policy`` above ``none`` applies only to recipients in ``internal_domains``."""

    enabled: bool = False
    host: str = "localhost"
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "plain"] = "starttls"
    username: str = ""
    from_address: str = "hiro-monitor@localhost"
    ca_file: str = ""
    timeout_seconds: float = Field(default=30.0, gt=0)
    phi_policy: Literal["none", "limited", "full"] = "none"
    internal_domains: tuple[str, ...] = ()


class WebhookSettings(_ChannelSection):
    """One named JSON webhook; its signing secret comes from ``HIRO_WEBHOOK_<NAME>_SECRET``."""

    url: str
    phi_policy: Literal["none", "limited"] = "none"
    timeout_seconds: float = Field(default=10.0, gt=0)


class ChannelSettings(Protocol):
    """The sections the notifiers read (``monitor.config.Settings`` has them)."""

    @property
    def slack(self) -> SlackSettings: ...

    @property
    def email(self) -> EmailSettings: ...

    @property
    def webhooks(self) -> Mapping[str, WebhookSettings]: ...


class SecretUnreadable(Exception):
    """``NAME_FILE`` names a file that cannot be read (the message names the variable, not the secret)."""


def read_secret(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """A secret from ``NAME`` or from the file named by ``NAME_FILE`` (trailing newline
    dropped); None when neither is set. Raises :class:`SecretUnreadable`."""
    env = os.environ if environ is None else environ
    if env.get(name):
        return env[name]
    file_name = env.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise SecretUnreadable(f"{name}_FILE: cannot read {file_name}: {exc.strerror}") from exc
    return None
