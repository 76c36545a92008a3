"""The dashboard's message browser over real HTTP: who may use it, what it shows, and
reprocessing a rejected booking after a fix (CSRF, audit, the exam appears)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import select

from monitor.clock import FixedClock
from monitor.feeds.hl7 import intake as intake_module
from monitor.feeds.hl7.intake import Arrival, Intake
from monitor.feeds.hl7.mapping import MappingSettings
from monitor.store.schema import exams
from tests.monitor.hl7_messages import siu
from tests.monitor.trial_setup import NOW
from tests.monitor.web.conftest import Login, Site, csrf_in
from tests.monitor.web.test_scoping import NEU_EXAM, ONC_EXAM, _object_routes

CSN = "7800000001"


def _rejected_booking(site: Site, monkeypatch: pytest.MonkeyPatch) -> int:
    """A booking of an enrolled patient (ONC-2101 2101-001) that a mapping bug rejected."""

    def bug(raw: bytes, mapping: Any) -> Any:
        raise KeyError("a mapping bug")

    intake = Intake(site.engine, MappingSettings.from_settings(site.settings.hl7), clock=FixedClock(NOW))
    with monkeypatch.context() as patched:
        patched.setattr(intake_module, "to_events", bug)
        receipt = intake.receive(Arrival(siu(control_id="WEBREJ1", csn=CSN, mrn="E10001"), peer="10.9.9.9"))
    assert receipt.outcome == "rejected" and receipt.message_id is not None
    return receipt.message_id


@pytest.mark.parametrize("name", ["coord", "viewer", "tech"])
def test_only_admins_and_the_integration_role_use_the_browser(site: Site, login: Login, name: str) -> None:
    client = login(name)
    assert client.get("/messages").status_code == 403
    assert client.get("/feeds/messages/1").status_code == 403
    token = csrf_in(client.get("/upcoming").text)
    assert client.post("/feeds/messages/1/reprocess", data={"csrf_token": token}).status_code == 403
    every = {"csrf_token": token, "since": "2026-11-01"}
    assert client.post("/messages/reprocess", data=every).status_code == 403


def test_the_integration_role_sees_feeds_and_messages_and_no_schedule(site: Site, login: Login) -> None:
    integ = login("integ")
    assert integ.get("/").headers["location"] == "/messages"
    assert integ.get("/feeds").status_code == 200
    page = integ.get("/messages").text
    assert "W0001" in page and "message 1" in page
    for trial, exam in (("ONC-2101", ONC_EXAM), ("NEU-4405", NEU_EXAM)):
        for route in _object_routes(site, trial, exam):
            assert integ.get(route).status_code in (403, 404), route
    assert integ.get("/api/findings").json() == [] and integ.get("/api/exams?days=60").json() == []
    assert "2101-001" not in integ.get("/upcoming?days=30").text


def test_a_message_reads_field_by_field_and_every_read_is_audited(site: Site, login: Login) -> None:
    integ = login("integ")
    before = len(site.audit_rows(username="integ", object_type="message"))
    page = integ.get("/feeds/messages/1").text
    assert "PID-3" in page and "Patient Identifier List" in page and "Filler Appointment Id" in page
    assert "exam 1" in page and "Answer sent" in page
    assert "Acknowledgement sent" in page and "MSA|AA|W0001" in page
    assert len(site.audit_rows(username="integ", object_type="message")) == before + 1
    checked = integ.get("/feeds/messages/1?validate=true").text
    assert "Structure" in checked and "Check the structure" not in checked
    assert integ.get("/messages?mrn=E10001").status_code == 400  # never in a URL (proxy logs)
    form = {"csrf_token": csrf_in(integ.get("/messages").text), "mrn": "E10001"}
    assert "W0001" in integ.post("/messages", data=form).text
    assert integ.post("/messages", data={**form, "csrf_token": "x"}).status_code == 403
    searches = site.audit_rows(username="integ", object_type="messages")
    assert searches and "search by MRN" in searches[-1].detail  # type: ignore[attr-defined]
    assert "E10001" not in searches[-1].detail  # type: ignore[attr-defined]


def test_a_rejected_booking_is_reprocessed_from_its_page_and_its_exam_appears(
    site: Site, login: Login, monkeypatch: pytest.MonkeyPatch
) -> None:
    message_id = _rejected_booking(site, monkeypatch)
    integ = login("integ")
    page = integ.get(f"/feeds/messages/{message_id}").text
    assert "Reprocess this message" in page
    assert integ.post(f"/feeds/messages/{message_id}/reprocess", data={"csrf_token": "x"}).status_code == 403
    with site.engine.connect() as conn:
        assert conn.execute(select(exams.c.id).where(exams.c.external_id == CSN)).first() is None

    answer = integ.post(f"/feeds/messages/{message_id}/reprocess", data={"csrf_token": csrf_in(page)})
    assert answer.status_code == 303
    target = urlparse(answer.headers["location"])
    assert "Reprocessed as message" in parse_qs(target.query)["note"][0]
    attempt_page = integ.get(answer.headers["location"]).text
    assert f"message {message_id}" in attempt_page and "accepted" in attempt_page
    with site.engine.connect() as conn:
        assert conn.execute(select(exams.c.id).where(exams.c.external_id == CSN)).first() is not None
    rows = site.audit_rows(action="message.reprocess", object_id=str(message_id))
    assert [(r.username, r.client) for r in rows] == [("integ", "testclient")]  # type: ignore[attr-defined]

    again = integ.get(f"/feeds/messages/{message_id}").text
    assert "Reprocess this message" not in again and "Reprocessed as" in again
    listing = integ.get("/messages?outcome=reprocessed").text
    assert f'reprocessing of <a href="/feeds/messages/{message_id}">' in listing
