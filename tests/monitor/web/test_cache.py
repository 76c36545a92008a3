"""The page cache: reused while nothing changed, rebuilt on the next request after a
booking or an evaluation, never shared across scopes."""

from __future__ import annotations

import itertools
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from monitor.commands.ingest import ingest_files
from monitor.evaluation import evaluate_all
from monitor.web import create_app
from monitor.web.cache import PageCache
from monitor.web.context import Web
from tests.monitor.hl7_messages import siu
from tests.monitor.trial_setup import NOW
from tests.monitor.web.conftest import Site, csrf_in
from tests.monitor.web.site import PASSWORD


def _signed_in(app: object, username: str) -> TestClient:
    client = TestClient(app, base_url="https://testserver", follow_redirects=False)  # type: ignore[arg-type]
    token = csrf_in(client.get("/login").text)
    answer = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token})
    assert answer.status_code == 303
    return client


_minutes = itertools.count(1)


def _feed(site: Site, folder: Path, *messages: bytes) -> None:
    """Store ``messages`` and evaluate, a minute later each time (time moves, as in the daemon:
    the data version reads the newest change time)."""
    at = NOW + timedelta(minutes=next(_minutes))
    path = folder / "more.hl7"
    path.write_bytes(b"\n".join(messages))
    ingest_files(site.engine, site.settings, [path], progress=False, clock=lambda: at)
    evaluate_all(site.engine, site.settings, at)


def test_accounts_of_different_scopes_never_share_a_part(site: Site) -> None:
    app = create_app(site.settings, site.engine, clock=site.clock)
    web: Web = app.state.web
    admin, coord, neuro = (_signed_in(app, name) for name in ("admin", "coord", "neuro"))
    for _ in range(2):  # the second round is served from the cache
        everything = admin.get("/upcoming").text
        assert "2101-001" in everything and "4405-001" in everything
        onc = coord.get("/upcoming").text
        assert "2101-001" in onc and "4405-001" not in onc
        neu = neuro.get("/upcoming").text
        assert "4405-001" in neu and "2101-001" not in neu
    assert web.cache.builds == 3 and web.cache.hits == 3


def test_a_booking_or_a_cancellation_shows_on_the_next_request(site: Site, tmp_path: Path) -> None:
    app = create_app(site.settings, site.engine, clock=site.clock)
    admin = _signed_in(app, "admin")
    assert "2101-003" not in admin.get("/upcoming").text
    _feed(site, tmp_path, siu(control_id="C0001", csn="7100000031", start="20261202100000", mrn="E10003"))
    assert "2101-003" in admin.get("/upcoming").text
    _feed(site, tmp_path, siu("S15", control_id="C0002", csn="7100000031", start="20261202100000",
                              mrn="E10003", status="Cancelled"))  # fmt: skip
    assert "2101-003" not in admin.get("/upcoming").text


def test_the_matrix_follows_the_evaluation(site: Site, tmp_path: Path) -> None:
    app = create_app(site.settings, site.engine, clock=site.clock)
    admin = _signed_in(app, "admin")
    before = admin.get("/trials/ONC-2101").text
    _feed(site, tmp_path, siu(control_id="C0003", csn="7100000032", start="20261204100000", mrn="E10002",
                              code="IMG1234", room="CT2"))  # fmt: skip
    after = admin.get("/trials/ONC-2101").text
    assert after != before
    assert after == admin.get("/trials/ONC-2101").text  # unchanged data: the same page again


class _Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_part_is_rebuilt_for_a_new_version_or_when_too_old() -> None:
    ticks = _Ticks()
    cache = PageCache(30, clock=ticks)
    built: list[int] = []

    def build() -> int:
        built.append(1)
        return len(built)

    assert [cache.get("k", (1,), build), cache.get("k", (1,), build)] == [1, 1]
    assert cache.get("k", (2,), build) == 2
    ticks.now = 31
    assert cache.get("k", (2,), build) == 3
    assert PageCache(0).get("k", (1,), build) == 4 and PageCache(0).get("k", (1,), build) == 5


def test_concurrent_requests_for_a_missing_part_build_it_once() -> None:
    cache = PageCache(30)
    release = threading.Event()
    results: list[str] = []

    def build() -> str:
        release.wait(5)
        return "table"

    threads = [threading.Thread(target=lambda: results.append(cache.get("k", (1,), build))) for _ in range(8)]
    for thread in threads:
        thread.start()
    release.set()
    for thread in threads:
        thread.join(10)
    assert results == ["table"] * 8
    assert cache.builds == 1 and cache.hits == 7


def test_while_an_old_part_is_rebuilt_others_take_it_but_never_one_of_another_version() -> None:
    ticks = _Ticks()
    cache = PageCache(10, clock=ticks)
    assert cache.get("k", (1,), lambda: "v1 built at 0") == "v1 built at 0"
    ticks.now = 11  # too old: the next request rebuilds it
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(5)
        return "v1 built at 11"

    rebuilder = threading.Thread(target=lambda: cache.get("k", (1,), slow))
    rebuilder.start()
    assert started.wait(5)
    assert cache.get("k", (1,), lambda: "never built") == "v1 built at 0"  # no wait behind the build
    changed: list[str] = []  # the store changed meanwhile: this request waits, then builds its own
    waiter = threading.Thread(target=lambda: changed.append(cache.get("k", (2,), lambda: "v2")))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and not changed
    release.set()
    rebuilder.join(5)
    waiter.join(5)
    assert changed == ["v2"] and cache.get("k", (2,), lambda: "never built") == "v2"

    def failing() -> str:
        raise RuntimeError("store down")

    ticks.now = 30
    with pytest.raises(RuntimeError):
        cache.get("k", (2,), failing)
    assert cache.get("k", (2,), lambda: "v2 again") == "v2 again"  # a failed build leaves no one 'building'


def test_upcoming_shows_each_exams_alert_status_and_follows_the_outbox(site: Site) -> None:
    from sqlalchemy import select, update

    from monitor.store.schema import notifications

    app = create_app(site.settings, site.engine, clock=site.clock)
    admin = _signed_in(app, "admin")
    with site.engine.begin() as conn:
        row = conn.execute(
            select(notifications.c.id, notifications.c.exam_id).where(notifications.c.exam_id.is_not(None))
        ).first()
        assert row is not None, "the evaluation planned no notification about an exam"
        planned = (
            conn.execute(select(notifications.c.status).where(notifications.c.exam_id == row.exam_id))
            .scalars()
            .all()
        )
    page = admin.get("/upcoming").text
    assert f'<span class="badge a-pending">{planned.count("pending")} pending</span>' in page
    with site.engine.begin() as conn:
        conn.execute(
            update(notifications).where(notifications.c.id == row.id)
            .values(status="sent", sent_at=NOW, updated_at=NOW.replace(year=2027))
        )  # fmt: skip
    assert '<span class="badge a-sent">1 sent</span>' in admin.get("/upcoming").text
