"""Operations alerts to the integration team's channels: a quiet feed (in watched hours
only), a rise in rejections, an outbox backlog; raised once, recovered once, delivered to a
Slack-like server and a real SMTP server without patient data.

The office's clock starts at Wed 25 Nov 2026 07:00 EST (the start of the watched hours)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from monitor.config import MllpSettings
from monitor.dispatch.operations import SenderWatch, check_operations
from monitor.feeds.mllp import MllpServer
from monitor.web.health import StoreCollector
from tests.monitor.dispatch.office import Office, assert_no_phi
from tests.monitor.feeds.test_mllp_server import MSG, Recorder, connect, frame, read_ack, run, send
from tests.monitor.hl7_messages import siu
from tests.monitor.trial_setup import NOW
from tests.notifiers.slack_server import FakeSlack, SlackServer
from tests.notifiers.smtp_server import Inbox, SmtpServer

OPS = "C0HL7OPS"
CHANNELS = ["slack:#hl7-ops", "email:interfaces@example.org"]


@pytest.fixture
def ops_office(database_url: str, smtp: SmtpServer) -> Iterator[Office]:
    with SlackServer(FakeSlack(channels={"hl7-ops": OPS})) as slack:
        office = Office(
            database_url, slack, smtp,
            operations={"channels": CHANNELS, "rejections_per_hour": 3, "outbox_backlog": 0,
                        "feeds": {"epic": {"quiet_minutes": 60, "hours": "07:00-19:00"}}},
            site={"timezone": "America/New_York"},
        )  # fmt: skip
        yield office
        office.close()


def _check(office: Office, minutes: float) -> list[str]:
    office.clock.now = NOW + timedelta(minutes=minutes)
    result = check_operations(office.engine, office.settings, office.clock())
    return [f"raised {key}" for key in result.raised] + [f"recovered {key}" for key in result.recovered]


def _ops_mail(inbox: Inbox) -> list[tuple[str, list[str], object]]:
    return [mail for mail in inbox.received if mail[1] == ["interfaces@example.org"]]


def _ops_rows(office: Office) -> list[tuple[str, str]]:
    return [(row.address, row.finding_key) for row in office.rows(kind="operations")]


def test_a_quiet_feed_is_raised_once_in_watched_hours_and_recovers_once(
    ops_office: Office, inbox: Inbox
) -> None:
    office = ops_office
    office.feed(siu(control_id="Q1", mrn="E10001", csn="7100000001"))  # at 07:00
    assert _check(office, 30) == []
    assert _check(office, 61) == ["raised quiet_feed|epic"]
    assert _check(office, 70) == []  # open: not raised again
    assert _ops_rows(office) == [(address, "quiet_feed|epic|raised") for address in CHANNELS]

    office.dispatch()
    [posted] = office.slack.fake.posted(OPS)
    text = json.dumps(posted)
    assert "Feed epic has sent nothing for 61 minutes" in text and "Feed health" in text
    [(_, _, mail)] = _ops_mail(inbox)
    assert mail["Subject"]  # type: ignore[index] == "[operations] Feed epic has sent nothing for 61 minutes"
    body = mail.get_body(("plain",)).get_content()  # type: ignore[attr-defined]
    assert "the last arrived Wed 25 Nov 07:00" in body and "https://hiro.example.org/feeds" in body
    assert_no_phi(text + body)

    office.clock.now = NOW + timedelta(minutes=75)
    office.feed(siu(control_id="Q2", mrn="E10001", csn="7100000001", status="Arrived", trigger="S14"))
    assert _check(office, 76) == ["recovered quiet_feed|epic"]
    assert _check(office, 80) == []
    office.dispatch()
    assert "Recovered: Feed epic is sending again" in json.dumps(office.slack.fake.posted(OPS)[-1])
    assert len(office.slack.fake.posted(OPS)) == 2 and len(_ops_mail(inbox)) == 2

    # Quiet again later that day: a new episode, announced again.
    assert _check(office, 76 + 61) == ["raised quiet_feed|epic"]


def test_nights_weekends_and_the_morning_after_are_not_quiet_feeds(ops_office: Office) -> None:
    office = ops_office
    office.feed(siu(control_id="N1", mrn="E10001", csn="7100000001"))  # Wed 07:00 EST
    assert _check(office, 4 * 60) == ["raised quiet_feed|epic"]  # 11:00, four hours quiet
    with office.engine.begin() as conn:  # start afresh: no episode
        conn.exec_driver_sql("DELETE FROM notifications")
        conn.exec_driver_sql("DELETE FROM operations_alerts")
    assert _check(office, 12 * 60 + 5) == []  # 19:05 EST: outside the watched hours
    assert _check(office, 24 * 60 + 30) == []  # Thu 07:30: quiet since 07:00 only
    assert _check(office, 24 * 60 + 61) == ["raised quiet_feed|epic"]  # Thu 08:01
    with office.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM notifications")
        conn.exec_driver_sql("DELETE FROM operations_alerts")
    assert _check(office, 3 * 24 * 60 + 5 * 60) == []  # Sat 12:00: the site is closed


def test_an_open_quiet_alert_neither_recovers_nor_repeats_overnight(ops_office: Office) -> None:
    office = ops_office
    office.feed(siu(control_id="O1", mrn="E10001", csn="7100000001"))
    assert _check(office, 11 * 60) == ["raised quiet_feed|epic"]  # 18:00
    assert _check(office, 14 * 60) == []  # 21:00: not watched, still open
    assert _check(office, 24 * 60 + 90) == []  # Thu 08:30: still quiet, still the same episode
    assert len(_ops_rows(office)) == len(CHANNELS)


def test_a_rise_in_rejections_is_raised_and_recovers_an_hour_later(ops_office: Office) -> None:
    office = ops_office
    for number in range(3):
        office.clock.now = NOW + timedelta(minutes=number)
        office.feed(siu(control_id=f"BAD{number}", csn=f"72{number}", start="20261301093000"))
    assert _check(office, 5) == ["raised rejections|epic"]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(office.engine, office.clock))
    assert (
        'hiro_operations_alert{condition="rejections",feed="epic"} 1.0' in generate_latest(registry).decode()
    )
    office.dispatch()
    text = json.dumps(office.slack.fake.posted(OPS))
    assert "Feed epic: 3 messages answered AE or AR in the last hour" in text
    assert "recovered rejections|epic" in _check(office, 62)  # (and, by now, the feed is quiet)


def test_an_outbox_backlog_is_raised_and_recovers_when_sent(database_url: str, smtp: SmtpServer) -> None:
    with SlackServer(FakeSlack(channels={"hl7-ops": OPS, "onc-2101-imaging": "C0ONC2101"})) as slack:
        office = Office(
            database_url, slack, smtp,
            operations={"channels": ["email:interfaces@example.org"], "outbox_backlog": 1,
                        "outbox_backlog_minutes": 15, "rejections_per_hour": 0,
                        "feeds": {"epic": {"quiet_minutes": 0}}},
        )  # fmt: skip
        try:
            office.feed(siu(control_id="B1", mrn="E10001", csn="7100000001"))  # plans the booking notice
            assert _check(office, 10) == []
            assert _check(office, 16) == ["raised outbox_backlog|"]
            office.dispatch()  # the booking notice and the operations alert go out
            assert _check(office, 17) == ["recovered outbox_backlog|"]
        finally:
            office.close()


def test_a_sender_that_drops_and_stays_away_is_raised_once_and_its_return_clears_it(
    ops_office: Office,
) -> None:
    """Over a real socket: the listener knows who delivered, who left and when."""
    office = ops_office
    wall = [NOW.timestamp()]
    server = MllpServer(MllpSettings(host="127.0.0.1", port=0), Recorder(), wall=lambda: wall[0])
    watch = SenderWatch(office.engine, office.settings)

    async def connect_send_close() -> None:
        reader, writer = await connect(server)
        await send(writer, frame(MSG))
        await read_ack(reader)
        writer.close()
        await writer.wait_closed()

    async def body() -> None:
        await server.start()
        try:
            _, probe = await connect(server)  # a health probe: connects, sends nothing
            probe.close()
            await connect_send_close()
            await asyncio.sleep(0.05)  # the listener sees the close
            [sender] = server.senders()  # the probe is not a sender
            assert (sender.host, sender.connections, sender.left_at) == ("127.0.0.1", 0, NOW.timestamp())
            at = NOW + timedelta(minutes=5)
            assert watch.check(server.senders(), at).raised == []  # not gone long enough
            at = NOW + timedelta(minutes=11)
            assert watch.check(server.senders(), at).raised == ["sender_gone|127.0.0.1"]
            assert watch.check(server.senders(), at + timedelta(minutes=1)).raised == []  # once
            reader, writer = await connect(server)  # it comes back
            await send(writer, frame(MSG))
            await read_ack(reader)
            back = watch.check(server.senders(), at + timedelta(minutes=2))
            assert back.recovered == ["sender_gone|127.0.0.1"]
            writer.close()
        finally:
            await server.close(grace=1.0)

    run(body)
    rows = _ops_rows(office)
    assert [key for _, key in rows] == [
        "sender_gone|127.0.0.1|raised", "sender_gone|127.0.0.1|raised",
        "sender_gone|127.0.0.1|recovered", "sender_gone|127.0.0.1|recovered",
    ]  # fmt: skip
    office.clock.now = NOW + timedelta(minutes=13)
    office.dispatch()
    posted = json.dumps(office.slack.fake.posted(OPS))
    assert "Sender 127.0.0.1 (epic) disconnected at 07:00 and has not come back (11 minutes)" in posted
    assert "Recovered: Sender 127.0.0.1 is connected again" in posted
    # The leader's check of feeds and the outbox leaves the sender's episodes alone.
    assert "recovered sender_gone|127.0.0.1" not in _check(office, 20)
