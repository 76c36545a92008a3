"""Roles and scope: every object route answers 404 outside the account's trials or modalities;
patient identifiers appear only where the role may see them; every view is audited."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from monitor.store.schema import enrolments, findings
from tests.monitor.trial_setup import EXAMPLE_MRNS
from tests.monitor.web.conftest import Login, Site, csrf_in

ONC_EXAM, ONC_WRONG_CODE, NEU_EXAM, LYM_EXAM = 1, 2, 3, 4
MISSING = 999_999


def _ids(site: Site, table: object, trial: str) -> list[int]:
    with site.engine.connect() as conn:
        return list(
            conn.execute(select(table.c.id).where(table.c.trial == trial).order_by(table.c.id)).scalars()
        )  # type: ignore[attr-defined]


def _object_routes(site: Site, trial: str, exam: int) -> list[str]:
    finding = _ids(site, findings, trial)[0]
    enrolment = _ids(site, enrolments, trial)[0]
    return [
        f"/trials/{trial}",
        f"/exams/{exam}",
        f"/exams/{exam}/sheet",
        f"/api/exams/{exam}",
        f"/api/findings/{finding}",
        f"/api/trials/{trial}",
        f"/api/enrolments/{enrolment}",
    ]


def test_a_coordinator_gets_404_for_every_object_of_another_trial(site: Site, login: Login) -> None:
    coord = login("coord")  # ONC-2101 only
    for route in _object_routes(site, "ONC-2101", ONC_EXAM):
        assert coord.get(route).status_code == 200, route
    for trial, exam in (("NEU-4405", NEU_EXAM), ("LYM-3302", LYM_EXAM)):
        for route in _object_routes(site, trial, exam):
            assert coord.get(route).status_code == 404, route
    for route in (f"/exams/{MISSING}", f"/api/exams/{MISSING}", f"/api/findings/{MISSING}", "/trials/NOPE"):
        assert coord.get(route).status_code == 404, route
    # Writing to another trial's finding is refused the same way.
    token = csrf_in(coord.get("/findings").text)
    other = _ids(site, findings, "NEU-4405")[0]
    answer = coord.post(f"/findings/{other}/review", data={"action": "acknowledge", "csrf_token": token})
    assert answer.status_code == 404
    assert not site.audit_rows(action="finding.acknowledge", object_id=str(other))


def test_the_other_coordinator_sees_the_mirror_image(site: Site, login: Login) -> None:
    neuro = login("neuro")
    for route in _object_routes(site, "NEU-4405", NEU_EXAM):
        assert neuro.get(route).status_code == 200, route
    for route in _object_routes(site, "ONC-2101", ONC_EXAM):
        assert neuro.get(route).status_code == 404, route


def test_lists_hold_only_the_accounts_trials(site: Site, login: Login) -> None:
    coord = login("coord")
    assert {f["trial"] for f in coord.get("/api/findings").json()} == {"ONC-2101"}
    assert {e["trial"] for e in coord.get("/api/enrolments").json()} == {"ONC-2101"}
    assert [t["trial"] for t in coord.get("/api/trials").json()] == ["ONC-2101"]
    page = coord.get("/upcoming?days=30").text
    assert "2101-001" in page and "4405-001" not in page and "3302-001" not in page
    csv = coord.get("/findings.csv?all=true").text
    assert "ONC-2101" in csv and "NEU-4405" not in csv


def test_a_technologist_sees_sheets_and_upcoming_of_their_modalities_only(site: Site, login: Login) -> None:
    tech = login("tech")  # CT
    assert tech.get(f"/exams/{ONC_EXAM}/sheet").status_code == 200
    assert tech.get(f"/exams/{NEU_EXAM}/sheet").status_code == 404  # MR
    assert tech.get(f"/api/exams/{NEU_EXAM}").status_code == 404
    page = tech.get("/upcoming?days=30").text
    assert "2101-001" in page and "4405-001" not in page
    for route in ("/trials", "/trials/ONC-2101", f"/exams/{ONC_EXAM}", "/findings", "/feeds", "/audit",
                  "/api/trials", "/api/enrolments"):  # fmt: skip
        assert tech.get(route).status_code == 403, route


@pytest.mark.parametrize("name", ["coord", "viewer", "tech"])
def test_only_admins_see_the_audit_trail_and_raw_messages(site: Site, login: Login, name: str) -> None:
    client = login(name)
    assert client.get("/audit").status_code == 403
    assert client.get("/feeds/messages/1").status_code == 403
    admin = login("admin")
    assert admin.get("/audit").status_code == 200
    assert "MSH|" in admin.get("/feeds/messages/1").text


def test_a_viewer_reads_everything_but_changes_nothing(site: Site, login: Login) -> None:
    viewer = login("viewer")
    for route in _object_routes(site, "NEU-4405", NEU_EXAM):
        assert viewer.get(route).status_code == 200, route
    page = viewer.get("/findings").text
    assert "Acknowledge" not in page
    token = csrf_in(page)
    finding = _ids(site, findings, "ONC-2101")[0]
    answer = viewer.post(f"/findings/{finding}/review", data={"action": "acknowledge", "csrf_token": token})
    assert answer.status_code == 403


def _mrns_in(text: str) -> list[str]:
    return [mrn for mrn in EXAMPLE_MRNS if mrn in text]


def test_mrns_appear_only_for_admins_and_coordinators_on_the_exam(site: Site, login: Login) -> None:
    coord = login("coord")
    assert "E10001" in coord.get(f"/exams/{ONC_EXAM}").text
    assert coord.get(f"/api/exams/{ONC_EXAM}").json()["mrn"] == "E10001"
    viewer = login("viewer")
    assert _mrns_in(viewer.get(f"/exams/{ONC_EXAM}").text) == []
    assert _mrns_in(viewer.get(f"/exams/{ONC_EXAM}/sheet").text) == []
    assert "mrn" not in viewer.get(f"/api/exams/{ONC_EXAM}").json()
    viewer_sheet = viewer.get(f"/exams/{ONC_EXAM}/sheet").text
    assert "TESTPATIENT" not in viewer_sheet and "1961-02-03" not in viewer_sheet
    # The technologist identifies the patient at the scanner: name and birth date (read from
    # the stored message, never kept apart) and the MRN, on the sheet and nowhere else.
    tech = login("tech")
    sheet = tech.get(f"/exams/{ONC_EXAM}/sheet").text
    assert "TESTPATIENT, ALPHA, born 1961-02-03" in sheet and _mrns_in(sheet) == ["E10001"]
    assert _mrns_in(tech.get("/upcoming?days=30").text) == []
    for client in (coord, viewer, login("admin")):
        for route in ("/upcoming?days=30", "/findings?all=true", "/findings.csv?all=true", "/feeds",
                      "/trials/ONC-2101", "/api/findings?include_resolved=true", "/api/enrolments",
                      "/api/exams?days=30"):  # fmt: skip
            answer = client.get(route)
            assert answer.status_code in (200, 404), route
            assert _mrns_in(answer.text) == [], route


def test_every_view_of_patient_data_writes_an_audit_row(site: Site, login: Login) -> None:
    coord = login("coord")
    for route, object_type, object_id in (
        (f"/exams/{ONC_EXAM}", "exam", str(ONC_EXAM)),
        (f"/exams/{ONC_EXAM}/sheet", "sheet", str(ONC_EXAM)),
        ("/trials/ONC-2101", "trial", "ONC-2101"),
        ("/upcoming", "upcoming", ""),
        ("/findings", "findings", ""),
        (f"/api/exams/{ONC_EXAM}", "exam", str(ONC_EXAM)),
        ("/api/trials/ONC-2101", "trial", "ONC-2101"),
    ):
        before = len(site.audit_rows(username="coord", object_type=object_type, object_id=object_id))
        assert coord.get(route).status_code == 200
        rows = site.audit_rows(username="coord", object_type=object_type, object_id=object_id)
        assert len(rows) == before + 1, route
        assert rows[-1].client == "testclient"  # type: ignore[attr-defined]


def test_acknowledging_a_finding_keeps_who_when_and_the_comment(site: Site, login: Login) -> None:
    coord = login("coord")
    token = csrf_in(coord.get("/findings").text)
    finding = _ids(site, findings, "ONC-2101")[0]
    answer = coord.post(
        f"/findings/{finding}/review",
        data={"action": "acknowledge", "comment": "Called scheduling <b>now</b>", "csrf_token": token},
    )
    assert answer.status_code == 303
    [row] = site.audit_rows(action="finding.acknowledge", object_id=str(finding))
    assert (row.username, row.detail) == ("coord", "Called scheduling <b>now</b>")  # type: ignore[attr-defined]
    page = coord.get("/findings?all=true").text
    assert "acknowledged by coord" in page
    assert "Called scheduling &lt;b&gt;now&lt;/b&gt;" in page  # escaped, not markup
    assert "acknowledge,coord" in coord.get("/findings.csv?all=true").text


def test_the_sheet_says_whom_to_call_and_whether_the_exam_is_in_its_window(login: Login) -> None:
    sheet = login("tech").get(f"/exams/{ONC_EXAM}/sheet").text
    assert "ONC-2101 coordinator: 555-0121" in sheet  # routing.contacts of the example protocol
    assert "Visit window" in sheet and "this exam is in the window" in sheet
