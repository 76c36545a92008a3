"""HL7 DTM/TS timestamps: precision, offsets, nulls, daylight saving, and a round trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.feeds.hl7.timestamps import format_ts, parse_ts

CHICAGO = ZoneInfo("America/Chicago")
NEW_YORK = ZoneInfo("America/New_York")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("2026", utc(2026, 1, 1, 6), id="year-only-is-jan-1-midnight-local"),
        pytest.param("202607", utc(2026, 7, 1, 5), id="year-month"),
        pytest.param("20260312", utc(2026, 3, 12, 5), id="date"),
        pytest.param("2026031209", utc(2026, 3, 12, 14), id="date-hour"),
        pytest.param("202603120930", utc(2026, 3, 12, 14, 30), id="date-hour-minute"),
        pytest.param("20260312093015", utc(2026, 3, 12, 14, 30, 15), id="seconds"),
        pytest.param("20260312093015.5", utc(2026, 3, 12, 14, 30, 15, 500000), id="tenths"),
        pytest.param(
            "20120712145441.837+0100", utc(2012, 7, 12, 13, 54, 41, 837000), id="sinus-millis-and-offset"
        ),
        pytest.param("202109241000+0215", utc(2021, 9, 24, 7, 45), id="msft-odd-plus-0215-offset"),
        pytest.param("20260312093000-0600", utc(2026, 3, 12, 15, 30), id="minus-0600-offset-ignores-zone"),
        pytest.param("200803061000 ", utc(2008, 3, 6, 16), id="corepoint-trailing-space"),
        pytest.param(" 20260312", utc(2026, 3, 12, 5), id="leading-space"),
    ],
)
def test_hl7_timestamps_are_read_as_utc_instants(value: str, expected: datetime) -> None:
    assert parse_ts(value, CHICAGO) == expected


@pytest.mark.parametrize("value", ["", '""', "   ", ' "" '])
def test_empty_and_explicit_null_timestamps_are_none(value: str) -> None:
    assert parse_ts(value, CHICAGO) is None


def test_result_is_always_utc() -> None:
    found = parse_ts("20260312093000+0215", CHICAGO)
    assert found is not None
    assert found.tzinfo is UTC


def test_a_spring_forward_gap_time_is_shifted_forward_by_the_gap() -> None:
    # 2026-03-08 02:30 does not exist in New York; read with the pre-gap offset (EST, -5).
    assert parse_ts("202603080230", NEW_YORK) == utc(2026, 3, 8, 7, 30)
    # ... which is 03:30 EDT on the wall clock.
    assert parse_ts("202603080330", NEW_YORK) == utc(2026, 3, 8, 7, 30)


def test_an_ambiguous_fall_back_time_is_the_first_occurrence() -> None:
    # 2026-11-01 01:30 happens twice in New York; the first is EDT (-4).
    assert parse_ts("202611010130", NEW_YORK) == utc(2026, 11, 1, 5, 30)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("2026031", id="odd-number-of-digits"),
        pytest.param("20261312", id="month-13"),
        pytest.param("20260230", id="february-30"),
        pytest.param("2026031225", id="hour-25"),
        pytest.param("20260312093000+01", id="short-offset"),
        pytest.param("20260312093000+2500", id="offset-hours-out-of-range"),
        pytest.param("20260312093000+0160", id="offset-minutes-out-of-range"),
        pytest.param("202603120930.5", id="fraction-without-seconds"),
        pytest.param("20260312093000.", id="empty-fraction"),
        pytest.param("2026-03-12", id="iso-date-not-hl7"),
        pytest.param("ABCDEFGH", id="letters"),
        pytest.param("00000101", id="year-zero"),
        pytest.param("２０２６", id="non-ascii-digits"),
        pytest.param("2026031209301234567", id="too-many-digits"),
    ],
)
def test_malformed_timestamps_raise_a_value_error_that_does_not_quote_them(value: str) -> None:
    with pytest.raises(ValueError, match="HL7 timestamp") as caught:
        parse_ts(value, CHICAGO)
    assert value.strip() not in str(caught.value)


def test_format_ts_writes_the_datetimes_own_offset() -> None:
    moment = datetime(2026, 3, 12, 9, 30, 15, tzinfo=timezone(timedelta(hours=-5)))
    assert format_ts(moment) == "20260312093015-0500"
    assert format_ts(moment.replace(microsecond=837000)) == "20260312093015.8370-0500"


def test_format_ts_refuses_naive_datetimes_and_second_offsets() -> None:
    with pytest.raises(ValueError, match="aware"):
        format_ts(datetime(2026, 3, 12, 9, 30))
    with pytest.raises(ValueError, match="whole minutes"):
        format_ts(datetime(2026, 3, 12, tzinfo=timezone(timedelta(seconds=30))))


minute_offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
aware_datetimes = st.one_of(
    st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2199, 12, 30), timezones=minute_offsets),
    st.datetimes(
        min_value=datetime(1900, 1, 2),
        max_value=datetime(2199, 12, 30),
        timezones=st.timezones(),
        allow_imaginary=False,
    ).filter(lambda d: not (d.utcoffset() or timedelta()) % timedelta(minutes=1)),
).map(lambda d: d.replace(microsecond=d.microsecond // 100 * 100))  # HL7 keeps 4 fraction digits


@given(moment=aware_datetimes, feed_zone=st.sampled_from([CHICAGO, NEW_YORK, ZoneInfo("UTC")]))
def test_formatting_with_an_offset_and_parsing_back_gives_the_same_instant(
    moment: datetime, feed_zone: ZoneInfo
) -> None:
    # Compare in UTC: Python never calls an instant in a DST fold equal across zones.
    assert parse_ts(format_ts(moment), feed_zone) == moment.astimezone(UTC)
