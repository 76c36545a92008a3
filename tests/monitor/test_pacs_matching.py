"""Which exam a PACS study belongs to: accession first, else patient + site day + modality,
exactly one or none; never a cancelled exam; the day as the site counts it, DST included."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

from monitor.config import Settings
from monitor.feeds.hl7.intake import Arrival, Intake
from monitor.feeds.hl7.mapping import MappingSettings
from monitor.store.database import make_engine
from monitor.store.images import images_for, record_study
from rules.acquisition import SeriesSeen, StudySeen
from tests.monitor.hl7_messages import siu
from tests.monitor.trial_setup import load_examples

NEW_YORK = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    load_examples(engine)
    yield engine
    engine.dispose()


def _book(
    engine: Engine, control_id: str, csn: str, start: str, status: str = "Booked", modality: str = "CT"
) -> int:
    """Book (or, ``status="Cancelled"``, cancel) an exam of E10001 as Epic would."""
    intake = Intake(engine, MappingSettings.from_settings(Settings().hl7), clock=lambda: NOW)
    trigger = "S15" if status == "Cancelled" else "S12"
    raw = siu(
        trigger, control_id=control_id, csn=csn, start=start, status=status, modality=modality, mrn="E10001"
    )
    (exam_id,) = intake.receive(Arrival(raw)).exam_ids
    return exam_id


def _study(uid: str, day: date, modalities: tuple[str, ...] = ("CT",), accession: str = "") -> StudySeen:
    return StudySeen(uid, accession, "E10001", day, modalities, (SeriesSeen(f"{uid}.1", 1, "AX", "CT", 3),))


def _record(engine: Engine, study: StudySeen) -> int | None:
    with engine.begin() as conn:
        matched, _ = record_study(conn, study, 3, NEW_YORK, NOW)
    return matched


def test_a_study_matches_the_one_exam_of_its_patient_day_and_modality_and_is_kept_when_none_or_two_fit(
    store: Engine,
) -> None:
    ct = _book(store, "M1", "7000000001", "20261201093000")
    assert _record(store, _study("1.1", date(2026, 12, 1))) == ct
    assert _record(store, _study("1.2", date(2026, 12, 2))) is None  # no exam that day
    assert _record(store, _study("1.3", date(2026, 12, 1), ("MR",))) is None  # not a CT study
    second = _book(store, "M2", "7000000002", "20261201150000")  # a second CT that afternoon
    assert _record(store, _study("1.4", date(2026, 12, 1))) is None  # two fit: not guessed
    with store.connect() as conn:
        assert set(images_for(conn, None)) == {ct}
    assert second != ct


def test_a_cancelled_exam_takes_no_study_and_a_rebooked_one_does(store: Engine) -> None:
    _book(store, "M1", "7000000001", "20261201093000")
    _book(store, "M2", "7000000001", "20261201093000", status="Cancelled")
    assert _record(store, _study("2.1", date(2026, 12, 1))) is None
    rebooked = _book(store, "M3", "7000000003", "20261201110000")
    assert _record(store, _study("2.1", date(2026, 12, 1))) == rebooked  # the same study, read again


def test_the_study_date_is_the_sites_day_across_the_fall_back(store: Engine) -> None:
    # 1 Nov 2026, 00:30 EDT is 04:30 UTC; 23:30 EST is 2 Nov 04:30 UTC: UTC dates would lie.
    early = _book(store, "M1", "7000000001", "20261101003000")
    late = _book(store, "M2", "7000000002", "20261101233000", modality="MR")
    assert _record(store, _study("3.1", date(2026, 11, 1))) == early
    assert _record(store, _study("3.2", date(2026, 11, 1), ("MR",))) == late
    assert _record(store, _study("3.3", date(2026, 11, 2), ("MR",))) is None
