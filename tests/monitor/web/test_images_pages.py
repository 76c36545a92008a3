"""The dashboard shows what the images showed: the exam's conformance table, the matrix's mark."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from monitor.evaluation import Evaluator
from monitor.store.images import record_study
from monitor.store.polls import poll_finished, poll_started
from monitor.store.schema import exams
from rules.acquisition import SeriesSeen, StudySeen
from tests.monitor.web.conftest import Login, Site

SCANNED = datetime(2026, 12, 1, 16, 0, tzinfo=UTC)


def _axial(number: int, thickness: str) -> SeriesSeen:
    values = {
        "ImageType": (("ORIGINAL", "PRIMARY", "AXIAL"),),
        "ContrastBolusAgent": (("IOHEXOL",),),
        "SliceThickness": ((thickness,),),
        "KVP": (("120",),),
    }
    return SeriesSeen(f"1.2.826.9.{number}", number, f"PORTAL VENOUS {thickness}mm", "CT", 40, values)


def _scan(site: Site, *series: SeriesSeen, at: datetime = SCANNED) -> int:
    """Store a study of W0001's exam (ONC-2101 2101-001, CT3, 1 Dec) and judge it as the poll would."""
    with site.engine.begin() as conn:
        exam_id = int(
            conn.execute(select(exams.c.id).where(exams.c.external_id == "7100000001")).scalar_one()
        )
        study = StudySeen("1.2.826.9", "", "E10001", date(2026, 12, 1), ("CT",), series)
        matched, _ = record_study(conn, study, 40 * len(series), ZoneInfo("America/New_York"), at)
    assert matched == exam_id
    watching = site.settings.model_copy(
        update={"pacs": site.settings.pacs.model_copy(update={"enabled": True, "dicomweb_url": "x"})}
    )
    Evaluator(site.engine, watching).evaluate_for_exams([exam_id], at)
    return exam_id


def test_the_exam_page_tables_each_rule_against_the_images_and_the_matrix_marks_the_exam(
    site: Site, login: Login
) -> None:
    exam_id = _scan(site, _axial(2, "7.5"))
    client = login("coord")
    page = client.get(f"/exams/{exam_id}").text
    assert 'id="images"' in page and "1 series, 40 images" in page
    row = re.search(r"<tr class=\"flagged\"><td>Portal venous phase, axial</td>(.*?)</tr>", page, re.S)
    assert row is not None, page
    cells = re.findall(r"<td>(.*?)</td>", row.group(1), re.S)
    assert cells[:4] == ["2 PORTAL VENOUS 7.5mm", "SliceThickness", "&lt;= 5", "7.5"]
    assert "deviation" in cells[4]
    assert "No baseline images to compare with yet" in page  # KVP = "baseline": cannot tell yet
    images = page[page.index('id="images"') : page.index('id="notifications"')]
    assert "E10001" not in images  # the study's patient id is not repeated there
    matrix = client.get("/trials/ONC-2101").text
    assert f'href="/exams/{exam_id}"' in matrix
    assert 'class="badge img-flag" title="images: parameter deviation"' in matrix

    # A repeat at 2.5 mm settles the rule: the mark goes, the first series stays in the table.
    _scan(site, _axial(2, "7.5"), _axial(3, "2.5"), at=SCANNED + timedelta(minutes=20))
    page = client.get(f"/exams/{exam_id}").text
    assert "fails; repeated correctly" in page and 'class="flagged"' not in page
    assert "img-flag" not in client.get("/trials/ONC-2101").text


def test_a_failed_pacs_poll_is_on_the_feed_health_page_without_the_query(site: Site, login: Login) -> None:
    with site.engine.begin() as conn:
        poll = poll_started(conn, "pacs", SCANNED)
        poll_finished(
            conn, poll, finished_at=SCANNED, ok=False, resources=0, accepted=0, rejected=0,
            error="the PACS did not answer in time",
        )  # fmt: skip
    page = login("admin").get("/feeds").text
    polls = page[page.index("Polls (FHIR appointments, PACS studies)") :]
    assert re.search(r"<td>pacs</td><td>[^<]*</td><td>failed</td>.*the PACS did not answer in time", polls)


def test_a_study_that_matched_no_exam_is_listed_for_the_trials_that_enrolled_the_patient(
    site: Site, login: Login
) -> None:
    loose = StudySeen("1.2.826.77", "ACC-LOOSE", "E10001", date(2026, 11, 2), ("MR",), (_axial(1, "3"),))
    with site.engine.begin() as conn:
        matched, _ = record_study(conn, loose, 40, ZoneInfo("America/New_York"), SCANNED)
    assert matched is None  # no MR of E10001 on 2 Nov: kept, not guessed
    page = login("coord").get("/feeds").text
    section = page[page.index('id="unmatched-studies"') : page.index('id="reused"')]
    assert "2026-11-02" in section and "ACC-LOOSE" in section and "ONC-2101 2101-001" in section
    assert "E10001" not in section  # by study id, never the MRN
    # The patient is co-enrolled in NEU-4405: its coordinator sees the study under that
    # enrolment only, not the ONC-2101 one.
    other = login("neuro").get("/feeds").text
    section = other[other.index('id="unmatched-studies"') : other.index('id="reused"')]
    assert "NEU-4405 4405-004" in section and "ONC-2101" not in section
