"""The console channel: messages printed for the demo and for development.

``console:`` and ``console:stdout`` write to standard output, ``console:stderr`` to standard
error, ``console:log`` to the ``notifiers.console`` logger. The text is the same plain-text
body email uses, under this channel's PHI policy; the log target only ever uses ``none``
(logs carry no PHI: DESIGN.md, invariant 5).

``brief=True`` (the demo, which sends every channel's messages here) prints a few lines per
message instead (``templates/console/brief.txt``) under a banner that says what it is, for
whom and where it would have gone, and when it was due::

    ===== COORDINATOR REMINDER for coordinators -> email:onc2101-team@example.org
      at Tue 3 Mar 2026 09:30 EST (simulated), due Tue 3 Mar 2026 09:30 EST
    [ONC-2101] Upcoming research scan · subject 2101-001 · Week 12 restaging ·
        Wed 4 Mar 2026 09:30 EST · CT3 / HOSP

``simulated`` is the demo's faster clock, when it runs faster than real time: each block
then says the simulated time it was printed at. A message already printed word for word
for another address (the same alert to the coordinators' email and Slack) is one short
line. Brief output is folded at ``width`` columns (80: a terminal), a headline between its
`` · `` parts and a labelled line under its value.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
import textwrap
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import ClassVar, TextIO

import jinja2

from notifiers.base import Delivery, MessageKind, Notification, Notifier, NotifierError, Renderer
from notifiers.compose import message_context, text_body
from notifiers.policy import PhiPolicy
from notifiers.settings import ChannelSettings

__all__ = ["BANNERS", "ConsoleNotifier", "brief_body", "fold"]

log = logging.getLogger("notifiers.console")

BANNERS: dict[MessageKind, str] = {
    MessageKind.ALERT: "COORDINATOR ALERT",
    MessageKind.REMINDER: "COORDINATOR REMINDER",
    MessageKind.BOOKING: "BOOKING NOTICE",
    MessageKind.DIGEST: "DAILY DIGEST",
    MessageKind.INSTRUCTIONS: "TECHNOLOGIST SHEET",
    MessageKind.OPERATIONS: "OPERATIONS",
}

_REMEMBERED = 4096  # brief bodies kept to recognise a copy for another address
_LABEL = re.compile(r"^ +[A-Z][A-Za-z ]{0,11}: +(?=\S)")  # "  Next step: ", "  Do:        "
_KEEP = "\x00"  # stands for a space that must not break a line (no text field holds a NUL)


def fold(line: str, width: int) -> list[str]:
    """``line`` as lines of at most ``width`` columns where it has spaces to break at.

    A labelled line (``  What:      ...``) continues under its value; any other line four
    columns in from its own indent. In a line made of `` · `` parts (a headline), a part
    that fits on a line is not broken: the line breaks after a `` · ``.
    """
    if len(line) <= width:
        return [line]
    label = _LABEL.match(line)
    prefix = label.group(0) if label else line[: len(line) - len(line.lstrip(" "))]
    indent = " " * (len(prefix) if label else len(prefix) + 4)
    text = line[len(prefix) :]
    room = width - len(indent) - 2  # a part and its " ·"
    parts = text.split(" · ")
    if len(parts) > 1:
        text = f"{_KEEP}· ".join(part.replace(" ", _KEEP) if len(part) <= room else part for part in parts)
    lines = textwrap.wrap(
        text,
        width,
        initial_indent=prefix,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return [folded.replace(_KEEP, " ") for folded in lines] or [line]


def brief_body(renderer: Renderer, notification: Notification, policy: PhiPolicy) -> str:
    """The few lines ``templates/console/brief.txt`` makes of ``notification`` under ``policy``.

    Raises a permanent :class:`NotifierError` when the template is missing or fails.
    """
    context = message_context(renderer, notification, policy)
    context["address"] = notification.address
    context["due_at"] = notification.due_at
    try:
        return renderer.render("console/brief.txt", context)
    except jinja2.TemplateError as exc:
        raise NotifierError(f"template console/brief.txt: {exc.message}", permanent=True) from exc


class ConsoleNotifier(Notifier):
    """Writes each message to a stream (``stream`` for every target when given) or to the log."""

    name: ClassVar[str] = "console"

    def __init__(
        self,
        *,
        renderer: Renderer,
        policy: PhiPolicy = PhiPolicy.NONE,
        stream: TextIO | None = None,
        brief: bool = False,
        simulated: Callable[[], datetime] | None = None,
        width: int = 80,
    ) -> None:
        self.renderer = renderer
        self.policy = policy
        self.stream = stream
        self.brief = brief
        self.simulated = simulated
        self.width = width
        self._lock = threading.Lock()
        self._printed: OrderedDict[str, str] = OrderedDict()  # brief body digest -> first address

    @classmethod
    def from_settings(
        cls, settings: ChannelSettings, *, renderer: Renderer, environ: Mapping[str, str] | None = None
    ) -> ConsoleNotifier:
        return cls(renderer=renderer)

    def _write_brief(self, notification: Notification, update: bool) -> Delivery:
        """The brief block on ``self.stream`` (stdout when None), or one line for a copy."""
        body = brief_body(self.renderer, notification, self.policy).rstrip("\n")
        # A copy has the same words and due time (a 72 h and a 24 h reminder share their words).
        copy_of = f"{notification.kind}|{update}|{notification.due_at}|{body}"
        digest = hashlib.sha256(copy_of.encode()).hexdigest()
        banner = BANNERS[notification.kind]
        if notification.kind is MessageKind.ALERT and notification.audience.value == "technologist":
            banner = "TECHNOLOGIST ALERT"  # about the images: the console hears it too
        banner += " (update)" if update else ""
        times = []
        if self.simulated is not None:
            times.append(f"at {self.renderer.format_datetime(self.simulated())} (simulated)")
        if notification.due_at is not None:
            times.append(f"due {self.renderer.format_datetime(notification.due_at)}")
        lines = [f"===== {banner} for {notification.audience.value}s -> {notification.address}"]
        lines += [f"  {', '.join(times)}"] if times else []
        lines += body.split("\n")
        block = "\n" + "".join(f"{part}\n" for line in lines for part in fold(line, self.width))
        headline = body.partition("\n")[0]
        # Copies are sent by other lanes and print later, under whatever came last: say
        # which message they repeat instead of sitting under a block they may not belong to.
        copy = "".join(
            f"{part}\n"
            for part in fold(
                f"  ----- copy of a message printed earlier, to {notification.address}: {headline}",
                self.width,
            )
        )
        stream = self.stream or sys.stdout
        with self._lock:
            first = digest not in self._printed
            if first:
                self._printed[digest] = notification.address
                if len(self._printed) > _REMEMBERED:
                    self._printed.popitem(last=False)
            stream.write(block if first else copy)
            stream.flush()
        return self._delivery(notification, notification.address)

    def _delivery(self, notification: Notification, destination: str) -> Delivery:
        reference = hashlib.sha256(notification.dedupe_key.encode("utf-8")).hexdigest()[:16]
        external_id = f"console-{reference}"
        return Delivery(self.name, external_id=external_id, destination=destination, status="written")

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
        return self._delivery(notification, target)

    def send(self, notification: Notification) -> Delivery:
        if self.brief:
            return self._write_brief(notification, update=False)
        return self._write(notification, "hiro-monitor")

    def update(self, notification: Notification, previous: Delivery) -> Delivery:
        if self.brief:
            self._write_brief(notification, update=True)
        else:
            self._write(notification, f"hiro-monitor update of {previous.external_id}:")
        return previous
