"""A long-lived evaluator's sweeps judge only what changed, and end where full judgements do.

Two stores get the same example registry and the same feed, message by message, with the
clock moving on in steps that cross midnights, lead times and exam starts. After each step
one store is swept by one long-lived evaluator (which skips what did not change) and the
other judged in full by a fresh one; findings, occurrences and outbox rows must be the same.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select

from monitor.clock import FixedClock
from monitor.config import Settings
from monitor.evaluation import EvaluationSummary, Evaluator
from monitor.feeds.hl7.intake import Arrival, Intake
from monitor.feeds.hl7.mapping import MappingSettings
from monitor.store.database import make_engine, upgrade
from monitor.store.schema import findings, notifications, occurrences
from tests.monitor.hl7_messages import siu
from tests.monitor.trial_setup import NOW, load_examples

FEED_ZONE = ZoneInfo("America/New_York")
MRNS = ("E10001", "E10002", "E10003", "E10004", "E10005", "E10006")
STEPS = (timedelta(minutes=10), timedelta(minutes=50), timedelta(hours=3), timedelta(hours=7),
         timedelta(hours=11), timedelta(hours=23))  # fmt: skip


def _settings(url: str) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": url},
            "hl7": {"timezone": "America/New_York"},
            "evaluation": {"full_sweep_hours": 24},  # the safety net must not hide a skip
        }
    )


def _store(path: Path) -> tuple[Engine, Settings]:
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    upgrade(engine)
    load_examples(engine)
    return engine, _settings(url)


def _state(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every finding, occurrence and outbox row, without row ids, in key order."""
    state: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table, key in ((findings, "key"), (occurrences, "key"), (notifications, "dedupe_key")):
            columns = [column for column in table.c if column.name != "id"]
            state[table.name] = [tuple(row) for row in conn.execute(select(*columns).order_by(table.c[key]))]
    return state


class _Feed:
    """Random but repeatable SIU traffic: bookings, moves and cancellations of research CTs."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.booked: dict[str, str] = {}  # CSN -> MRN
        self.count = 0

    def message(self, now: datetime) -> bytes:
        self.count += 1
        local = now.astimezone(FEED_ZONE)
        day = local.date() + timedelta(days=self.random.randint(-2, 20))
        start = f"{day:%Y%m%d}{self.random.choice(('0730', '0930', '1500'))}00"
        common = {"control_id": f"M{self.count:05d}", "sent_at": f"{local:%Y%m%d%H%M%S}", "start": start}
        if self.booked and self.random.random() < 0.5:
            csn = self.random.choice(sorted(self.booked))
            mrn = self.booked[csn]
            if self.random.random() < 0.4:
                del self.booked[csn]
                return siu("S15", csn=csn, mrn=mrn, status="Cancelled", **common)
            return siu("S13", csn=csn, mrn=mrn, **common)
        csn, mrn = f"71{self.count:08d}", self.random.choice(MRNS)
        self.booked[csn] = mrn
        return siu(csn=csn, mrn=mrn, **common)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sweeps_that_skip_what_did_not_change_end_where_full_judgements_do(tmp_path: Path, seed: int) -> None:
    """Three stores, the same feed: swept by one long-lived evaluator, by a new evaluator at
    each step (a new process: it starts from the judgements the last one stored), and judged
    in full each time."""
    swept, settings = _store(tmp_path / "swept.db")
    restarted, restarted_settings = _store(tmp_path / "restarted.db")
    judged, judged_settings = _store(tmp_path / "judged.db")
    sweeper = Evaluator(swept, settings)
    feed = _Feed(seed)
    rnd = random.Random(seed)
    now = NOW
    summaries: list[EvaluationSummary] = []
    fresh: list[EvaluationSummary] = []
    for _step in range(16):
        now += rnd.choice(STEPS)
        for _ in range(rnd.choice((0, 0, 1, 2))):
            raw = feed.message(now)
            for engine in (swept, restarted, judged):
                Intake(engine, MappingSettings.from_settings(settings.hl7), clock=FixedClock(now)).receive(
                    Arrival(raw)
                )
        summaries.append(sweeper.evaluate_all(now))
        fresh.append(Evaluator(restarted, restarted_settings).evaluate_all(now))
        Evaluator(judged, judged_settings).evaluate_all(now, full=True)
        assert _state(swept) == _state(judged), f"step {_step} at {now.isoformat()}"
        assert _state(restarted) == _state(judged), f"step {_step} at {now.isoformat()} (new process)"
    # The sweeps did skip enrolments, and did judge some after the first full one; so did the
    # new processes, from what their predecessors stored.
    for runs in (summaries, fresh):
        assert any(s.up_to_date for s in runs)
        assert any(s.up_to_date and s.enrolments for s in runs)
    for engine in (swept, restarted, judged):
        engine.dispose()


def test_a_sweep_with_nothing_changed_judges_no_one_and_a_new_booking_judges_its_patient(
    tmp_path: Path,
) -> None:
    engine, settings = _store(tmp_path / "store.db")
    sweeper = Evaluator(engine, settings)
    first = sweeper.evaluate_all(NOW)
    assert first.enrolments > 1 and first.up_to_date == 0
    again = sweeper.evaluate_all(NOW + timedelta(minutes=1))
    assert (again.enrolments, again.up_to_date) == (0, first.enrolments)
    Intake(engine, MappingSettings.from_settings(settings.hl7), clock=lambda: NOW).receive(
        Arrival(siu(mrn="E10001", sent_at="20261125080000"))
    )
    after = sweeper.evaluate_all(NOW + timedelta(minutes=2))
    assert 1 <= after.enrolments < first.enrolments
    assert after.changes.opened["in_window"] == 1
    engine.dispose()


def test_an_exam_filed_again_under_another_patient_is_judged_again_for_the_first(tmp_path: Path) -> None:
    swept, settings = _store(tmp_path / "swept.db")
    judged, judged_settings = _store(tmp_path / "judged.db")
    sweeper = Evaluator(swept, settings)
    booking = siu(mrn="E10001", sent_at="20261125080000")
    # The registration desk had the wrong patient: the same appointment, now under E10002.
    moved = siu("S14", control_id="MSG0002", mrn="E10002", sent_at="20261125090000")
    for step, raw in enumerate((booking, moved), start=1):
        now = NOW + timedelta(minutes=10 * step)
        for engine in (swept, judged):
            Intake(engine, MappingSettings.from_settings(settings.hl7), clock=FixedClock(now)).receive(
                Arrival(raw)
            )
        sweeper.evaluate_all(now)
        Evaluator(judged, judged_settings).evaluate_all(now)
        assert _state(swept) == _state(judged), f"after message {step}"
    swept.dispose()
    judged.dispose()


def test_a_sweep_in_parts_of_whole_patients_records_what_a_sweep_in_one_part_does(tmp_path: Path) -> None:
    parts, settings = _store(tmp_path / "parts.db")
    whole, whole_settings = _store(tmp_path / "whole.db")
    feed = _Feed(5)
    # Booked before the monitor first plans (a quiet first run): two research CTs in their
    # windows, of subjects judged in different parts, and random traffic.
    booked = [
        siu(
            control_id="IN1", csn="7300000001", mrn="E10001", start="20261201093000", sent_at="20261124080000"
        ),
        siu(
            control_id="IN2", csn="7300000002", mrn="E10002", start="20261127093000", sent_at="20261124080100"
        ),
        *(feed.message(NOW) for _ in range(30)),
    ]
    for raw in booked:
        for engine in (parts, whole):
            Intake(engine, MappingSettings.from_settings(settings.hl7), clock=FixedClock(NOW)).receive(
                Arrival(raw)
            )
    for step in range(3):
        now = NOW + timedelta(hours=11 * step)
        summary = Evaluator(parts, settings, sweep_part=1).evaluate_all(now, full=True)
        Evaluator(whole, whole_settings, sweep_part=100_000).evaluate_all(now, full=True)
        assert _state(parts) == _state(whole), f"sweep {step}"
        assert summary.enrolments > 2
    with parts.connect() as conn:
        query = select(notifications.c.enrolment_id, notifications.c.status).where(
            notifications.c.kind == "booking"
        )
        bookings = set(conn.execute(query).all())
    # The first planning was quiet in every part, not only in the first one.
    assert {status for _, status in bookings} == {"skipped"} and len({e for e, _ in bookings}) == 2


def test_a_new_process_trusts_stored_judgements_only_under_the_same_settings_and_within_the_full_sweep(
    tmp_path: Path,
) -> None:
    engine, settings = _store(tmp_path / "store.db")
    first = Evaluator(engine, settings).evaluate_all(NOW)
    assert first.up_to_date == 0
    later = Evaluator(engine, settings).evaluate_all(NOW + timedelta(minutes=5))
    assert (later.enrolments, later.up_to_date) == (0, first.enrolments)  # nothing changed
    other = settings.model_copy(
        update={"evaluation": settings.evaluation.model_copy(update={"alert_lookback_days": 30})}
    )
    again = Evaluator(engine, other).evaluate_all(NOW + timedelta(minutes=6))
    assert again.up_to_date == 0 and again.enrolments == first.enrolments  # other settings: everyone
    # 24 hours after the last full sweep (the safety net), everyone again.
    day = Evaluator(engine, other).evaluate_all(NOW + timedelta(hours=24, minutes=6))
    assert day.up_to_date == 0
    assert Evaluator(engine, other).evaluate_all(NOW + timedelta(hours=24, minutes=7)).enrolments == 0
    engine.dispose()
