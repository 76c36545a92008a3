"""Identifier pools: a feed that lists another facility's MR number before the site's.

With ``[hl7] mrn_authorities = []`` the MRN is the first identifier of type MR, so an
enrolled subject's exam (E10001, ONC-2101 2101-001 and NEU-4405 4405-004) booked with
``OSH55501^^^OSH^MR`` first is matched to nobody. check-config warns, naming the pools and
the setting; Feed health lists the exam. Neither ever shows an identifier's value. With
``mrn_authorities = ["EPI"]`` the same feed is matched and neither says anything.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from sqlalchemy import Engine

from monitor.config import Settings
from monitor.feeds.hl7.intake import Arrival, Intake
from monitor.feeds.hl7.mapping import MappingSettings
from monitor.store.database import make_engine
from monitor.store.exams.pools import missed_enrolled, survey_pools
from tests.monitor.hl7_messages import siu
from tests.monitor.trial_setup import EXAMPLE_MRNS, NOW, load_examples

OTHER_FACILITY = "OSH55501"  # the outside hospital's MR number of the same patient
# Every identifier value the feed below carries: none may appear in any output.
IDENTIFIERS = (*EXAMPLE_MRNS, OTHER_FACILITY)
CSN = "7200000001"


def _feed() -> list[bytes]:
    """E10001's CT booked with the other facility's MR number first (the one missed), and
    E10002's booked as usual (matched whatever the setting)."""
    return [
        siu(control_id="P0001", csn=CSN, mrn=f"{OTHER_FACILITY}^^^OSH^MR~E10001"),
        siu(control_id="P0002", csn="7200000002", mrn="E10002", start="20261127140000"),
    ]


def _settings(url: str, authorities: Sequence[str] = ()) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": url},
            "site": {"timezone": "America/New_York"},
            "hl7": {"timezone": "America/New_York", "mrn_authorities": list(authorities)},
            "web": {"cookie_secure": False},
        }
    )


def _receive(engine: Engine, settings: Settings, messages: Sequence[bytes]) -> None:
    intake = Intake(engine, MappingSettings.from_settings(settings.hl7), clock=lambda: NOW)
    for raw in messages:
        assert intake.receive(Arrival(raw, received_at=NOW)).ack_code == "AA"


def _no_identifier_in(text: str) -> None:
    for value in IDENTIFIERS:
        assert value not in text, f"identifier value {value!r} shown"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    load_examples(engine)
    yield engine
    engine.dispose()


def test_identifiers_past_the_third_and_the_window(engine: Engine, database_url: str) -> None:
    """An enrolled MRN fifth in PID-3 is found; exams outside the window are not listed."""
    many = "A1^^^X1^MR~A2^^^X2^MR~A3^^^X3^MR~A4^^^X4^PI~E10006"
    _receive(
        engine,
        _settings(database_url),
        [
            siu(control_id="W1", csn="7300000001", mrn=many, start="20261203080000"),
            siu(control_id="W2", csn="7300000002", mrn=many, start="20261110080000"),  # 15 days ago
            siu(control_id="W3", csn="7300000003", mrn=many, start="20261215080000"),  # 20 days ahead
        ],
    )
    with engine.connect() as conn:
        found = missed_enrolled(conn, NOW)
        assert found.total == 1
        [exam] = found.exams
        assert (exam.external_id, exam.chosen_pool, exam.found_pool) == ("7300000001", "X1 (MR)", "EPI (MR)")
        assert exam.enrolments == (("LYM-3302", "3302-001"),)
        assert missed_enrolled(conn, NOW, trials=["ONC-2101"]).total == 0
        survey = survey_pools(conn, "epic", ("MR", "MRN"))
        assert survey.pools == {"X1": 3, "X2": 3, "X3": 3, "EPI": 3} and survey.several == 3
