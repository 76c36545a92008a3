"""Reused control ids are visible, and /metrics labels never carry what a sender wrote."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from monitor.clock import FixedClock
from monitor.feeds.hl7.intake import Arrival, Intake
from monitor.feeds.hl7.mapping import MappingSettings
from monitor.store.accounts import Role, add_user
from monitor.store.database import make_engine
from monitor.store.schema import exams, messages
from tests.monitor.hl7_messages import PATIENT_NAME, siu
from tests.monitor.trial_setup import NOW
from tests.monitor.web.conftest import Site
from tests.monitor.web.site import PASSWORD, settings_for


@pytest.fixture
def office(database_url: str, tmp_path: Path) -> Iterator[Site]:
    """A store with one reused control id: MSG0001 booked the CT, then came again moving it."""
    engine = make_engine(database_url)
    settings = settings_for(database_url)
    intake = Intake(engine, MappingSettings.from_settings(settings.hl7), clock=lambda: NOW)
    for raw in (
        siu(sent_at="20261120080000"),
        siu("S13", start="20261202093000", sent_at="20261121080000"),  # MSG0001 again
        siu("S13", start="20261203093000", control_id="MSG0002", sent_at="20261122080000"),
        # A sender writing a name where the type goes, and inventing types.
        siu(control_id="MSG0003", csn="7000000003").replace(b"SIU^S12^SIU_S12", PATIENT_NAME.encode()),
        *(
            siu(control_id=f"X{n}", csn=f"71{n}").replace(b"SIU^S12^SIU_S12", f"ZZ{n}^Q".encode())
            for n in range(5)
        ),
    ):
        intake.receive(Arrival(raw, received_at=NOW))
    with engine.begin() as conn:
        add_user(conn, "admin", Role.ADMIN, PASSWORD, NOW)
        add_user(conn, "viewer", Role.VIEWER, PASSWORD, NOW)
    yield Site(engine, settings, FixedClock(NOW), database_url)
    engine.dispose()


def _ids(office: Site) -> tuple[int, int, int]:
    with office.engine.connect() as conn:
        first, reused = conn.execute(
            select(messages.c.id).where(messages.c.control_id == "MSG0001").order_by(messages.c.id)
        ).scalars()
        exam = conn.execute(select(exams.c.id).where(exams.c.external_id == "7000000001")).scalar_one()
    return first, reused, exam


def test_feed_health_lists_the_reused_key_with_links_to_both_messages(office: Site) -> None:
    first, reused, _ = _ids(office)
    page = office.login("admin").get("/feeds").text
    section = page[page.index('id="reused"') :]
    assert "MSG0001" in section and "EPIC HOSP" in section and "1 time" in section
    assert f'href="/feeds/messages/{first}"' in section and f'href="/feeds/messages/{reused}"' in section
    assert re.search(r'<td>epic</td>.*?<a href="#reused">1</a>', page, re.S)
    # A viewer sees the reuse but gets no link to the raw (PHI) messages.
    viewer = office.login("viewer").get("/feeds").text
    assert "MSG0001" in viewer and "/feeds/messages/" not in viewer


def test_the_exam_page_marks_the_message_that_reused_a_control_id(office: Site) -> None:
    first, _, exam = _ids(office)
    page = office.login("admin").get(f"/exams/{exam}").text
    history = page[page.index("Feed history") :]
    assert history.count("control id reused") == 1
    assert f'first used by <a href="/feeds/messages/{first}">message {first}</a>' in history


def test_metrics_count_reused_keys_and_take_type_labels_from_a_closed_set(office: Site) -> None:
    text = office.client().get("/metrics").text
    assert 'hiro_messages_key_reused_total{feed="epic"} 1.0' in text
    assert 'hiro_messages_total{feed="epic",outcome="accepted",type="SIU^S12"} 1.0' in text
    assert 'hiro_messages_total{feed="epic",outcome="accepted",type="SIU^S13"} 2.0' in text
    # Six invented types (one of them a patient's name) are one series.
    assert 'hiro_messages_total{feed="epic",outcome="rejected",type="other"} 6.0' in text
    assert "TESTPATIENT" not in text and "ZZ" not in text
    types = set(re.findall(r'^hiro_messages_total\{[^}]*type="([^"]*)"', text, re.M))
    assert types == {"SIU^S12", "SIU^S13", "other"}
