"""Findings from the store: the feed's re-evaluation, ``evaluate``, ``findings`` and enrolment changes."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from monitor.commands.ingest import ingest_files
from monitor.config import Settings
from monitor.evaluation import Evaluator, evaluate_all, evaluate_for_exams
from monitor.feeds.hl7.intake import Arrival, Intake, Receipt
from monitor.feeds.hl7.mapping import MappingSettings
from monitor.feeds.writer import FeedWriter
from monitor.store.database import make_engine
from monitor.store.schema import findings
from tests.monitor.hl7_messages import siu
from tests.monitor.trial_setup import (
    EXAMPLE_MRNS,
    NOW,
    cli,
    enrolment_id,
    finding_rows,
    load_examples,
    occurrence_row,
)

WEEK_72 = "ONC-2101:2101-001:extended_restaging#2"
REQUIRED_KEYS = {"id", "trial", "subject", "timepoint", "occurrence", "kind", "severity", "exam_id",
                 "window_start", "window_end", "detail", "status"}  # fmt: skip


def _settings(url: str) -> Settings:
    return Settings.model_validate({"database": {"url": url}, "hl7": {"timezone": "America/New_York"}})


@pytest.fixture
def store(database_url: str) -> Engine:
    engine = make_engine(database_url)
    load_examples(engine)
    yield engine  # type: ignore[misc]
    engine.dispose()


class _Feed:
    """Intake + FeedWriter with the daemon's re-evaluation hook, and a way to wait for the hook."""

    def __init__(self, engine: Engine, settings: Settings, now: datetime, *, raw_first: bool = False) -> None:
        mapping = MappingSettings.from_settings(settings.hl7)
        self.intake = Intake(engine, mapping, clock=lambda: now, store_raw_first=raw_first)
        self.evaluator = Evaluator(engine, settings)
        self.hooked = threading.Semaphore(0)
        self.writer = FeedWriter(self.intake, after_batch=self._after_batch)

    def _after_batch(self, exam_ids: Sequence[int], now: datetime) -> None:
        try:
            self.evaluator.observe_exams(exam_ids, now)
        finally:
            self.hooked.release()

    async def send(self, raw: bytes) -> Receipt:
        receipt = await self.writer.submit(Arrival(raw))
        assert await asyncio.to_thread(self.hooked.acquire, True, 10)
        return receipt


def test_a_booking_then_a_cancellation_through_the_feed_writer_open_and_reopen_the_timepoint(
    store: Engine, database_url: str
) -> None:
    settings = _settings(database_url)
    evaluate_all(store, settings, NOW)
    [due] = finding_rows(store, occurrence_key=WEEK_72)
    assert (due.kind, due.status) == ("due_unscheduled", "open")

    async def scenario() -> list[Receipt]:
        feed = _Feed(store, settings, NOW)
        await feed.writer.start()
        try:
            booked = await feed.send(siu(mrn="E10001"))
            after_booking = {row.kind: row for row in finding_rows(store, occurrence_key=WEEK_72)}
            assert after_booking["in_window"].status == "open"
            assert after_booking["in_window"].exam_id == booked.exam_ids[0]
            assert after_booking["in_window"].occurrence_label == "Week 72 restaging"
            assert after_booking["due_unscheduled"].status == "resolved"
            assert after_booking["due_unscheduled"].resolved_at == NOW
            cancelled = await feed.send(siu("S15", control_id="MSG0002", status="Cancelled", mrn="E10001"))
            return [booked, cancelled]
        finally:
            await feed.writer.close()

    booked, cancelled = asyncio.run(scenario())
    assert booked.ack_code == cancelled.ack_code == "AA"
    rows = {row.kind: row for row in finding_rows(store, occurrence_key=WEEK_72)}
    assert rows["cancelled"].status == "open" and rows["cancelled"].severity == "warning"
    assert rows["cancelled"].exam_id == booked.exam_ids[0]
    assert "the timepoint is open again" in rows["cancelled"].detail
    assert rows["in_window"].status == "resolved"
    # Due again: the visit is open and nothing is booked (it must not go quietly missed).
    assert rows["due_unscheduled"].status == "open" and "was cancelled" in rows["due_unscheduled"].detail


def test_ack_after_storing_raw_still_evaluates_once_the_message_is_applied(
    store: Engine, database_url: str
) -> None:
    settings = _settings(database_url)
    evaluate_all(store, settings, NOW)

    async def scenario() -> Receipt:
        feed = _Feed(store, settings, NOW, raw_first=True)
        await feed.writer.start()
        try:
            return await feed.send(siu(mrn="E10001"))
        finally:
            await feed.writer.close()

    receipt = asyncio.run(scenario())
    assert (receipt.outcome, receipt.ack_code) == ("pending", "AA")
    rows = {row.kind: row.status for row in finding_rows(store, occurrence_key=WEEK_72)}
    assert rows == {"in_window": "open", "due_unscheduled": "resolved"}


def test_a_resolved_finding_that_comes_back_is_reopened_with_the_same_id(
    store: Engine, database_url: str
) -> None:
    settings = _settings(database_url)
    evaluate_all(store, settings, NOW)
    [due] = finding_rows(store, occurrence_key=WEEK_72)
    intake = Intake(store, MappingSettings.from_settings(settings.hl7), clock=lambda: NOW)
    [booked] = intake.receive_batch([Arrival(siu(mrn="E10001"))])
    evaluate_for_exams(store, settings, booked.exam_ids, NOW)
    assert finding_rows(store, id=due.id)[0].status == "resolved"

    later = NOW + timedelta(hours=1)
    [cancelled] = intake.receive_batch(
        [Arrival(siu("S15", control_id="MSG0002", status="Cancelled", mrn="E10001"))]
    )
    evaluate_for_exams(store, settings, cancelled.exam_ids, later)
    [rebooked] = intake.receive_batch([Arrival(siu("S13", control_id="MSG0003", mrn="E10001"))])
    summary = evaluate_for_exams(store, settings, rebooked.exam_ids, later)

    assert summary.changes.reopened == {"in_window": 1}
    reopened = finding_rows(store, occurrence_key=WEEK_72, kind="in_window")
    assert [(row.status, row.opened_at, row.resolved_at) for row in reopened] == [("open", later, None)]


def test_the_writer_acknowledges_before_a_slow_re_evaluation_and_survives_a_failing_one(
    store: Engine, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(database_url)
    calls: list[Sequence[int]] = []

    def slow_then_broken(exam_ids: Sequence[int], now: datetime) -> None:
        calls.append(exam_ids)
        time.sleep(0.5)
        raise RuntimeError("E10001 would be PHI")

    async def scenario() -> tuple[float, Receipt, Receipt]:
        intake = Intake(store, MappingSettings.from_settings(settings.hl7), clock=lambda: NOW)
        writer = FeedWriter(intake, after_batch=slow_then_broken, observe_every=0)
        await writer.start()
        try:
            started = time.perf_counter()
            first = await writer.submit(Arrival(siu(mrn="E10001")))
            await asyncio.sleep(0.05)  # the first re-evaluation (0.5 s) is under way
            second = await writer.submit(Arrival(siu(control_id="MSG0009", csn="7000000009", mrn="E10001")))
            seconds = time.perf_counter() - started
            return seconds, first, second
        finally:
            await writer.close()

    with caplog.at_level(logging.INFO):
        seconds, first, second = asyncio.run(scenario())
    assert seconds < 0.4, "the second message waited for the first one's re-evaluation"
    assert first.ack_code == second.ack_code == "AA"
    assert len(calls) == 2
    assert "after-batch hook failed (RuntimeError)" in caplog.text
    assert "E10001" not in caplog.text


def test_a_failed_re_evaluation_is_logged_without_phi(
    store: Engine, database_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluator = Evaluator(store, _settings(database_url))

    def broken(*args: object) -> None:
        raise ValueError("exam of MRN E10001 is broken")

    monkeypatch.setattr(evaluator.catalogue, "trials", broken)
    intake = Intake(store, MappingSettings.from_settings(_settings(database_url).hl7), clock=lambda: NOW)
    [booked] = intake.receive_batch([Arrival(siu(mrn="E10001"))])
    with caplog.at_level(logging.INFO):
        evaluator.observe_exams(booked.exam_ids, NOW)  # never raises
    assert "re-evaluation after 1 exam(s) failed (ValueError)" in caplog.text
    assert "E10001" not in caplog.text


def test_replaying_a_file_with_ingest_evaluates_the_booked_subject(
    store: Engine, database_url: str, tmp_path: Path
) -> None:
    feed = tmp_path / "day.hl7"
    feed.write_bytes(siu(mrn="E10001") + b"\n" + siu(control_id="MSG0005", csn="7000000005", mrn="E55555"))
    summary = ingest_files(store, _settings(database_url), [feed], progress=False, clock=lambda: NOW)
    assert summary.outcomes["accepted"] == 2
    [in_window] = finding_rows(store, kind="in_window")
    assert (in_window.trial, in_window.subject, in_window.occurrence_key) == ("ONC-2101", "2101-001", WEEK_72)


def test_re_evaluating_with_nothing_changed_leaves_findings_identical(
    store: Engine, database_url: str
) -> None:
    settings = _settings(database_url)
    first = evaluate_all(store, settings, NOW)
    before = finding_rows(store)
    # A new process trusts the stored judgements: nothing changed, no one judged...
    skipped = evaluate_all(store, settings, NOW + timedelta(minutes=4))
    assert skipped.enrolments == 0 and skipped.up_to_date == first.enrolments
    # ...and judging everyone again agrees with them.
    second = Evaluator(store, settings).evaluate_all(NOW + timedelta(minutes=5), full=True)
    assert first.changes.opened and not second.changes.changed
    assert second.changes.unchanged == len(before)
    assert finding_rows(store) == before
    assert {n.dedupe_key for n in first.evaluation.planned_notifications} == {
        n.dedupe_key for n in second.evaluation.planned_notifications
    }


def test_evaluating_one_exam_touches_only_the_enrolments_of_its_patient(
    store: Engine, database_url: str
) -> None:
    settings = _settings(database_url)
    evaluate_all(store, settings, NOW)
    untouched = [row for row in finding_rows(store) if row.subject not in ("2101-001", "4405-004")]
    intake = Intake(store, MappingSettings.from_settings(settings.hl7), clock=lambda: NOW)
    [booked] = intake.receive_batch([Arrival(siu(mrn="E10001"))])

    summary = evaluate_for_exams(store, settings, booked.exam_ids, NOW + timedelta(hours=2))

    # E10001 is 2101-001 of ONC-2101 and 4405-004 of NEU-4405: both are judged, no one else.
    assert summary.scope == {
        enrolment_id(store, "ONC-2101", "2101-001"),
        enrolment_id(store, "NEU-4405", "4405-004"),
    }
    assert [row for row in finding_rows(store) if row.subject not in ("2101-001", "4405-004")] == untouched
    assert not evaluate_all(store, settings, NOW + timedelta(hours=2)).changes.changed  # same as a full run


def test_an_exam_of_a_patient_in_no_trial_evaluates_nothing(store: Engine, database_url: str) -> None:
    settings = _settings(database_url)
    intake = Intake(store, MappingSettings.from_settings(settings.hl7), clock=lambda: NOW)
    [booked] = intake.receive_batch([Arrival(siu(mrn="E55555"))])
    summary = evaluate_for_exams(store, settings, booked.exam_ids, NOW)
    assert summary.scope == frozenset() and not summary.changes.changed
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(findings)).scalar_one() == 0


def test_an_anchor_update_moves_the_windows_at_once(
    store: Engine, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    evaluate_all(store, _settings(database_url), NOW)
    week_6 = "ONC-2101:2101-001:restaging#1"
    before = occurrence_row(store, week_6)
    code, out, err = cli(
        capsys,
        database_url,
        *("enroll", "update", "--trial", "ONC-2101", "--subject", "2101-001", "--anchor", "c1d1=2025-08-04"),
    )
    assert code == 0, err
    assert "updated ONC-2101 2101-001" in out and "evaluation: 2 enrolment(s)" in out
    after = occurrence_row(store, week_6)
    assert after.window_start - before.window_start == timedelta(days=14)
    assert after.due - before.due == timedelta(days=14)
    [missed] = finding_rows(store, occurrence_key=week_6, status="open")
    assert missed.window_start == after.window_start


def test_evaluate_prints_counts_and_a_second_run_changes_nothing(
    store: Engine, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, database_url, "evaluate")
    assert code == 0
    assert "evaluation: 12 enrolment(s)" in out and "missed" in out
    code, out, _ = cli(capsys, database_url, "evaluate")
    # The second run starts from what the first stored: no one to judge again.
    assert "evaluation: 0 enrolment(s) (12 up to date, not judged again)" in out
    assert "0 opened, 0 reopened, 0 updated, 0 resolved" in out
    code, out, _ = cli(capsys, database_url, "evaluate", "--full")
    assert "evaluation: 12 enrolment(s) in" in out and "0 opened, 0 reopened, 0 updated, 0 resolved" in out


def test_findings_json_carries_the_documented_keys_and_no_mrn(
    store: Engine, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(database_url)
    intake = Intake(store, MappingSettings.from_settings(settings.hl7), clock=lambda: NOW)
    [booked] = intake.receive_batch([Arrival(siu(mrn="E10001"))])
    evaluate_all(store, settings, NOW)

    code, out, _ = cli(capsys, database_url, "findings", "--json", "--trial", "ONC-2101", "--open")
    rows = json.loads(out)
    assert code == 0 and rows
    assert all(row.keys() >= REQUIRED_KEYS for row in rows)
    assert {row["trial"] for row in rows} == {"ONC-2101"} and {row["status"] for row in rows} == {"open"}
    [in_window] = [row for row in rows if row["kind"] == "in_window"]
    assert in_window["occurrence"] == "Week 72 restaging"
    assert (in_window["window_start"], in_window["window_end"]) == ("2026-11-30", "2026-12-14")
    assert in_window["exam_id"] == booked.exam_ids[0] and in_window["subject"] == "2101-001"

    code, table, _ = cli(capsys, database_url, "findings")
    assert code == 0 and "in_window" in table
    assert not [mrn for mrn in EXAMPLE_MRNS if mrn in out or mrn in table]
    # A trial that is not there is said to be not there, not listed as having no findings.
    code, out, err = cli(capsys, database_url, "findings", "--trial", "ONC-2110")
    assert (code, out) == (2, "")
    assert err.strip() == "error: no trial 'ONC-2110' (trials: LYM-3302, NEU-4405, ONC-2101)"


def test_a_quiet_feeds_change_is_re_evaluated_at_once_and_a_burst_after_it_in_one_call(
    store: Engine, database_url: str
) -> None:
    settings = _settings(database_url)
    calls: list[tuple[float, Sequence[int]]] = []

    async def scenario() -> None:
        intake = Intake(store, MappingSettings.from_settings(settings.hl7), clock=lambda: NOW)
        writer = FeedWriter(
            intake, after_batch=lambda ids, now: calls.append((time.monotonic(), ids)), observe_every=1.0
        )
        await writer.start()
        try:
            sent = time.monotonic()
            await writer.submit(Arrival(siu(control_id="B0", csn="700000010", mrn="E10001")))
            while not calls and time.monotonic() - sent < 5:
                await asyncio.sleep(0.01)
            assert calls and calls[0][0] - sent < 0.5  # the booking did not wait for observe_every
            for n in range(1, 5):  # a burst right after that call: held until observe_every passed
                await writer.submit(Arrival(siu(control_id=f"B{n}", csn=f"70000001{n}", mrn="E10001")))
            await asyncio.sleep(0.3)
            assert len(calls) == 1
            await asyncio.sleep(1.2)
            assert len(calls) == 2 and len(calls[1][1]) == 4  # then once, with the four exams
            assert calls[1][0] - calls[0][0] >= 1.0
        finally:
            await writer.close()

    asyncio.run(scenario())


def test_an_exam_filed_again_under_another_patient_is_no_longer_the_first_patients_visit(
    store: Engine, database_url: str
) -> None:
    settings = _settings(database_url)
    evaluator = Evaluator(store, settings)
    intake = Intake(store, MappingSettings.from_settings(settings.hl7), clock=lambda: NOW)
    booked = intake.receive(Arrival(siu(mrn="E10001")))
    evaluator.evaluate_for_exams(booked.exam_ids, NOW)
    [in_window] = finding_rows(store, occurrence_key=WEEK_72, kind="in_window")
    assert in_window.status == "open"
    # The registration desk had the wrong patient: the feed's re-evaluation of the moved exam
    # judges the first patient again too, whose Week 72 has nothing booked any more.
    moved = intake.receive(Arrival(siu("S14", control_id="MSG0002", mrn="E10002")))
    evaluator.evaluate_for_exams(moved.exam_ids, NOW)
    rows = {row.kind: row.status for row in finding_rows(store, occurrence_key=WEEK_72)}
    assert rows["in_window"] == "resolved" and rows["due_unscheduled"] == "open"
