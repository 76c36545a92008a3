"""What the pages show, /metrics, the JSON API's OpenAPI document, and ``hiro-monitor users add``."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from monitor.cli import main
from monitor.clock import ScaledClock
from monitor.web import create_app
from tests.monitor.trial_setup import NOW
from tests.monitor.web.conftest import Login, Site


def test_upcoming_lists_research_exams_by_day_with_window_and_order_checks(site: Site, login: Login) -> None:
    page = login("admin").get("/upcoming?days=30").text
    assert "Tue 1 Dec 2026" in page and "09:30" in page  # 14:30 UTC shown in the site's zone
    assert "Week 72 restaging" in page and "booked" in page
    assert "wrong orderable" in page  # 2101-002's exam booked with IMG9999
    only_problems = login("admin").get("/upcoming?days=30&problems=true").text
    assert "2101-002" in only_problems and "2101-001" not in only_problems
    by_room = login("admin").get("/upcoming?days=30&room=MR2").text
    assert "4405-001" in by_room and "2101-001" not in by_room


def test_the_trial_page_shows_the_matrix_the_version_and_the_enrolments(site: Site, login: Login) -> None:
    page = login("coord").get("/trials/ONC-2101").text
    assert "Protocol version in force: <strong>1</strong>" in page
    assert "2101-001" in page and "Week 72 restaging" in page
    assert 'title="due 2026-12-07; window 2026-11-30 to 2026-12-14"' in page
    assert "c1d1 2025-07-21" in page


def test_a_blank_matrix_cell_says_why_and_the_trials_list_sums_each_trial_up(
    site: Site, login: Login
) -> None:
    coord = login("coord")
    page = coord.get("/trials/ONC-2101").text
    # 2101-001 is in arm A; the week-3 safety scan is arm B's only.
    row = page.split('<th scope="row">2101-001</th>', 1)[1].split("</tr>", 1)[0]
    assert '<td class="blank">not for arm A</td>' in row
    listing = coord.get("/trials").text
    line = listing.split('<a href="/trials/ONC-2101">ONC-2101</a>', 1)[1].split("</tr>", 1)[0]
    with site.engine.connect() as conn:
        subjects = conn.execute(text("SELECT count(*) FROM enrolments WHERE trial = 'ONC-2101'")).scalar_one()
        critical = conn.execute(
            text(
                "SELECT count(*) FROM findings WHERE trial = 'ONC-2101' AND status = 'open' "
                "AND kind != 'in_window' AND severity = 'critical'"
            )
        ).scalar_one()
    assert f"<td>{subjects}" in line and f">{critical} critical</a>" in line
    assert "NEU-4405" not in listing


def test_the_exam_page_shows_feed_history_and_findings(site: Site, login: Login) -> None:
    page = login("admin").get("/exams/2").text
    assert "wrong orderable" in page and "IMG9999" in page
    assert "booked" in page  # the SIU^S12 in the feed history


def test_the_instruction_sheet_has_a_print_button_and_its_own_styles(site: Site, login: Login) -> None:
    answer = login("tech").get("/exams/1/sheet")
    assert answer.status_code == 200
    assert "data-print" in answer.text and "Week 72 restaging" in answer.text
    assert "style-src 'self' 'unsafe-inline'" in answer.headers["content-security-policy"]
    assert "script-src" not in answer.headers["content-security-policy"]  # scripts: 'self' only


def test_feed_health_shows_the_feed_and_admins_get_the_raw_message_link(site: Site, login: Login) -> None:
    assert "epic" in login("viewer").get("/feeds").text


def test_metrics_count_messages_and_open_findings_without_phi(site: Site) -> None:
    text = site.client().get("/metrics").text
    assert 'hiro_messages_total{feed="epic",outcome="accepted",type="SIU^S12"} 4.0' in text
    assert 'hiro_findings_open{kind="wrong_orderable"} 1.0' in text
    assert "E1000" not in text


def test_the_openapi_document_lists_the_api_routes_only(site: Site) -> None:
    paths = set(site.client().get("/openapi.json").json()["paths"])
    assert paths == {"/api/exams", "/api/exams/{exam_id}", "/api/exams/{exam_id}/notifications",
                     "/api/notifications", "/api/findings", "/api/findings/{finding_id}",
                     "/api/trials", "/api/trials/{trial_id}", "/api/enrolments",
                     "/api/enrolments/{enrolment_id}"}  # fmt: skip


def test_the_notifications_api_lists_the_accounts_trials_with_status_and_no_text(
    site: Site, login: Login
) -> None:
    every = login("admin").get("/api/notifications", params={"limit": 1000}).json()
    assert {row["trial"] for row in every} >= {"ONC-2101", "NEU-4405"}
    assert all("summary" not in row and "body" not in row and "status" in row for row in every)
    mine = login("coord").get("/api/notifications", params={"limit": 1000}).json()
    assert mine and {row["trial"] for row in mine} == {"ONC-2101"}
    assert len(mine) == sum(row["trial"] == "ONC-2101" for row in every)
    assert login("coord").get("/api/notifications", params={"trial": "NEU-4405"}).json() == []
    pending = login("admin").get("/api/notifications", params={"status": "pending", "limit": 2}).json()
    assert len(pending) == 2 and {row["status"] for row in pending} == {"pending"}
    assert pending[0]["due_at"] >= pending[1]["due_at"]  # the newest first
    assert login("admin").get("/api/notifications", params={"status": "lost"}).status_code == 422


def test_an_id_too_large_for_the_database_is_a_client_error(site: Site, login: Login) -> None:
    client = login("admin")
    assert client.get(f"/api/exams/{2**70}").status_code == 422
    assert client.get(f"/exams/{2**70}").status_code == 422


def test_users_add_reads_the_password_from_a_file_and_the_account_signs_in(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "password"
    secret.write_text("a long enough password\n")
    args = ["--database", site.url, "--log-level", "WARNING", "users", "add", "dana", "--role", "coordinator",
            "--trial", "LYM-3302", "--password-file", str(secret)]  # fmt: skip
    assert main(args, clock=site.clock) == 0
    assert "dana: coordinator" in capsys.readouterr().out
    client = site.login("dana", "a long enough password")
    assert [t["trial"] for t in client.get("/api/trials").json()] == ["LYM-3302"]


def test_users_add_refuses_a_coordinator_without_trials_and_a_short_password(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "password"
    secret.write_text("a long enough password\n")
    base = ["--database", site.url, "--log-level", "WARNING", "users", "add", "erin"]
    assert main([*base, "--role", "coordinator", "--password-file", str(secret)]) == 2
    secret.write_text("short\n")
    assert main([*base, "--role", "viewer", "--password-file", str(secret)]) == 2
    assert "at least 12" in capsys.readouterr().err


def test_the_web_command_is_registered(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["web", "--help"])
    assert exit_.value.code == 0
    assert "--workers" in capsys.readouterr().out


def test_on_the_demos_faster_clock_every_page_header_shows_the_simulated_time(site: Site) -> None:
    """``hiro-monitor demo --speed 2016``: "today" on the Upcoming page is the simulated day,
    and the header says so; on the real clock (speed 1) the header shows no time."""
    fast = ScaledClock(2016, start=NOW, real=lambda: 0.0)  # standing still at NOW, at speed 2016
    client = TestClient(create_app(site.settings, site.engine, clock=fast), base_url="https://testserver")
    header = client.get("/login").text.split("</header>")[0]
    now = '<time datetime="2026-11-25T12:00:00+00:00">Wed 25 Nov 2026 07:00 EST</time>'
    assert f"Simulated time: {now}" in header
    assert "Simulated time" not in site.client().get("/login").text


def test_a_visit_before_monitoring_is_a_grey_cell_that_says_so() -> None:
    from datetime import date

    from monitor.store.dashboard import MatrixCell, TrialMatrix
    from monitor.web.matrix import matrix_rows

    matrix = TrialMatrix("ONC-2101", columns=[("screening", 1, "Screening"), ("restaging", 1, "Week 6")])
    matrix.subjects = ["2101-001"]
    day = date(2025, 7, 1)
    matrix.cells[("2101-001", "screening", 1)] = MatrixCell(
        "before_monitoring", "Screening", day, day, day, None
    )
    matrix.cells[("2101-001", "restaging", 1)] = MatrixCell("unconfirmed", "Week 6", day, day, day, 7)
    [(_, row)] = matrix_rows(matrix)
    assert 'class="badge s-before_monitoring"' in row and ">before monitoring<" in row
    assert 'href="/exams/7"' in row and ">unconfirmed<" in row


def test_a_cancelled_exam_has_no_instruction_sheet(site: Site, login: Login) -> None:
    from sqlalchemy import update

    from monitor.store.schema import exams

    coord = login("coord")
    assert coord.get("/exams/1/sheet").status_code == 200
    with site.engine.begin() as conn:
        status = conn.execute(text("SELECT status FROM exams WHERE id = 1")).scalar_one()
        conn.execute(update(exams).where(exams.c.id == 1).values(status="cancelled"))
    try:
        sheet = coord.get("/exams/1/sheet")
        assert (
            sheet.status_code == 410 and "the exam was cancelled; it has no instruction sheet" in sheet.text
        )
        page = coord.get("/exams/1").text
        assert "/exams/1/sheet" not in page and "No instruction sheet: this exam was cancelled." in page
        # The assistant offers the days left to book the visit again (weekdays of its window).
        rebook = page.split("Rebooking ONC-2101 2101-001", 1)[1]
        assert "Week 72 restaging" in rebook and "days: 2026-11-30 to 2026-12-14" in rebook
        assert "<strong>2026-12-14</strong>" in rebook
    finally:
        with site.engine.begin() as conn:
            conn.execute(update(exams).where(exams.c.id == 1).values(status=status))
