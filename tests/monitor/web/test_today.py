"""A coordinator's Today: due and unbooked, problems with exams in the next 72 hours,
unconfirmed exams, visits missed lately; each with its next step, in the account's trials
only (issue 16)."""

from __future__ import annotations

from datetime import timedelta
from itertools import count

import pytest
from sqlalchemy import insert, select

from monitor.store.schema import enrolments, exams, findings, occurrences
from tests.monitor.trial_setup import NOW
from tests.monitor.web.conftest import Login, Site

TODAY = NOW.date()
_ids = count(1)


def _enrolment(site: Site, trial: str) -> int:
    with site.engine.connect() as conn:
        query = select(enrolments.c.id).where(enrolments.c.trial == trial).limit(1)
        return int(conn.execute(query).scalar_one())


def _exam(site: Site, hours_from_now: float, text: str) -> int:
    with site.engine.begin() as conn:
        values = {
            "source": "epic", "external_id": f"TODAY-{next(_ids)}", "status": "booked",
            "last_event": "booked",
            "procedure_text": text, "modality": "CT", "start_at": NOW + timedelta(hours=hours_from_now),
            "created_at": NOW, "updated_at": NOW,
        }  # fmt: skip
        return int(conn.execute(insert(exams).values(**values)).inserted_primary_key[0])


def _visit(site: Site, trial: str, subject: str, label: str, status: str, window: tuple[int, int],
           exam_id: int | None = None) -> None:  # fmt: skip
    start, end = TODAY + timedelta(window[0]), TODAY + timedelta(window[1])
    with site.engine.begin() as conn:
        conn.execute(
            insert(occurrences).values(
                key=f"today-{next(_ids)}",
                enrolment_id=_enrolment(site, trial),
                trial=trial,
                subject=subject,
                timepoint="t",
                number=1,
                label=label,
                due=start + (end - start) / 2,
                window_start=start,
                window_end=end,
                status=status,
                exam_id=exam_id,
                version="v1",
                updated_at=NOW,
            )
        )


def _problem(site: Site, trial: str, subject: str, kind: str, exam_id: int) -> None:
    with site.engine.begin() as conn:
        conn.execute(
            insert(findings).values(
                key=f"today-f-{next(_ids)}",
                kind=kind,
                severity="critical",
                trial=trial,
                subject=subject,
                enrolment_id=_enrolment(site, trial),
                occurrence_label="Week 9",
                exam_id=exam_id,
                detail="",
                status="open",
                opened_at=NOW,
                updated_at=NOW,
            )
        )


@pytest.fixture(scope="module")
def planted(site: Site) -> None:
    _visit(site, "ONC-2101", "T-DUE", "Week 7 due", "due", (-2, 3))
    _visit(site, "NEU-4405", "T-NEURO", "Neuro due", "due", (-2, 3))
    _visit(site, "ONC-2101", "T-MISS", "Week 5 missed", "missed", (-20, -3))
    _visit(site, "ONC-2101", "T-OLDMISS", "Week 1 missed", "missed", (-60, -30))
    _visit(site, "ONC-2101", "T-UNCONF", "Week 6 unconfirmed", "unconfirmed", (-5, 5),
           _exam(site, -30, "CT CHEST UNCONFIRMED"))  # fmt: skip
    _problem(site, "ONC-2101", "T-SOON", "wrong_orderable", _exam(site, 20, "CT SOON"))
    _problem(site, "ONC-2101", "T-LATER", "wrong_orderable", _exam(site, 24 * 5, "CT LATER"))
    _problem(site, "NEU-4405", "T-NEUROSOON", "late", _exam(site, 10, "MR SOON"))


def _section(html: str, heading_id: str) -> str:
    start = html.index(f'id="{heading_id}"')
    end = html.find("</section>", start)
    return html[start:end]


def test_today_lists_what_to_act_on_with_the_next_step(login: Login, planted: None) -> None:
    page = login("coord").get("/today")
    assert page.status_code == 200
    due = _section(page.text, "due-h")
    assert (
        "T-DUE" in due and "closes in 3 days" in due and "Ask scheduling to book it inside the window." in due
    )
    soon = _section(page.text, "soon-h")
    assert "T-SOON" in soon and "T-LATER" not in soon
    assert "Ask scheduling to change the order to one the protocol accepts" in soon
    unconfirmed = _section(page.text, "unconfirmed-h")
    assert "T-UNCONF" in unconfirmed and "Check in Epic whether it was done" in unconfirmed
    missed = _section(page.text, "missed-h")
    assert "T-MISS" in missed and "T-OLDMISS" not in missed and "File the protocol deviation" in missed
    for other_trial in ("T-NEURO", "T-NEUROSOON", "NEU-4405"):
        assert other_trial not in page.text


def test_viewing_today_is_audited_and_technologists_are_sent_elsewhere(site: Site, login: Login) -> None:
    before = len(site.audit_rows(username="coord", object_type="today"))
    login("coord").get("/today")
    assert len(site.audit_rows(username="coord", object_type="today")) == before + 1
    assert login("tech").get("/today").status_code == 403
