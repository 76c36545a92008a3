"""Durations as imaging-office staff write them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.durations import DurationError, format_days, parse_days, parse_duration, parse_tolerance_days

READABLE = [
    ("28d", timedelta(days=28)),
    ("6w", timedelta(weeks=6)),
    ("72h", timedelta(hours=72)),
    ("-1d", timedelta(days=-1)),
    ("+7d", timedelta(days=7)),
    ("2w3d", timedelta(days=17)),
    ("1d12h", timedelta(hours=36)),
    ("90min", timedelta(minutes=90)),
    (" 6 W ", timedelta(weeks=6)),
]


@pytest.mark.parametrize(("text", "expected"), READABLE)
def test_durations_read_as_written(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


UNREADABLE = [
    ("", "empty"),
    ("6", "not a duration"),
    ("6wk", "unknown unit 'wk'"),
    ("3m", "months and years"),
    ("1y", "months and years"),
    ("1.5d", "fractions"),
    ("2d2d", "appears twice"),
    ("-", "no amount"),
    ("+-7d", "tolerance is not allowed"),
    ("d7", "not a duration"),
]


@pytest.mark.parametrize(("text", "problem"), UNREADABLE)
def test_bad_durations_say_what_is_wrong_and_how_to_write_it(text: str, problem: str) -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration(text)
    assert problem in caught.value.problem
    assert caught.value.fix


def test_a_number_without_unit_is_refused() -> None:
    with pytest.raises(DurationError, match="text with a unit"):
        parse_duration(42)


def test_day_counts_must_be_whole_days() -> None:
    assert parse_days("72h") == 3
    assert parse_days("-4w") == -28
    with pytest.raises(DurationError, match="whole days"):
        parse_days("36h")


@pytest.mark.parametrize("text", ["+-7d", "±7d", "+/-7d", "+- 1w"])
def test_tolerances_accept_the_usual_plus_minus_spellings(text: str) -> None:
    assert parse_tolerance_days(text) in (7,)


def test_a_tolerance_needs_its_sign() -> None:
    with pytest.raises(DurationError, match=r"\+- sign"):
        parse_tolerance_days("7d")


@given(st.integers(min_value=-2000, max_value=2000))
def test_day_counts_round_trip_through_their_written_form(days: int) -> None:
    assert parse_days(format_days(days)) == days
