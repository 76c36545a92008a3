"""Listing commands fit an 80-column terminal: one line per row, every header whole, the
first column filled; ``--json`` has every value in full."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.store.database import make_engine, upgrade
from tests.monitor.trial_setup import cli
from tests.monitor.web.site import fill, settings_for

LISTINGS = {
    ("notifications",): ("id", "status", "kind", "to", "exam", "due", "summary"),
    ("findings",): ("id", "status", "severity", "kind", "exam", "since", "detail"),
    ("messages", "search"): ("id", "received", "type", "control id", "outcome", "reason"),
    ("exams", "--from", "2026-11-01", "--to", "2026-12-31"): (
        "id", "status", "start", "modality", "location", "appointment", "procedure",
    ),
    ("enroll", "list"): ("trial", "subject", "MRNs", "arm", "status", "off study", "anchors"),
}  # fmt: skip


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder: Path = tmp_path_factory.mktemp("listings")
    url = f"sqlite:///{folder / 'store.db'}"
    engine = make_engine(url)
    upgrade(engine)
    fill(engine, settings_for(url), folder)
    engine.dispose()
    return url


@pytest.mark.parametrize("command", list(LISTINGS))
def test_a_listing_fits_80_columns_one_line_per_row(
    filled: str, command: tuple[str, ...], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = cli(capsys, filled, *command)
    assert code == 0, err
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    first = LISTINGS[command][0]
    header = next(line for line in lines if line.split()[:1] == [first])
    assert header.split() == " ".join(LISTINGS[command]).split()  # every header whole, in order
    rows = lines[lines.index(header) + 2 :]
    code, out, _ = cli(capsys, filled, *command, "--json")
    listed = json.loads(out)
    listed = listed["messages"] if isinstance(listed, dict) else listed
    filled_rows = [row for row in rows if row.strip()]
    assert len(filled_rows) == len(listed) > 0  # one line per row
    assert [row.split()[0] for row in filled_rows] == [str(item[first]) for item in listed]
