"""Channels: one short module per channel behind :class:`notifiers.base.Notifier`.

``CHANNELS`` maps an address's channel name to its class, imported only when first used
(healthchecks' TRANSPORTS): a site without Slack never imports slack-sdk. Addresses are
``"slack:#ct-techs"``, ``"email:team@example.org"``, ``"webhook:<name>"``, ``"console:"``.

For the outbox dispatcher::

    notifier = notifier_for(row.address, settings)       # keep one per channel and thread
    delivery = notifier.send(notification)                # in a worker thread: it blocks
    # NotifierError: e.permanent -> failed; else retry after max(backoff, e.retry_after);
    # e.maybe_sent (or a row found in `sending` after a crash) -> notifier.find_existing()
    # first when notifier.can_find_existing.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from notifiers.base import (
    AlertContent,
    Content,
    Delivery,
    DigestContent,
    MessageKind,
    Notification,
    Notifier,
    NotifierError,
    OperationsContent,
    Renderer,
    parse_address,
)
from notifiers.policy import PhiPolicy
from notifiers.settings import ChannelSettings

__all__ = [
    "CHANNELS",
    "AlertContent",
    "Content",
    "Delivery",
    "DigestContent",
    "MessageKind",
    "Notification",
    "Notifier",
    "NotifierError",
    "OperationsContent",
    "PhiPolicy",
    "Renderer",
    "notifier_class",
    "notifier_for",
    "parse_address",
]

CHANNELS: dict[str, str] = {
    "slack": "notifiers.slack:SlackNotifier",
    "email": "notifiers.email:EmailNotifier",
    "webhook": "notifiers.webhook:WebhookNotifier",
    "console": "notifiers.console:ConsoleNotifier",
}


def notifier_class(channel: str) -> type[Notifier]:
    """The class registered for ``channel``; a permanent :class:`NotifierError` for an unknown one."""
    try:
        module_name, _, class_name = CHANNELS[channel].partition(":")
    except KeyError:
        known = ", ".join(sorted(CHANNELS))
        raise NotifierError(f"unknown channel {channel!r} (known: {known})", permanent=True) from None
    cls: type[Notifier] = getattr(importlib.import_module(module_name), class_name)
    return cls


def notifier_for(
    address: str,
    settings: ChannelSettings,
    *,
    renderer: Renderer,
    environ: Mapping[str, str] | None = None,
) -> Notifier:
    """A notifier for ``address``'s channel, configured from ``settings`` (the channel
    sections) and the environment, writing with ``renderer``.

    The notifier serves every target of its channel (the target is read from each
    notification), so callers keep one per channel. Raises a permanent
    :class:`NotifierError` for a malformed address, an unknown channel, a disabled one, an
    unknown webhook name or a missing secret.
    """
    try:
        channel, target = parse_address(address)
    except ValueError as exc:
        raise NotifierError(str(exc), permanent=True) from None
    if channel == "webhook" and target not in settings.webhooks:
        raise NotifierError(f"webhook {target!r} is not configured ([webhooks.{target}])", permanent=True)
    return notifier_class(channel).from_settings(settings, renderer=renderer, environ=environ)
