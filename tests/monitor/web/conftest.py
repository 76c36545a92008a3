from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text

from monitor.clock import FixedClock
from monitor.config import Settings
from monitor.store.database import make_engine, upgrade
from monitor.store.schema import audit_log
from monitor.web import create_app
from tests.monitor.trial_setup import NOW
from tests.monitor.web.site import PASSWORD, fill, settings_for

Login = Callable[[str], TestClient]


@dataclass
class Site:
    engine: Engine
    settings: Settings
    clock: FixedClock  # the test moves it (session expiry)
    url: str

    def client(self, peer: str = "testclient", **settings: object) -> TestClient:
        chosen = settings_for(self.url, **settings) if settings else self.settings
        app = create_app(chosen, self.engine, clock=self.clock)
        return TestClient(app, base_url="https://testserver", client=(peer, 50000), follow_redirects=False)

    def login(self, username: str, password: str = PASSWORD, client: TestClient | None = None) -> TestClient:
        client = client or self.client()
        form = client.get("/login")
        token = csrf_in(form.text)
        answer = client.post("/login", data={"username": username, "password": password, "csrf_token": token})
        assert answer.status_code == 303, answer.text
        return client

    def audit_rows(self, **where: object) -> list[object]:
        query = select(audit_log).order_by(audit_log.c.id)
        for name, value in where.items():
            query = query.where(audit_log.c[name] == value)
        with self.engine.connect() as conn:
            return list(conn.execute(query))


def csrf_in(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A filled store (SQLite file, and the PostgreSQL server when reachable) shared by a module."""
    folder: Path = tmp_path_factory.mktemp("web")
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    engine = make_engine(url)
    upgrade(engine)
    settings = settings_for(url)
    fill(engine, settings, folder)
    yield Site(engine, settings, FixedClock(NOW), url)
    engine.dispose()


@pytest.fixture
def login(site: Site) -> Login:
    site.clock.now = NOW
    return site.login
