"""Claiming: two dispatchers (two replicas) on one outbox deliver every row exactly once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import ClassVar, Self

import pytest
from sqlalchemy import insert, select

from monitor.config import Settings
from monitor.render import Renderer
from monitor.store.outbox.claims import Claims
from monitor.store.schema import notifications
from notifiers import Delivery, Notification, Notifier
from tests.monitor.dispatch.office import Office
from tests.monitor.hl7_messages import siu
from tests.monitor.trial_setup import NOW

FINDING = "ONC-2101:2101-001:extended_restaging#2:in_window:exam1"


class Recorder(Notifier):
    """A console-like channel that remembers every send (a little slow, so claims overlap)."""

    name: ClassVar[str] = "console"

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, *, renderer: Renderer, environ: Mapping[str, str] | None = None
    ) -> Self:
        raise NotImplementedError

    def send(self, notification: Notification) -> Delivery:
        time.sleep(0.002)
        with self.lock:
            self.sent.append(notification.dedupe_key)
        return Delivery(self.name, external_id=notification.dedupe_key, destination="stdout")

    def update(self, notification: Notification, previous: Delivery) -> Delivery:
        return self.send(notification)


def _due_rows(office: Office, count: int) -> list[str]:
    keys = [f"alert|console:stdout|{FINDING}|copy{n}" for n in range(count)]
    rows = [
        {
            "dedupe_key": key, "audience": "coordinator", "channel": "console", "address": "console:stdout",
            "kind": "alert", "trial": "ONC-2101", "finding_key": FINDING, "finding_kind": "in_window",
            "thread_key": "", "due_at": NOW, "status": "pending", "attempts": 0, "next_attempt_at": NOW,
            "maybe_sent": False, "last_error": "", "summary": "", "created_at": NOW, "updated_at": NOW,
        }
        for key in keys
    ]  # fmt: skip
    with office.engine.begin() as conn:
        conn.execute(insert(notifications), rows)
    return keys


def test_two_dispatchers_claiming_at_once_deliver_each_row_exactly_once(office: Office) -> None:
    office.feed(siu(mrn="E10001"))
    office.keep_only()
    keys = _due_rows(office, 300)
    recorder = Recorder()
    first, second = (office.dispatcher(notifiers={"console": recorder}) for _ in range(2))
    start = threading.Barrier(2)

    def run(dispatcher: object) -> None:
        start.wait()
        dispatcher.run_once(timeout=60)  # type: ignore[attr-defined]

    threads = [threading.Thread(target=run, args=(d,)) for d in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert Counter(recorder.sent) == Counter(dict.fromkeys(keys, 1))
    with office.engine.connect() as conn:
        owners = Counter(
            owner
            for owner, status in conn.execute(
                select(notifications.c.claimed_by, notifications.c.status).where(
                    notifications.c.dedupe_key.in_(keys)
                )
            )
            if status == "sent"
        )
    assert sum(owners.values()) == 300
    assert set(owners) == {first.claims.owner, second.claims.owner}  # both replicas took part


@pytest.mark.postgres
def test_postgres_claims_skip_rows_locked_by_another_replica(office: Office) -> None:
    if office.engine.dialect.name != "postgresql":
        pytest.skip("FOR UPDATE SKIP LOCKED is PostgreSQL's")
    office.feed(siu(mrn="E10001"))
    office.keep_only()
    keys = _due_rows(office, 10)
    due = (
        select(notifications.c.id)
        .where(notifications.c.dedupe_key.in_(keys))
        .order_by(notifications.c.id)
        .limit(4)
        .with_for_update(skip_locked=True)
    )
    with office.engine.connect() as holder, holder.begin():
        locked = [row.id for row in holder.execute(due)]  # another replica mid-claim
        claimed = Claims(office.engine).claim("console:stdout", NOW, 100)
        assert len(locked) == 4 and len(claimed) == 6
        assert not {row.id for row in claimed} & set(locked)
