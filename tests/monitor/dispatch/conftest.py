"""Fixtures of the outbox tests: a Slack-like server, a real SMTP server, the example office."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.monitor.dispatch.office import CT3, ONC, Office
from tests.notifiers.slack_server import FakeSlack, SlackServer
from tests.notifiers.smtp_server import Inbox, SmtpServer


@pytest.fixture
def slack() -> Iterator[SlackServer]:
    channels = {"onc-2101-imaging": ONC, "ct-techs": "C0CTTECHS", "ct3-console": CT3, "neu-4405": "C0NEU4405"}
    with SlackServer(FakeSlack(channels=channels)) as server:
        yield server


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def smtp(inbox: Inbox) -> Iterator[SmtpServer]:
    server = SmtpServer(inbox, mode="plain")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def office(database_url: str, slack: SlackServer, smtp: SmtpServer) -> Iterator[Office]:
    found = Office(database_url, slack, smtp)
    yield found
    found.close()
