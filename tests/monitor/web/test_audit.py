"""The audit trail page: filters by user, action, object and the site's days; before and
after of every change; the CSV of the same rows, its export audited (issue 16)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from tests.monitor.trial_setup import NOW
from tests.monitor.web.conftest import Login, Site, csrf_in

DAY = NOW.date().isoformat()  # 2026-11-25: noon UTC is 07:00 in New York, the same day
NEXT_DAY = (NOW.date() + timedelta(days=1)).isoformat()


def test_the_trail_is_filtered_by_day_and_action_and_shows_before_and_after(site: Site, login: Login) -> None:
    coord = login("coord")
    first = coord.get("/findings").text
    token = csrf_in(first)
    finding_id = int(first.split('name="finding" value="', 1)[1].split('"', 1)[0])
    coord.post("/findings/review", data={"action": "resolve", "finding": [finding_id], "csrf_token": token,
                                         "comment": "Reported to the sponsor"})  # fmt: skip
    admin = login("admin")
    page = admin.get("/audit", params={"action": "finding.resolve", "from": DAY, "to": DAY})
    assert page.status_code == 200
    assert "Reported to the sponsor" in page.text
    assert "<td>none</td><td>resolved</td>" in page.text
    later = admin.get("/audit", params={"action": "finding.resolve", "from": NEXT_DAY})
    assert "Reported to the sponsor" not in later.text and "Nothing matches these filters." in later.text
    assert 'href="/audit.csv?action=finding.resolve&amp;from=2026-11-25&amp;to=2026-11-25"' in page.text


def test_the_csv_holds_the_same_rows_and_its_export_is_audited(site: Site, login: Login) -> None:
    admin = login("admin")
    answer = admin.get("/audit.csv", params={"username": "coord", "action": "view"})
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert (
        rows
        and {row["username"] for row in rows} == {"coord"}
        and {row["action"] for row in rows} == {"view"}
    )
    assert list(rows[0]) == ["at", "username", "action", "object_type", "object_id", "client", "detail",
                             "before", "after"]  # fmt: skip
    assert site.audit_rows(username="admin", action="export", object_type="audit")


def test_only_admins_read_the_trail(login: Login) -> None:
    coord = login("coord")
    for path in ("/audit", "/audit.csv"):
        answer = coord.get(path)
        assert answer.status_code == 403 and answer.headers["content-type"].startswith("text/html")


def test_the_trail_pages_back_by_id_without_repeating_a_row(site: Site, login: Login) -> None:
    import re

    coord = login("coord")
    for _ in range(110):  # each view is an audit row
        coord.get("/today")
    admin = login("admin")
    first = admin.get("/audit", params={"username": "coord", "object_type": "today"}).text
    older = re.search(r'<a href="([^"]+)" rel="next">Older</a>', first)
    assert older is not None
    second = admin.get(older.group(1).replace("&amp;", "&")).text
    times = re.compile(r"<tr><td>[^<]+</td><td>coord</td><td>view</td><td>today ")
    assert len(times.findall(first)) == 100 and len(times.findall(second)) >= 10
    assert "older_than=" in older.group(1) and "username=coord" in older.group(1)


def test_viewing_the_trail_the_accounts_the_protocols_and_the_trials_is_itself_audited(
    site: Site, login: Login
) -> None:
    def viewers(kind: str) -> list[str]:
        return [row.username for row in site.audit_rows(action="view", object_type=kind)]  # type: ignore[attr-defined]

    before = {kind: viewers(kind) for kind in ("audit", "accounts", "protocols", "trials")}
    admin = login("admin")
    admin.get("/audit", params={"username": "nobody-yet"})
    admin.get("/accounts")
    admin.get("/protocols")
    login("coord").get("/trials")
    after = {kind: viewers(kind) for kind in before}
    assert {kind: after[kind][len(before[kind]) :] for kind in before} == {
        "audit": ["admin"], "accounts": ["admin"], "protocols": ["admin"], "trials": ["coord"],
    }  # fmt: skip
    assert site.audit_rows(action="view", object_type="audit")[-1].detail == "username=nobody-yet"  # type: ignore[attr-defined]
    page = admin.get("/audit", params={"username": "admin", "action": "view"}).text
    assert "username=nobody-yet" in page  # the earlier viewing is listed, with the filters it used
