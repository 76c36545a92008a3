from __future__ import annotations

import io
import logging
import re
from datetime import UTC, datetime

import pytest

from monitor.clock import FixedClock
from monitor.render import Renderer
from notifiers import MessageKind, NotifierError, PhiPolicy
from notifiers.console import BANNERS, ConsoleNotifier
from tests.notifiers.conftest import (
    INITIALS,
    MakeNotification,
    assert_no_phi,
    content_for,
    tag_of,
)


@pytest.mark.parametrize("kind", list(MessageKind))
def test_console_prints_the_text_body_without_phi(
    renderer: Renderer, make_notification: MakeNotification, kind: MessageKind
) -> None:
    stream = io.StringIO()
    notifier = ConsoleNotifier(renderer=renderer, stream=stream)
    content = content_for(kind, detail="MRN E7730912")
    delivery = notifier.send(make_notification("console:", kind, content=content))
    printed = stream.getvalue()
    assert printed.startswith(f"----- hiro-monitor {kind.value} ")
    assert tag_of(kind) in printed and delivery.channel == "console"
    assert_no_phi(printed)


def test_console_with_a_limited_policy_shows_initials(
    renderer: Renderer, make_notification: MakeNotification
) -> None:
    stream = io.StringIO()
    ConsoleNotifier(renderer=renderer, stream=stream, policy=PhiPolicy.LIMITED).send(
        make_notification("console:")
    )
    assert INITIALS in stream.getvalue()
    assert_no_phi(stream.getvalue(), initials_allowed=True)


def test_the_log_target_never_carries_phi_whatever_the_policy(
    renderer: Renderer, make_notification: MakeNotification, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="notifiers.console")
    notifier = ConsoleNotifier(renderer=renderer, policy=PhiPolicy.FULL)
    previous = notifier.send(make_notification("console:log"))
    notifier.update(make_notification("console:log"), previous)
    assert len(caplog.records) == 2 and "Wrong orderable" in caplog.text
    assert_no_phi(caplog.text)


def test_an_unknown_console_target_is_permanent(
    renderer: Renderer, make_notification: MakeNotification
) -> None:
    with pytest.raises(NotifierError) as caught:
        ConsoleNotifier(renderer=renderer).send(make_notification("console:printer"))
    assert caught.value.permanent


@pytest.mark.parametrize("kind", list(MessageKind))
def test_the_brief_console_prints_a_banner_and_a_few_lines_without_phi(
    renderer: Renderer, make_notification: MakeNotification, kind: MessageKind
) -> None:
    stream = io.StringIO()
    notifier = ConsoleNotifier(renderer=renderer, stream=stream, brief=True)
    content = content_for(kind, detail="MRN E7730912")
    delivery = notifier.send(make_notification("slack:#onc-2101-imaging", kind, content=content))
    printed = stream.getvalue()
    assert printed.startswith(f"\n===== {BANNERS[kind]} for ")
    assert "-> slack:#onc-2101-imaging" in printed and tag_of(kind) in printed
    assert delivery.channel == "console" and delivery.destination == "slack:#onc-2101-imaging"
    assert len(printed.splitlines()) < 20
    assert_no_phi(printed)


def test_the_brief_console_shows_what_to_do_and_prints_a_copy_for_another_address_as_a_note(
    renderer: Renderer, make_notification: MakeNotification
) -> None:
    stream = io.StringIO()
    notifier = ConsoleNotifier(renderer=renderer, stream=stream, brief=True)
    notifier.send(make_notification("email:onc2101-team@example.org"))
    notifier.send(make_notification("slack:#onc-2101-imaging"))
    sheet = make_notification("slack:#ct3-console", MessageKind.INSTRUCTIONS)
    notifier.send(sheet)
    printed = stream.getvalue()
    assert printed.count("===== COORDINATOR ALERT for coordinators") == 1
    note = printed.split("\n  ----- copy of a message printed earlier, to slack:#onc-2101-imaging:")[1]
    assert " ".join(note.split()).startswith("[ONC-2101] Wrong orderable · subject 014")
    assert "Next step: " in printed
    assert "===== TECHNOLOGIST SHEET for technologists -> slack:#ct3-console" in printed
    assert "Subject 014 · CT chest/abdomen/pelvis with IV contrast" in printed
    assert printed.count("Do:  ") == len(sheet.content.parameters)  # type: ignore[union-attr]


def test_the_brief_console_says_the_simulated_time_of_each_block_and_fits_80_columns(
    renderer: Renderer, make_notification: MakeNotification
) -> None:
    """The demo at --speed 2016: a coordinator sees the simulated days pass block by block."""
    clock = FixedClock(datetime(2026, 3, 3, 14, 30, tzinfo=UTC))
    stream = io.StringIO()
    notifier = ConsoleNotifier(renderer=renderer, stream=stream, brief=True, simulated=clock)
    notifier.send(make_notification("email:onc2101-team@example.org"))
    clock.advance(days=1)
    notifier.send(make_notification("slack:#ct3-console", MessageKind.INSTRUCTIONS))
    printed = stream.getvalue()
    alert, sheet = printed.split("\n===== ")[1:]
    assert alert.splitlines()[1].startswith("  at Tue 3 Mar 2026 09:30 EST (simulated)")
    assert sheet.splitlines()[1].startswith("  at Wed 4 Mar 2026 09:30 EST (simulated)")
    # Folded for a terminal: a headline between its parts, a labelled line under its value.
    assert max(len(line) for line in printed.splitlines()) <= 80
    assert "[ONC-2101] Wrong orderable · subject 014 · Week 12 restaging ·\n    Tue 3 Mar 2026" in alert
    assert re.search(r"\n  What:      .+\n {13}\S", alert)
    # On the real clock (speed 1) there is nothing to say.
    plain = io.StringIO()
    ConsoleNotifier(renderer=renderer, stream=plain, brief=True).send(make_notification("slack:#onc"))
    assert "(simulated)" not in plain.getvalue()
