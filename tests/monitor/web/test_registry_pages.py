"""The registry in the dashboard: enrol, change, set off-study, import a CSV; problems named
and nothing saved; what changed shown at once; scoped, CSRF-checked, audited (issue 16)."""

from __future__ import annotations

from datetime import timedelta

from monitor.store.registry.enrolments import find_entry
from tests.monitor.trial_setup import NOW
from tests.monitor.web.conftest import Login, Site, csrf_in

C1D1 = (NOW.date() - timedelta(days=30)).isoformat()
CONSENT = (NOW.date() - timedelta(days=45)).isoformat()


def _entry(site: Site, trial: str, subject: str) -> object:
    with site.engine.connect() as conn:
        return find_entry(conn, trial, subject)


def _enrol(client: object, **fields: str) -> object:
    form = client.get("/trials/ONC-2101/enrol").text  # type: ignore[attr-defined]
    data = {"csrf_token": csrf_in(form), "status": "on_study", "arm": "A", **fields}
    return client.post("/trials/ONC-2101/subjects", data=data)  # type: ignore[attr-defined]


def test_a_coordinator_enrols_a_subject_and_sees_what_it_changed(site: Site, login: Login) -> None:
    coord = login("coord")
    form = coord.get("/trials/ONC-2101/enrol").text
    assert 'name="anchor_c1d1"' in form and "c1d1 (required)" in form
    answer = _enrol(coord, subject="2101-900", mrns="E77001\nE77002", anchor_consent=CONSENT,
                    anchor_c1d1=C1D1)  # fmt: skip
    assert answer.status_code == 200, answer.text  # type: ignore[attr-defined]
    page = answer.text  # type: ignore[attr-defined]
    assert "Enrolled ONC-2101 2101-900" in page and "due unscheduled" in page  # the visits it made due
    stored = _entry(site, "ONC-2101", "2101-900")
    assert stored is not None and sorted(stored.mrns) == ["E77001", "E77002"]  # type: ignore[attr-defined]
    [row] = site.audit_rows(action="enrolment.add", object_id="ONC-2101/2101-900")
    assert row.before == "none" and "c1d1 " + C1D1 in row.after and "2 MRN(s)" in row.after  # type: ignore[attr-defined]
    assert "E77001" not in row.after  # type: ignore[attr-defined]


def test_mrns_are_entered_with_their_pools_and_shown_back(site: Site, login: Login) -> None:
    coord = login("coord")
    answer = _enrol(coord, subject="2101-905", mrns="E77005 (HOSP)\nOSH7705^^^OSH^MR",
                    anchor_consent=CONSENT, anchor_c1d1=C1D1)  # fmt: skip
    assert answer.status_code == 200, answer.text  # type: ignore[attr-defined]
    stored = _entry(site, "ONC-2101", "2101-905")
    assert stored.pools == {"E77005": "HOSP", "OSH7705": "OSH"}  # type: ignore[attr-defined]
    form = coord.get("/trials/ONC-2101/subjects/2101-905").text
    assert "E77005 (HOSP)\nOSH7705 (OSH)</textarea>" in form
    clash = _enrol(coord, subject="2101-906", mrns="E77006 (HOSP)\nE77006 (OSH)", anchor_consent=CONSENT,
                   anchor_c1d1=C1D1)  # fmt: skip
    assert clash.status_code == 422 and "an MRN is given twice with different pools" in clash.text  # type: ignore[attr-defined]
    # The same number in another named pool is another patient; with no pool it cannot be told apart.
    other = _enrol(coord, subject="2101-907", mrns="E77005 (OSH)", anchor_consent=CONSENT, anchor_c1d1=C1D1)
    assert other.status_code == 200  # type: ignore[attr-defined]
    same = _enrol(coord, subject="2101-908", mrns="E77005", anchor_consent=CONSENT, anchor_c1d1=C1D1)
    assert same.status_code == 422 and "already that of subject 2101-905" in same.text  # type: ignore[attr-defined]


def test_any_subject_id_has_its_own_page_even_one_the_enrol_form_could_be_taken_for(
    site: Site, login: Login
) -> None:
    coord = login("coord")
    for subject in ("new", "enrol"):
        answer = _enrol(
            coord, subject=subject, mrns=f"E7{len(subject)}", anchor_consent=CONSENT, anchor_c1d1=C1D1
        )
        assert answer.status_code == 200, answer.text  # type: ignore[attr-defined]
        page = coord.get(f"/trials/ONC-2101/subjects/{subject}")
        assert page.status_code == 200 and f"<h1>ONC-2101 · {subject}</h1>" in page.text


def test_problems_are_named_on_the_form_and_nothing_is_saved(site: Site, login: Login) -> None:
    coord = login("coord")
    answer = _enrol(coord, subject="2101-901", mrns="E10001", anchor_c1d1="2026-13-40", arm="Z")
    assert answer.status_code == 422  # type: ignore[attr-defined]
    page = answer.text  # type: ignore[attr-defined]
    assert "Nothing was saved" in page
    assert "c1d1: &#39;2026-13-40&#39; is not a date" in page
    assert "anchor date &#39;consent&#39; is required" in page and "has no arm &#39;Z&#39;" in page
    assert "E10001" in page  # the MRN another subject holds is named to the coordinator who typed it
    assert _entry(site, "ONC-2101", "2101-901") is None


def test_changing_an_anchor_and_going_off_study_are_audited_before_and_after(
    site: Site, login: Login
) -> None:
    coord = login("coord")
    form = coord.get("/trials/ONC-2101/subjects/2101-001").text
    assert "E10001" in form  # coordinators see the MRNs
    data = {"csrf_token": csrf_in(form), "mrns": "E10001", "arm": "A", "status": "off_study",
            "off_study": "2026-11-20", "anchor_consent": "2025-07-01", "anchor_c1d1": "2025-07-21",
            "anchor_progression": "2026-11-10"}  # fmt: skip
    answer = coord.post("/trials/ONC-2101/subjects/2101-001", data=data)
    assert answer.status_code == 200 and "Saved ONC-2101 2101-001" in answer.text
    stored = _entry(site, "ONC-2101", "2101-001")
    assert stored.status == "off_study" and str(stored.off_study) == "2026-11-20"  # type: ignore[attr-defined]
    [row] = site.audit_rows(action="enrolment.update", object_id="ONC-2101/2101-001")
    assert "on_study" in row.before and "off_study; off study 2026-11-20" in row.after  # type: ignore[attr-defined]
    assert "progression 2026-11-10" in row.after and "progression" not in row.before  # type: ignore[attr-defined]


def test_a_csv_is_imported_whole_or_refused_with_its_lines_named(site: Site, login: Login) -> None:
    coord = login("coord")
    token = csrf_in(coord.get("/trials/ONC-2101").text)
    header = (
        "trial,subject,mrn,arm,status,off_study,consent,c1d1,randomisation,progression,end_of_treatment\n"
    )
    bad = header + f"ONC-2101,2101-950,E77950,A,on_study,,{CONSENT},{C1D1},,,\n" \
        + "ONC-2101,2101-951,E77951,A,on_study,,2026-02-30,,,,\n" \
        + f"NEU-4405,4405-950,E77952,,on_study,,{CONSENT},{C1D1},,,\n"  # fmt: skip
    refused = coord.post("/trials/ONC-2101/import", data={"csrf_token": token},
                         files={"file": ("subjects.csv", bad.encode(), "text/csv")})  # fmt: skip
    assert refused.status_code == 422
    assert (
        "Nothing imported from subjects.csv" in refused.text
        and "line 4: trial &#39;NEU-4405&#39;" in refused.text
    )
    assert _entry(site, "ONC-2101", "2101-950") is None
    good = header + f"ONC-2101,2101-950,E77950 (HOSP)|E77960,A,on_study,,{CONSENT},{C1D1},,,\n"
    answer = coord.post("/trials/ONC-2101/import", data={"csrf_token": token},
                        files={"file": ("subjects.csv", good.encode(), "text/csv")})  # fmt: skip
    assert answer.status_code == 200 and "1 added, 0 updated, 0 unchanged" in answer.text
    assert _entry(site, "ONC-2101", "2101-950").pools == {"E77950": "HOSP"}  # type: ignore[attr-defined]
    assert site.audit_rows(action="enrolment.import", object_id="ONC-2101")


def test_the_registry_is_scoped_checked_and_read_only_for_viewers(site: Site, login: Login) -> None:
    coord = login("coord")
    token = csrf_in(coord.get("/trials/ONC-2101").text)
    other = coord.post("/trials/NEU-4405/subjects", data={"csrf_token": token, "subject": "x", "mrns": "E1"})
    assert other.status_code == 404
    forged = coord.post("/trials/ONC-2101/subjects", data={"subject": "2101-990", "mrns": "E77990"})
    assert forged.status_code == 403 and _entry(site, "ONC-2101", "2101-990") is None
    viewer = login("viewer")
    page = viewer.get("/trials/ONC-2101/subjects/2101-002")
    assert page.status_code == 200 and "E10002" not in page.text and "not shown for your role" in page.text
    assert "<fieldset disabled>" in page.text and ">Save<" not in page.text
    posted = viewer.post("/trials/ONC-2101/subjects/2101-002", data={"csrf_token": csrf_in(page.text)})
    assert posted.status_code == 403
