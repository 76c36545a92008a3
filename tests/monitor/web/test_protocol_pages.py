"""Protocols in the dashboard: a bad file's problems at their keys with fixes, nothing
stored; a valid amendment previewed (differences, visits that move for enrolled subjects,
a sample schedule) and then loaded, audited and evaluated (issue 16)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from monitor.store.schema import trial_versions
from tests.monitor.web.conftest import Login, Site, csrf_in

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "trials" / "onc-2101-recist-ct.toml"


def _versions(site: Site) -> int:
    with site.engine.connect() as conn:
        query = select(func.count()).select_from(trial_versions).where(trial_versions.c.trial == "ONC-2101")
        return int(conn.execute(query).scalar_one())


def _check(client: object, text: str, name: str = "onc.toml") -> object:
    token = csrf_in(client.get("/protocols").text)  # type: ignore[attr-defined]
    files = {"file": (name, text.encode(), "text/plain")}
    return client.post("/protocols/check", data={"csrf_token": token}, files=files)  # type: ignore[attr-defined]


def test_a_bad_file_names_each_problem_with_its_fix_and_stores_nothing(site: Site, login: Login) -> None:
    admin = login("admin")
    before = _versions(site)
    bad = EXAMPLE.read_text().replace("anchor_is_day = 1", "anchor_is_day = 3")
    answer = _check(admin, bad)
    assert answer.status_code == 422  # type: ignore[attr-defined]
    assert "anchor_is_day: must be 0 or 1" in answer.text and "Fix: write 1" in answer.text  # type: ignore[attr-defined]
    assert _versions(site) == before


def test_an_amendment_is_previewed_then_loaded_audited_and_evaluated(site: Site, login: Login) -> None:
    admin = login("admin")
    before = _versions(site)
    amended = EXAMPLE.read_text().replace('every = "6w"', 'every = "8w"')
    preview = _check(admin, amended)
    assert preview.status_code == 200  # type: ignore[attr-defined]
    page = preview.text  # type: ignore[attr-defined]
    assert "timepoint &#39;restaging&#39; changed" in page
    assert "For the enrolled subjects" in page and "No enrolled subject" not in page  # restaging moves
    assert (
        "The schedule for a sample subject" in page and "Week 14 restaging" in page
    )  # 6, then every 8 weeks
    assert _versions(site) == before  # checking stores nothing
    loaded = admin.post(
        "/protocols/load", data={"csrf_token": csrf_in(page), "text": amended, "name": "onc.toml"}
    )
    assert loaded.status_code == 200 and "version" in loaded.text and "loaded" in loaded.text
    assert "judged again" in loaded.text
    assert _versions(site) == before + 1
    [row] = site.audit_rows(action="protocol.load", object_id="ONC-2101")
    assert (row.before, row.after) == (f"version {before}", f"version {before + 1}")  # type: ignore[attr-defined]


def test_only_admins_check_or_load_protocols(login: Login) -> None:
    coord = login("coord")
    assert coord.get("/protocols").status_code == 403
    token = csrf_in(coord.get("/findings").text)
    answer = coord.post("/protocols/load", data={"csrf_token": token, "text": EXAMPLE.read_text()})
    assert answer.status_code == 403
