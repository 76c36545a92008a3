"""When visits are due: occurrence generation, Day 0/Day 1, recurrences, arms, amendments, local dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from rules import local_date, occurrences
from rules.protocol import Trial
from tests.rules.builders import C1D1, NEW_YORK, PROTOCOL, enrolment, timepoint, trial, with_timepoints

THROUGH = date(2027, 6, 30)


def _schedule(
    protocol: Trial, through: date = THROUGH, **kwargs: Any
) -> list[tuple[str, str, date, date, date]]:
    found = occurrences(protocol, enrolment(**kwargs), through=through)
    return [(o.timepoint, o.label, o.due, o.window_start, o.window_end) for o in found]


def test_a_fixed_schedule_is_counted_from_the_anchor() -> None:
    assert _schedule(trial()) == [
        ("screening", "Screening", C1D1, date(2026, 2, 2), date(2026, 3, 1)),
        ("restaging", "Week 6", date(2026, 4, 13), date(2026, 4, 6), date(2026, 4, 20)),
        ("restaging", "Week 12", date(2026, 5, 25), date(2026, 5, 18), date(2026, 6, 1)),
        ("restaging", "Week 18", date(2026, 7, 6), date(2026, 6, 29), date(2026, 7, 13)),
        ("restaging", "Week 24", date(2026, 8, 17), date(2026, 8, 10), date(2026, 8, 24)),
    ]


def test_occurrences_carry_stable_keys_numbered_per_timepoint() -> None:
    keys = [o.key for o in occurrences(trial(), enrolment(), through=THROUGH)]
    assert keys == ["T-1:S-01:screening#1", *(f"T-1:S-01:restaging#{n}" for n in range(1, 5))]


DAY_15 = timepoint("d15", label="Day {day}", anchor="c1d1", day=15, window="+-0d")


@pytest.mark.parametrize(
    ("anchor_is_day", "due"),
    [(1, C1D1 + timedelta(days=14)), (0, C1D1 + timedelta(days=15))],
    ids=["anchor is Day 1: Day 15 is 14 days later", "anchor is Day 0: Day 15 is 15 days later"],
)
def test_study_days_follow_the_protocols_day_zero_convention(anchor_is_day: int, due: date) -> None:
    text = with_timepoints(DAY_15).replace("anchor_is_day = 1", f"anchor_is_day = {anchor_is_day}")
    (d15,) = [row for row in _schedule(trial(text)) if row[0] == "d15"]
    assert d15 == ("d15", "Day 15", due, due, due)


def test_durations_are_elapsed_time_whatever_the_day_convention() -> None:
    day_zero = trial(PROTOCOL.replace("anchor_is_day = 1", "anchor_is_day = 0"))
    assert _schedule(day_zero) == _schedule(trial())


def test_the_day_before_day_1_is_day_minus_1() -> None:
    text = with_timepoints(DAY_15.replace("day = 15", "day = -1"))
    (row,) = [r for r in _schedule(trial(text)) if r[0] == "d15"]
    assert row[1:3] == ("Day -1", C1D1 - timedelta(days=1))


OPEN_ENDED = (
    '[[timepoints]]\nid = "long_term"\nlabel = "Week {week} long-term"\nexams = ["ct"]\nanchor = "c1d1"\n'
    'every = "12w"\nfirst = "36w"\nuntil = "progression"\nwindow = "+-7d"\n'
)


def test_an_open_ended_series_extends_to_the_horizon() -> None:
    protocol = trial(with_timepoints(OPEN_ENDED))
    near = [r for r in _schedule(protocol, through=date(2027, 3, 1)) if r[0] == "long_term"]
    far = [r for r in _schedule(protocol, through=date(2028, 1, 1)) if r[0] == "long_term"]
    assert [r[1] for r in near] == ["Week 36 long-term", "Week 48 long-term"]
    assert [r[1] for r in far] == [f"Week {week} long-term" for week in (36, 48, 60, 72, 84)]
    assert far[:2] == near


def test_an_open_ended_series_stops_at_progression_once_it_is_set() -> None:
    protocol = trial(with_timepoints(OPEN_ENDED))
    rows = [r for r in _schedule(protocol, progression=date(2027, 3, 1)) if r[0] == "long_term"]
    assert [r[2] for r in rows] == [date(2026, 11, 9), date(2027, 2, 1)]


def test_nothing_is_due_after_the_off_study_date() -> None:
    rows = _schedule(trial(), off_study=date(2026, 5, 25))
    assert rows[-1][1:3] == ("Week 12", date(2026, 5, 25))


def test_a_series_can_be_limited_by_count() -> None:
    text = with_timepoints(OPEN_ENDED.replace('until = "progression"', "count = 2"))
    assert len([r for r in _schedule(trial(text)) if r[0] == "long_term"]) == 2


EOT = (
    '[[timepoints]]\nid = "eot"\nlabel = "End of treatment"\nexams = ["ct"]\nanchor = "end_of_treatment"\n'
    'offset = "4w"\nwindow = { from = "0d", to = "+14d" }\n'
)


def test_an_event_driven_timepoint_appears_only_once_its_anchor_is_set() -> None:
    protocol = trial(with_timepoints(EOT))
    assert not [r for r in _schedule(protocol) if r[0] == "eot"]
    (row,) = [r for r in _schedule(protocol, end_of_treatment=date(2026, 9, 1)) if r[0] == "eot"]
    assert row[2:] == (date(2026, 9, 29), date(2026, 9, 29), date(2026, 10, 13))


def test_previous_anchors_to_the_last_visit_of_the_timepoint_before() -> None:
    after = timepoint("follow_up", anchor="previous", offset="8w", window="+-7d")
    rows = _schedule(trial(with_timepoints(after)))
    assert rows[-1][:3] == ("follow_up", "Follow up", date(2026, 8, 17) + timedelta(weeks=8))


SAFETY = timepoint("safety", anchor="c1d1", day=22, window="+-3d", arms=["B"])


@pytest.mark.parametrize(("arm", "has_safety"), [("A", False), ("B", True), (None, False)])
def test_arms_get_their_own_timepoints(arm: str | None, has_safety: bool) -> None:
    rows = _schedule(trial(with_timepoints(SAFETY)), arm=arm)
    assert any(r[0] == "safety" for r in rows) is has_safety
    assert sum(r[0] == "restaging" for r in rows) == 4


AMENDMENT = """
[[versions]]
name = "v1.0"
effective = 2025-01-01

[[versions]]
name = "Amendment 2"
effective = 2026-06-15

[[versions.timepoints]]
id = "restaging"
label = "Week {week}"
exams = ["ct"]
anchor = "c1d1"
every = "9w"
until = "36w"
window = "+-10d"
"""


def test_an_amendment_replaces_the_schedule_from_its_effective_date() -> None:
    protocol = trial(PROTOCOL + AMENDMENT)
    found = occurrences(protocol, enrolment(), through=THROUGH)
    rows = [(o.label, o.due, o.version, o.key.rsplit(":", 1)[1]) for o in found if o.timepoint == "restaging"]
    assert rows == [
        ("Week 6", date(2026, 4, 13), "v1.0", "restaging#1"),
        ("Week 12", date(2026, 5, 25), "v1.0", "restaging#2"),
        ("Week 18", date(2026, 7, 6), "Amendment 2", "restaging#3"),
        ("Week 27", date(2026, 9, 7), "Amendment 2", "restaging#4"),
        ("Week 36", date(2026, 11, 9), "Amendment 2", "restaging#5"),
    ]
    assert [o.window_start for o in found if o.label == "Week 27"] == [date(2026, 8, 28)]
    assert protocol.version_on(date(2020, 1, 1)).name == "v1.0"


def test_weekly_windows_run_across_month_and_year_ends() -> None:
    text = with_timepoints(timepoint("weekly", anchor="c1d1", every="1w", count=6, window="+-1d"))
    rows = [r for r in _schedule(trial(text), c1d1=date(2026, 12, 17)) if r[0] == "weekly"]
    assert [r[2] for r in rows] == [
        date(2026, 12, 24),
        date(2026, 12, 31),
        date(2027, 1, 7),
        date(2027, 1, 14),
        date(2027, 1, 21),
        date(2027, 1, 28),
    ]
    assert rows[1][3:] == (date(2026, 12, 30), date(2027, 1, 1))


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        (datetime(2026, 3, 9, 3, 30, tzinfo=UTC), date(2026, 3, 8)),  # 23:30 EDT, the spring-forward day
        (datetime(2026, 11, 2, 4, 30, tzinfo=UTC), date(2026, 11, 1)),  # 23:30 EST, the fall-back day
        (datetime(2026, 11, 1, 5, 30, tzinfo=UTC), date(2026, 11, 1)),  # 01:30 EDT, before the repeated hour
        (datetime(2026, 1, 1, 4, 59, tzinfo=UTC), date(2025, 12, 31)),  # 23:59 New Year's Eve
    ],
)
def test_exam_instants_become_local_dates_in_the_site_zone(instant: datetime, expected: date) -> None:
    assert local_date(instant, NEW_YORK) == expected


def test_a_naive_exam_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        local_date(datetime(2026, 3, 8, 23, 30), NEW_YORK)
