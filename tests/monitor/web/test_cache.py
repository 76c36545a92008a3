"""The page cache: reused while nothing changed, rebuilt on the next request after a
booking or an evaluation, never shared across scopes."""

from __future__ import annotations

import itertools
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select

from monitor.commands.ingest import ingest_files
from monitor.config import Settings
from monitor.evaluation import evaluate_all
from monitor.store.dashboard import data_version
from monitor.store.schema import enrolments
from monitor.web import create_app
from monitor.web.app import PageThreads
from monitor.web.cache import CHANGED_COOKIE, READ_YOUR_CHANGES, PageCache
from monitor.web.context import Web
from tests.monitor.hl7_messages import siu
from tests.monitor.trial_setup import NOW
from tests.monitor.web.conftest import Login, Site, csrf_in
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


def test_a_row_added_at_the_same_instant_as_the_newest_changes_the_version(site: Site) -> None:
    with site.engine.begin() as conn:
        newest = conn.execute(select(func.max(enrolments.c.updated_at))).scalar_one()
        before = data_version(conn, feed=False)
        added = {"trial": "ONC-2101", "subject": "2101-SAME", "anchors": {}, "status": "on_study"}
        conn.execute(insert(enrolments).values(**added, created_at=newest, updated_at=newest))
        assert data_version(conn, feed=False) != before


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


def _building(cache: PageCache, version: tuple[int, ...]) -> tuple[threading.Thread, threading.Event]:
    """A request rebuilding "k" at ``version`` until the returned event is set."""
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(5)
        return f"v{version[0]} rebuilt"

    rebuilder = threading.Thread(target=lambda: cache.get("k", version, slow))
    rebuilder.start()
    assert started.wait(5)
    return rebuilder, release


def _asked_meanwhile(
    cache: PageCache, version: tuple[int, ...], *, changed_lately: bool = False, answered: bool = True
) -> list[str]:
    """What a request at ``version`` gets while "k" is being rebuilt ([]: still waiting after
    0.2 s, when it is expected to wait; an expected answer is given 5 s on a busy machine)."""
    answers: list[str] = []

    def ask() -> None:
        READ_YOUR_CHANGES.set(changed_lately)
        answers.append(cache.get("k", version, lambda: f"v{version[0]} built by the waiter"))

    asker = threading.Thread(target=ask)
    asker.start()
    asker.join(5 if answered else 0.2)
    _askers.append(asker)
    return list(answers)


_askers: list[threading.Thread] = []  # the requests still waiting: finished before the next step


def _all_answered() -> None:
    while _askers:
        _askers.pop().join(5)


def test_while_a_part_is_rebuilt_readers_take_the_one_it_replaces_unless_they_changed_something() -> None:
    ticks = _Ticks()
    cache = PageCache(10, clock=ticks)
    assert cache.get("k", (1,), lambda: "v1") == "v1"
    ticks.now = 5
    rebuilder, release = _building(cache, (2,))  # the store changed: one request rebuilds
    assert _asked_meanwhile(cache, (2,)) == ["v1"]  # one build behind, 5 s old: it answers
    assert (
        _asked_meanwhile(cache, (2,), changed_lately=True, answered=False) == []
    )  # after a POST: waits for v2
    release.set()
    rebuilder.join(5)
    _all_answered()
    assert cache.get("k", (2,), lambda: "never built") == "v2 rebuilt"

    ticks.now = 30  # v2 is 25 s old: too old to stand in, even for the same version ...
    rebuilder, release = _building(cache, (3,))
    assert _asked_meanwhile(cache, (3,), answered=False) == []
    release.set()
    rebuilder.join(5)
    _all_answered()

    ticks.now = 45  # ... except that an old part of the store's version answers while rebuilt
    rebuilder, release = _building(cache, (3,))
    assert _asked_meanwhile(cache, (3,)) == ["v3 rebuilt"]
    release.set()
    rebuilder.join(5)
    _all_answered()

    def failing() -> str:
        raise RuntimeError("store down")

    ticks.now = 60
    with pytest.raises(RuntimeError):
        cache.get("k", (4,), failing)
    assert cache.get("k", (4,), lambda: "v4") == "v4"  # a failed build leaves no one 'building'


def test_a_change_makes_that_browser_read_what_it_changed(site: Site, login: Login) -> None:
    coord = login("coord")
    page = coord.get("/findings")
    assert CHANGED_COOKIE not in page.headers.get("set-cookie", "")
    answer = coord.post("/findings/review", data={"action": "acknowledge", "finding": [],
                        "csrf_token": csrf_in(page.text)}, follow_redirects=False)  # fmt: skip
    cookie = answer.headers["set-cookie"]
    assert f"{CHANGED_COOKIE}=1" in cookie and "Max-Age=10" in cookie and "HttpOnly" in cookie


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


def test_pages_are_answered_by_the_configured_number_of_threads() -> None:
    """Starlette runs every synchronous page on anyio's worker threads (40 by default): the
    app holds its loop to ``[web] threads``, on the first request it serves there."""

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(anyio.to_thread.current_default_thread_limiter().total_tokens)

    seen: list[float] = []

    async def serve_two() -> None:
        app = PageThreads(inner, threads=3)
        await app({"type": "http"}, None, None)
        await app({"type": "http"}, None, None)

    anyio.run(serve_two)
    assert seen == [3, 3]
    assert Settings().web.threads == 4
