"""The rescheduling assistant on a subject's page and the printable schedule: the days still
open in the window (weekends and the site's closures left out), the latest safe day, what
a choice moves; read-only for viewers (issue 16)."""

from __future__ import annotations

from datetime import date

from fastapi.testclient import TestClient

from monitor.web import create_app
from tests.monitor.web.conftest import Login, Site

# At the tests' NOW (Wed 2026-11-25) 2101-002's Week 60 restaging is due with nothing
# booked that counts (its exam has the wrong orderable): window 2026-11-16 to 2026-11-30.
SUBJECT = "/trials/ONC-2101/subjects/2101-002"


def test_the_subject_page_offers_the_open_days_and_the_latest_safe_day(login: Login) -> None:
    page = login("coord").get(SUBJECT).text
    section = page.split('id="book-h"', 1)[1].split("</section>", 1)[0]
    assert "Week 60 restaging" in section
    # Wed 25, Thu 26, Fri 27 and Mon 30: the weekend is closed by default.
    assert "4 days: 2026-11-25 to 2026-11-30" in section
    assert "<strong>2026-11-30</strong>" in section
    assert "no later visit moves" in section  # restaging counts from C1D1
    assert f'href="{SUBJECT}/schedule"' in page


def test_a_site_closure_is_never_offered(site: Site) -> None:
    closed = site.settings.site.model_copy(update={"closed_days": [date(2026, 11, 26)]})  # Thanksgiving
    app = create_app(site.settings.model_copy(update={"site": closed}), site.engine, clock=site.clock)
    client = TestClient(
        app, base_url="https://testserver", client=("testclient", 50000), follow_redirects=False
    )
    coord = site.login("coord", client=client)
    printable = coord.get(f"{SUBJECT}/schedule")
    assert printable.status_code == 200
    assert "3 days: 2026-11-25 to 2026-11-30" in printable.text
    assert "Sat, Sun, 2026-11-26" in printable.text
    assert "Every visit" in printable.text and "E10002" in printable.text  # coordinators see the MRN


def test_the_printable_schedule_is_audited_and_shows_viewers_no_mrn(site: Site, login: Login) -> None:
    viewer = login("viewer")
    answer = viewer.get(f"{SUBJECT}/schedule")
    assert answer.status_code == 200 and "E10002" not in answer.text and "Week 60 restaging" in answer.text
    assert site.audit_rows(username="viewer", object_type="schedule", object_id="ONC-2101/2101-002")
    assert login("tech").get(f"{SUBJECT}/schedule").status_code == 403
