"""The console channel: messages printed for the demo and for development.

``console:`` and ``console:stdout`` write to standard output, ``console:stderr`` to standard
error, ``console:log`` to the ``notifiers.console`` logger. The text is the same plain-text
body email uses, under this channel's PHI policy; the log target only ever uses ``none``
(logs carry no PHI: DESIGN.md, invariant 5).
"""

from __future__ import annotations

import hashlib
import logging
import sys
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, TextIO

from monitor.render import Renderer
from notifiers.base import Delivery, Notification, Notifier, NotifierError
from notifiers.compose import text_body
from notifiers.policy import PhiPolicy

if TYPE_CHECKING:
    from monitor.config import Settings

__all__ = ["ConsoleNotifier"]

log = logging.getLogger("notifiers.console")


class ConsoleNotifier(Notifier):
    """Writes each message to a stream (``stream`` for every target when given) or to the log."""

    name: ClassVar[str] = "console"

    def __init__(
        self, *, renderer: Renderer, policy: PhiPolicy = PhiPolicy.NONE, stream: TextIO | None = None
    ) -> None:
        self.renderer = renderer
        self.policy = policy
        self.stream = stream
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, *, renderer: Renderer, environ: Mapping[str, str] | None = None
    ) -> ConsoleNotifier:
        return cls(renderer=renderer)

    def _write(self, notification: Notification, banner: str) -> Delivery:
        target = notification.target or "stdout"
        policy = PhiPolicy.NONE if target == "log" and self.stream is None else self.policy
        text = text_body(self.renderer, notification, policy)
        if target == "log" and self.stream is None:
            log.info("%s %s\n%s", banner, notification.kind.value, text.rstrip())
        else:
            stream = self.stream or {"stdout": sys.stdout, "stderr": sys.stderr}.get(target)
            if stream is None:
                raise NotifierError(f"console target {target!r}: use stdout, stderr or log", permanent=True)
            with self._lock:
                stream.write(
                    f"----- {banner} {notification.kind.value} ({notification.audience.value}) -----\n"
                )
                stream.write(text if text.endswith("\n") else text + "\n")
                stream.flush()
        reference = hashlib.sha256(notification.dedupe_key.encode("utf-8")).hexdigest()[:16]
        return Delivery(self.name, external_id=f"console-{reference}", destination=target, status="written")

    def send(self, notification: Notification) -> Delivery:
        return self._write(notification, "hiro-monitor")

    def update(self, notification: Notification, previous: Delivery) -> Delivery:
        self._write(notification, f"hiro-monitor update of {previous.external_id}:")
        return previous
