"""Shared set-up for the outbox tests: the example registry, a feed, a clock, fake Slack and real SMTP.

:class:`Office` is the store with the example trials and enrolments, an intake and an
evaluator driven by a clock the test moves, and dispatchers pointed at the local Slack-like
server (``tests.notifiers.slack_server``) and an aiosmtpd server on port 0.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select, update

from monitor.clock import FixedClock
from monitor.config import Settings
from monitor.dispatch.dispatcher import Dispatcher
from monitor.evaluation import EvaluationSummary, Evaluator
from monitor.feeds.hl7.intake import Arrival, Intake, Receipt
from monitor.feeds.hl7.mapping import MappingSettings
from monitor.store.database import make_engine
from monitor.store.registry import import_enrolments
from monitor.store.schema import notifications
from tests.monitor.hl7_messages import BIRTH_DATE, PATIENT_NAME
from tests.monitor.trial_setup import NOW, load_examples
from tests.notifiers.slack_server import FakeSlack, SlackServer
from tests.notifiers.smtp_server import SmtpServer

ONC = "C0ONC2101"  # slack:#onc-2101-imaging, the ONC-2101 coordinators' channel
CT3 = "C0CT3CON"  # slack:#ct3-console, the research CT's technologists
# What must never leave for a "none" channel: the SIU's MRNs, name and birth date, any spelling.
PHI = ("E10001", "99887766", "TESTPATIENT", PATIENT_NAME, BIRTH_DATE, "1961-02-03", "02/03/1961")
BOOKING = "booking|slack:#onc-2101-imaging|ONC-2101:2101-001:extended_restaging#2:in_window:exam1"


def assert_no_phi(text: str) -> None:
    for value in PHI:
        assert value.lower() not in text.lower(), f"PHI value {value!r} leaked"


class Office:
    """The example registry in a store, a feed into it, and dispatchers out of it."""

    def __init__(self, url: str, slack: SlackServer, smtp: SmtpServer | None, **settings: Any) -> None:
        self.engine: Engine = make_engine(url)
        load_examples(self.engine)
        self.slack = slack
        data: dict[str, Any] = {
            "database": {"url": url},
            "notifications": {"dashboard_base_url": "https://hiro.example.org"},
            "slack": {"enabled": True, "base_url": slack.base_url, "timeout_seconds": 5},
            "email": {"enabled": smtp is not None, "host": "127.0.0.1", "security": "plain"},
            # These tests book into an empty outbox and expect the booking announced; the
            # quiet first run (tests/monitor/dispatch/test_planning.py) turns it on itself.
            "dispatch": {"retry_base_seconds": 10.0, "workers": 8, "quiet_first_run": False},
        }
        if smtp is not None:
            data["email"]["port"] = smtp.port
        for section, values in settings.items():
            data.setdefault(section, {}).update(values)
        self.settings = Settings.model_validate(data)
        self.environ = {"HIRO_SLACK_TOKEN": slack.fake.token}
        self.clock = FixedClock(NOW)
        # Slack stamps ts with the time it is where the daemon runs: here, the office's clock
        # (the dispatcher looks for a message it may have posted from shortly before due_at).
        slack.fake.clock = lambda: self.clock().timestamp()
        self.intake = Intake(self.engine, MappingSettings.from_settings(self.settings.hl7), clock=self.clock)
        self.evaluator = Evaluator(self.engine, self.settings)
        self._dispatchers: list[Dispatcher] = []

    def feed(self, raw: bytes) -> tuple[Receipt, EvaluationSummary]:
        """One HL7 message through the intake, then the re-evaluation the feed writer runs."""
        receipt = self.intake.receive(Arrival(raw))
        return receipt, self.evaluator.evaluate_for_exams(receipt.exam_ids, self.clock())

    def dispatcher(self, **kwargs: Any) -> Dispatcher:
        kwargs.setdefault("environ", self.environ)
        kwargs.setdefault("clock", self.clock)
        dispatcher = Dispatcher(self.engine, self.settings, **kwargs)
        self._dispatchers.append(dispatcher)
        return dispatcher

    def dispatch(self) -> Dispatcher:
        """A fresh dispatcher that sends everything due now and waits."""
        dispatcher = self.dispatcher()
        dispatcher.run_once(timeout=60)
        return dispatcher

    def rows(self, **where: Any) -> list[Any]:
        query = select(notifications).order_by(notifications.c.id)
        for name, value in where.items():
            query = query.where(notifications.c[name] == value)
        with self.engine.connect() as conn:
            return list(conn.execute(query))

    def row(self, dedupe_key: str) -> Any:
        [found] = self.rows(dedupe_key=dedupe_key)
        return found

    def keep_only(self, *dedupe_keys: str) -> None:
        """Cancel every pending row but these (to look at one message at a time)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(notifications)
                .where(notifications.c.status == "pending", notifications.c.dedupe_key.not_in(dedupe_keys))
                .values(status="cancelled")
            )

    def close(self) -> None:
        for dispatcher in self._dispatchers:
            dispatcher.close()
        self.engine.dispose()


def posts_by_key(fake: FakeSlack) -> Counter[str]:
    """How many messages carry each dedupe key in their metadata, over every channel."""
    counts: Counter[str] = Counter()
    for messages in fake.messages.values():
        for message in messages:
            metadata = message.get("metadata") or {}
            if metadata.get("event_type") == "hiro_notification":
                counts[metadata["event_payload"]["dedupe_key"]] += 1
    return counts


def enrol_due_in(engine: Engine, mrn: str, subject: str, days: int, now: datetime) -> str:
    """Enrol a new ONC-2101 subject whose Week 6 restaging CT is due ``days`` after ``now``'s date.

    Returns the HL7 start (``YYYYMMDD093000``, New York time) of a booking on that due date,
    so tests and benchmarks that run on the real clock book a research exam in its window.
    """
    due = now.astimezone(ZoneInfo("America/New_York")).date() + timedelta(days=days)
    c1d1 = due - timedelta(days=42)  # "6w" after C1D1 (Day 1); window +-7 days
    csv = (
        "trial,subject,mrn,arm,status,consent,c1d1\n"
        f"ONC-2101,{subject},{mrn},A,on_study,{c1d1 - timedelta(days=21)},{c1d1}\n"
    )
    with engine.begin() as conn:
        import_enrolments(conn, csv, now)
    return f"{due:%Y%m%d}093000"
