"""``exams --from/--to`` take the forms their help names (ISO date, today, +7d), read against the
command's clock in the site's zone; anything else is refused saying what to write."""

from __future__ import annotations

import json

import pytest

from monitor.config import load_settings
from monitor.feeds.hl7.intake import Arrival, Intake
from monitor.feeds.hl7.mapping import MappingSettings
from monitor.store.database import make_engine
from tests.monitor.hl7_messages import siu
from tests.monitor.trial_setup import NOW, cli


@pytest.mark.parametrize(
    ("first", "last", "listed"),
    [
        ("today", "+7d", True),  # 25 Nov to 2 Dec: the booking of 1 Dec
        ("+1w", "+2w", False),
        ("2026-12-01", "2026-12-01", True),
        ("yesterday", "tomorrow", False),
        ("-3d", "+6d", True),  # 22 Nov to 1 Dec
    ],
)
def test_days_are_read_against_the_commands_clock(
    database_url: str, capsys: pytest.CaptureFixture[str], first: str, last: str, listed: bool
) -> None:
    engine = make_engine(database_url)
    Intake(engine, MappingSettings.from_settings(load_settings(None).hl7), clock=lambda: NOW).receive(
        Arrival(siu())  # starts Tue 1 Dec 09:30 New York
    )
    engine.dispose()
    # --from=-3d: argparse reads a separate "-3d" as an option
    code, out, _ = cli(capsys, database_url, "exams", "--json", f"--from={first}", f"--to={last}")
    assert code == 0
    assert (len(json.loads(out)) == 1) is listed


def test_a_day_that_is_none_of_the_forms_is_refused_naming_them(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli(capsys, "sqlite://", "exams", "--from", "soon")
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "'soon' is not a day: write YYYY-MM-DD, today, yesterday, tomorrow" in err
