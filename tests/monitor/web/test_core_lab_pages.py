"""The core lab in the dashboard: the list by deadline, the exam's submission, and the office's
actions (CSRF-checked, scoped to the account's trials, audited)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from monitor.dispatch.core_lab import record_upload, track_due
from monitor.store.images import record_study
from monitor.store.schema import exams
from monitor.store.submissions import submission_for
from rules.acquisition import SeriesSeen, StudySeen
from tests.monitor.web.conftest import Login, Site, csrf_in

ARRIVED = datetime(2026, 12, 1, 16, 0, tzinfo=UTC)  # Tue 11:00 New York
DUE = "Thu 3 Dec 2026 11:00"  # ONC-2101: 2 business days later


def _images_arrive(site: Site) -> int:
    """W0001's CT (ONC-2101 2101-001) reaches the PACS; the poll opens its submission (once)."""
    with site.engine.begin() as conn:
        exam_id = int(
            conn.execute(select(exams.c.id).where(exams.c.external_id == "7100000001")).scalar_one()
        )
        series = SeriesSeen("1.2.826.7.2", 2, "PORTAL VENOUS", "CT", 40, {})
        study = StudySeen("1.2.826.7", "", "E10001", date(2026, 12, 1), ("CT",), (series,))
        record_study(conn, study, 40, ZoneInfo("America/New_York"), ARRIVED)
        opened = submission_for(conn, exam_id) is None
    assert track_due(site.engine, site.settings, ARRIVED) == ([exam_id] if opened else [])
    return exam_id


def test_the_office_sees_what_is_due_and_records_an_upload(site: Site, login: Login) -> None:
    exam_id = _images_arrive(site)
    site.clock.now = ARRIVED + timedelta(hours=1)
    coord = login("coord")

    listing = coord.get("/core-lab").text
    assert f'href="/exams/{exam_id}#core-lab"' in listing and "2101-001" in listing
    assert DUE in listing and ">due<" in listing
    assert "E10001" not in listing  # subjects by study id
    assert f"/exams/{exam_id}" not in login("neuro").get("/core-lab").text  # another trial's office

    page = coord.get(f"/exams/{exam_id}").text
    assert 'id="core-lab"' in page and "DICOM CORELAB@corelab.example.org:11112" in page
    token = csrf_in(page)
    assert coord.post(f"/exams/{exam_id}/core-lab/uploaded", data={"confirmation": "X"}).status_code == 403
    assert login("viewer").post(
        f"/exams/{exam_id}/core-lab/uploaded", data={"confirmation": "X", "csrf_token": token}
    ).status_code == 403  # fmt: skip
    neuro = login("neuro")
    neuro_token = csrf_in(neuro.get("/core-lab").text)
    answer = neuro.post(
        f"/exams/{exam_id}/core-lab/uploaded", data={"confirmation": "X", "csrf_token": neuro_token}
    )
    assert answer.status_code == 404

    # No PACS to copy from here: the send is refused with the reason, nothing recorded.
    refused = coord.post(f"/exams/{exam_id}/core-lab/send", data={"csrf_token": token})
    assert refused.status_code == 409 and "[pacs] orthanc_url is not set" in refused.text

    done = coord.post(
        f"/exams/{exam_id}/core-lab/uploaded", data={"confirmation": "SPN-7781", "csrf_token": token}
    )
    assert done.status_code == 303 and done.headers["location"] == f"/exams/{exam_id}#core-lab"
    page = coord.get(f"/exams/{exam_id}").text
    assert ">submitted<" in page and "confirmation SPN-7781" in page and "by coord" in page
    [audit] = site.audit_rows(action="core_lab_submitted")
    assert (audit.username, audit.object_id, audit.client, audit.detail) == (
        "coord", str(exam_id), "testclient", "confirmation SPN-7781"
    )  # fmt: skip
    assert site.audit_rows(action="core_lab_copy_failed") == []


def test_a_core_lab_query_is_logged_answered_and_counted_on_the_trial_page(site: Site, login: Login) -> None:
    exam_id = _images_arrive(site)
    with site.engine.connect() as conn:
        submitted = submission_for(conn, exam_id)
    if submitted is not None and submitted.status == "due":  # run alone: as the test above leaves it
        record_upload(site.engine, exam_id, "SPN-7781", by="coord", client="testclient", now=ARRIVED)
    site.clock.now = ARRIVED + timedelta(days=3)  # Fri 4 Dec
    coord = login("coord")
    token = csrf_in(coord.get(f"/exams/{exam_id}").text)
    text = "Series 2 is missing slices 40-44; please resend."
    form = {"received_on": "2026-12-04", "answer_due": "2026-12-08", "text": text, "csrf_token": token}

    assert login("viewer").post(f"/exams/{exam_id}/core-lab/queries", data=form).status_code == 403
    bad = coord.post(f"/exams/{exam_id}/core-lab/queries", data={**form, "answer_due": "2026-12-01"})
    assert bad.status_code == 422 and "cannot be due before" in bad.text
    assert coord.post(f"/exams/{exam_id}/core-lab/queries", data=form).status_code == 303

    page = coord.get(f"/exams/{exam_id}").text
    queries = page[page.index('id="core-lab-queries"') : page.index('id="notifications"')]
    assert text in queries and "2026-12-08" in queries and ">open<" in queries
    [logged] = site.audit_rows(action="core_lab_query_logged")
    assert text not in logged.detail and "answer due 2026-12-08" in logged.detail
    trial = coord.get("/trials/ONC-2101").text
    assert "Queries: 1 on 1 submitted exam (100%), 1 open." in trial
    assert ">query open<" in coord.get("/core-lab").text

    query_id = int(re.search(r"/core-lab/queries/(\d+)/answer", queries).group(1))  # type: ignore[union-attr]
    answer = {"answer": "Resent series 2 on 7 Dec.", "csrf_token": token}
    assert coord.post(f"/exams/{exam_id}/core-lab/queries/{query_id}/answer", data=answer).status_code == 303
    again = coord.post(f"/exams/{exam_id}/core-lab/queries/{query_id}/answer", data=answer)
    assert again.status_code == 409  # answered already
    page = coord.get(f"/exams/{exam_id}").text
    assert "Resent series 2 on 7 Dec. (coord," in page
    assert "1 on 1 submitted exam (100%), 0 open." in coord.get("/trials/ONC-2101").text

    assert coord.post(f"/exams/{exam_id}/core-lab/accepted", data={"csrf_token": token}).status_code == 303
    assert ">accepted<" in coord.get(f"/exams/{exam_id}").text
    actions = [row.action for row in site.audit_rows(object_type="exam") if row.action.startswith("core_lab")]
    assert actions == [
        "core_lab_submitted",
        "core_lab_query_logged",
        "core_lab_query_answered",
        "core_lab_accepted",
    ]


def test_the_transmittal_form_is_prefilled_without_phi_completed_once_and_kept(
    site: Site, login: Login
) -> None:
    exam_id = _images_arrive(site)
    site.clock.now = ARRIVED + timedelta(hours=2)
    viewer = login("viewer").get(f"/exams/{exam_id}/core-lab/form").text
    assert 'name="field_comments"' not in viewer  # a viewer reads, never fills in
    coord = login("coord")
    page = coord.get(f"/exams/{exam_id}/core-lab/form").text
    assert "Example Oncology Inc." in page and "ONC-2101 RECIST 1.1 CT" in page and "2101-001" in page
    assert "40 in 1 series" in page and "2026-12-01" in page  # the trial keeps dates
    for phi in ("E10001", "99887766", "TESTPATIENT", "A000001", "7100000001"):
        assert phi not in page, phi
    form = {
        "field_technologist": "R. Tech",
        "field_comments": "Arms down, as the manual allows.",
        "csrf_token": csrf_in(page),
    }
    assert login("viewer").post(f"/exams/{exam_id}/core-lab/form", data=form).status_code == 403
    assert coord.post(f"/exams/{exam_id}/core-lab/form", data={**form, "csrf_token": "x"}).status_code == 403
    assert coord.post(f"/exams/{exam_id}/core-lab/form", data=form).status_code == 303

    kept = coord.get(f"/exams/{exam_id}/core-lab/form").text
    assert "Arms down, as the manual allows." in kept and "R. Tech" in kept and "Completed by coord" in kept
    assert 'name="field_comments"' not in kept  # kept as completed, no longer editable
    assert coord.post(f"/exams/{exam_id}/core-lab/form", data=form).status_code == 409
    [audit] = site.audit_rows(action="core_lab_form_completed")
    assert audit.detail == "2 field(s) filled in" and "Arms down" not in audit.detail
