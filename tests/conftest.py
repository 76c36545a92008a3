"""Shared fixtures: the public corpus beside the checkout, the PostgreSQL server when reachable,
and ``--clock-shift=DAYS``.

``--clock-shift=DAYS`` runs the session with the real clock moved by DAYS days (time-machine,
ticking; ``time.monotonic`` is not moved): the wall clock of the ``datetime`` and ``time``
modules and the project's system clock, in this process and in every Python process a
test starts (through ``tests/clock_shift/sitecustomize.py`` on their ``PYTHONPATH``). The fixed clocks of the
tests are not moved, so a test that passes at +365 and -365 days does not depend on the
day it runs. Chromium's clock cannot be moved: the browser tests skip under a shift.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The live PACS (Debian's Orthanc) for any test that asks for ``orthanc`` or ``pacs``.
pytest_plugins = ["tests.pacs.fixtures"]

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
CLOCK_SHIFT_PATH = Path(__file__).resolve().parent / "clock_shift"  # holds the children's sitecustomize
CLOCK_SHIFT_VARIABLE = "HIRO_TEST_CLOCK_SHIFT_DAYS"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clock-shift",
        type=int,
        default=0,
        metavar="DAYS",
        help="move the real clock of this run (and of its child Python processes) by DAYS days, "
        "e.g. 365 or -365: no test may depend on the calendar day (browser tests skip)",
    )


_shifted: dict[str, Any] = {}  # the running travel and the environment it replaced


def pytest_configure(config: pytest.Config) -> None:
    days: int = config.getoption("clock_shift")
    if not days:
        return
    import time

    import time_machine

    # The children: they read these when they start, whenever that is in the session.
    _shifted["environ"] = {name: os.environ.get(name) for name in (CLOCK_SHIFT_VARIABLE, "PYTHONPATH")}
    os.environ[CLOCK_SHIFT_VARIABLE] = str(days)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, (str(CLOCK_SHIFT_PATH), os.environ.get("PYTHONPATH")))
    )
    # This process, ticking from now on.
    _shifted["travel"] = travel = time_machine.travel(dt.timedelta(days=days), tick=True)
    travel.start()
    time.time()  # real clock: time-machine starts ticking at the first read; make that now


def pytest_unconfigure(config: pytest.Config) -> None:
    travel = _shifted.pop("travel", None)
    if travel is not None:
        travel.stop()
    for name, value in _shifted.pop("environ", {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def pytest_report_header(config: pytest.Config) -> str | None:
    days: int = config.getoption("clock_shift")
    if not days:
        return None
    return f"clock shifted by {days:+d} days (time-machine; child processes too; browser tests skipped)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    days: int = config.getoption("clock_shift")
    if not days:
        return
    skip = pytest.mark.skip(
        reason=f"--clock-shift={days}: chromium keeps the real clock (its cookies and pages would "
        "disagree with the shifted server)"
    )
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def clock_shift(pytestconfig: pytest.Config) -> dt.timedelta:
    """How far ``--clock-shift`` moved the real clock of this session (zero without it)."""
    days: int = pytestconfig.getoption("clock_shift")
    return dt.timedelta(days=days)


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """``../shared/corpus``; tests that use it skip where it is absent (a user's fresh clone)."""
    if not CORPUS.is_dir():
        pytest.skip("../shared/corpus is not beside this checkout")
    return CORPUS


POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _postgres_reachable() -> bool:
    try:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=2):
            return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    if not _postgres_reachable():
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    import psycopg

    name = f"hiro_test_{os.getpid()}"
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty store: a SQLite file, and the PostgreSQL server when reachable."""
    from sqlalchemy import text

    from monitor.store.database import make_engine, upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url
