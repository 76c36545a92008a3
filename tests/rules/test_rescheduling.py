"""The rescheduling assistant: valid days in the window (closed weekdays and closures left
out, from today on), the latest safe day, and the later visits a choice moves."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from rules.rescheduling import Closures, reschedule
from tests.rules.builders import C1D1, NEW_YORK, enrolment, exam, trial, with_timepoints

# Week 6 of the base protocol is due 2026-04-13 (a Monday), window 2026-04-06..2026-04-20.
WEEK_6 = "T-1:S-01:restaging#1"
FOLLOW_UP = """
[[timepoints]]
id = "follow_up"
label = "Follow-up {n}"
exams = ["ct"]
anchor = "end_of_treatment"
every = "12w"
count_from = "previous_exam"
window = "+-14d"
"""


def _at(day: date) -> datetime:
    return datetime.combine(day, time(8), NEW_YORK)


def test_valid_days_skip_weekends_and_closures_and_the_past() -> None:
    protocol = trial()
    [answer] = [reschedule(protocol, enrolment(), [], WEEK_6, _at(date(2026, 4, 8)), site_zone=NEW_YORK,
                           closures=Closures(days=frozenset({date(2026, 4, 10)})))]  # fmt: skip
    assert answer is not None
    days = answer.valid_days
    assert days[0] == date(2026, 4, 8)  # today; the 6th and 7th have passed
    assert date(2026, 4, 10) not in days  # the site is closed that Friday
    assert all(day.weekday() < 5 for day in days)
    assert answer.latest_safe == date(2026, 4, 20)  # the window's last day, a Monday
    assert [choice.day for choice in answer.choices] == [date(2026, 4, 8), date(2026, 4, 20)]
    # Restaging counts from C1D1, not from the previous scan: no later visit moves.
    assert all(choice.shifts == () for choice in answer.choices)


def test_a_series_counted_from_the_previous_exam_follows_the_chosen_day() -> None:
    protocol = trial(with_timepoints(FOLLOW_UP))
    end = C1D1 + timedelta(weeks=30)
    subject = enrolment(end_of_treatment=end)
    first = "T-1:S-01:follow_up#1"
    now = _at(end + timedelta(weeks=12) - timedelta(days=10))
    answer = reschedule(protocol, subject, [exam(1, C1D1 - timedelta(days=10))], first, now,
                        site_zone=NEW_YORK, closures=Closures())  # fmt: skip
    assert answer is not None and answer.valid_days
    early, late = answer.choices
    assert early.shifts and late.shifts  # the second follow-up counts from this scan
    [moved_early] = [s for s in early.shifts if s.label == "Follow-up 2"]
    [moved_late] = [s for s in late.shifts if s.label == "Follow-up 2"]
    gap = (late.day - early.day).days
    assert (moved_late.after[0] - moved_early.after[0]).days == gap


def test_no_valid_day_once_the_window_has_closed() -> None:
    protocol = trial()
    window_over = _at(date(2026, 4, 21))
    answer = reschedule(
        protocol, enrolment(), [], WEEK_6, window_over, site_zone=NEW_YORK, closures=Closures()
    )
    assert answer is not None and answer.valid_days == () and answer.latest_safe is None
    assert answer.choices == ()


def test_an_unknown_occurrence_gives_nothing_and_closures_know_weekdays() -> None:
    assert reschedule(trial(), enrolment(), [], "T-1:S-01:nope#1", _at(C1D1), site_zone=NEW_YORK,
                      closures=Closures()) is None  # fmt: skip
    closed_mondays = Closures(weekdays=frozenset({0}))
    assert not closed_mondays.open(date(2026, 4, 13)) and closed_mondays.open(date(2026, 4, 11))


def test_the_latest_open_day_of_a_window_skips_a_closed_end() -> None:
    from rules.rescheduling import latest_open_day

    closures = Closures(days=frozenset({date(2026, 4, 17)}))  # Friday closed; Sat/Sun closed
    assert latest_open_day(date(2026, 4, 6), date(2026, 4, 19), closures) == date(2026, 4, 16)
    assert latest_open_day(date(2026, 4, 18), date(2026, 4, 19), closures) is None
