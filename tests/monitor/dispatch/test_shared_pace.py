"""Replicas on one PostgreSQL post to one Slack channel at the channel's pace together (one
message a second), as a single dispatcher would: the slots are taken from the store.

Each lane here claims one row at a time, so that the two replicas' lanes really interleave
on the channel (a lane claims three at once otherwise, and one replica would take them all)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from monitor.dispatch import dispatcher as dispatching
from monitor.dispatch.dispatcher import Dispatcher
from monitor.store.database import make_engine
from tests.monitor.dispatch.office import ONC, Office
from tests.monitor.hl7_messages import siu
from tests.notifiers.slack_server import SlackServer


@pytest.mark.postgres
def test_two_replicas_post_to_one_channel_no_faster_than_one_message_a_second(
    office: Office, slack: SlackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    if office.engine.dialect.name != "postgresql":
        pytest.skip("replicas share a store on PostgreSQL only")
    for number, mrn in enumerate(("E10001", "E10002", "E10003")):  # three ONC-2101 bookings
        office.feed(siu(mrn=mrn, csn=f"710000000{number}", control_id=f"PACE{number}"))
    arrived: list[float] = []
    post = slack.fake.api_chat_postMessage

    def timed(params: dict[str, Any]) -> dict[str, Any]:
        answer = post(params)
        if answer.get("channel") == ONC:
            arrived.append(time.monotonic())
        return answer

    monkeypatch.setattr(slack.fake, "api_chat_postMessage", timed)
    monkeypatch.setattr(dispatching._Lane, "batch", property(lambda lane: 1))
    other_engine = make_engine(office.settings.database.url)
    replicas = [
        office.dispatcher(),
        Dispatcher(other_engine, office.settings, environ=office.environ, clock=office.clock),
    ]
    try:
        start = threading.Barrier(2)

        def run(replica: Dispatcher) -> None:
            start.wait()
            replica.run_once(timeout=60)

        threads = [threading.Thread(target=run, args=(replica,)) for replica in replicas]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
    finally:
        replicas[1].close()
        other_engine.dispose()

    assert len(arrived) == 3, arrived
    gaps = [later - earlier for earlier, later in zip(sorted(arrived), sorted(arrived)[1:], strict=False)]
    assert min(gaps) >= 0.9, gaps
    assert sum(replica.stats.sent for replica in replicas) >= 3
    assert all(replica.stats.sent for replica in replicas)  # both replicas posted to the channel
