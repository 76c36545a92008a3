"""How long a judgement holds (rules.stability): the site's midnight, or an exam's instants."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from rules import index_exams, stable_until
from tests.rules.builders import NEW_YORK, enrolment, exam, local, trial

EXAM_DAY = date(2026, 4, 13)  # the exam starts at 10:00 New York time (builders.exam)


@pytest.mark.parametrize(
    ("now", "midnight"),
    [
        # 1 November 2026 has 25 hours in New York; 8 March 2026 has 23.
        (datetime(2026, 11, 1, 12, 0, tzinfo=NEW_YORK), datetime(2026, 11, 2, 5, 0, tzinfo=UTC)),
        (datetime(2026, 3, 8, 0, 30, tzinfo=NEW_YORK), datetime(2026, 3, 9, 4, 0, tzinfo=UTC)),
        (datetime(2026, 3, 7, 23, 59, tzinfo=NEW_YORK), datetime(2026, 3, 8, 5, 0, tzinfo=UTC)),
    ],
)
def test_with_no_exam_a_judgement_holds_until_the_sites_next_midnight(
    now: datetime, midnight: datetime
) -> None:
    assert stable_until(trial(), enrolment(), {}, now, site_zone=NEW_YORK) == midnight


def _until(now: datetime) -> datetime:
    exams = index_exams([exam(1, EXAM_DAY)])
    return stable_until(trial(), enrolment(), exams, now, site_zone=NEW_YORK, unconfirmed_after_hours=24)


def test_the_next_lead_time_start_or_unconfirmed_instant_ends_it_when_it_comes_before_midnight() -> None:
    start = local(EXAM_DAY)
    # Lead times of the test protocol: the coordinator 72 h and 24 h before, the technologist 24 h.
    assert _until(start - timedelta(hours=73)) == start - timedelta(hours=72)
    assert _until(start - timedelta(hours=25)) == start - timedelta(hours=24)
    assert (
        _until(start - timedelta(minutes=1)) == start
    )  # the booking notice is planned before the start only
    assert _until(start + timedelta(hours=23)) == start + timedelta(hours=24)  # then it is unconfirmed
    # Between those, the site's midnight comes first.
    evening = datetime.combine(EXAM_DAY, time(20), NEW_YORK).astimezone(UTC)
    assert _until(evening) == datetime.combine(EXAM_DAY + timedelta(days=1), time(0), NEW_YORK)


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        stable_until(trial(), enrolment(), {}, datetime(2026, 4, 1, 12, 0), site_zone=NEW_YORK)


def test_with_a_pacs_watched_the_instant_images_fall_due_ends_it_too() -> None:
    start = local(EXAM_DAY)
    exams = index_exams([exam(1, EXAM_DAY)])
    due = timedelta(hours=4)
    at = start + timedelta(hours=1)
    assert (
        stable_until(trial(), enrolment(), exams, at, site_zone=NEW_YORK, images_due_after=due) == start + due
    )
    # A delay longer than the unconfirmed one still counts once that one has passed.
    late = timedelta(hours=30)
    after = start + timedelta(hours=25)
    assert stable_until(trial(), enrolment(), exams, after, site_zone=NEW_YORK, images_due_after=late) == min(
        start + late, datetime.combine(EXAM_DAY + timedelta(days=2), time(0), NEW_YORK).astimezone(UTC)
    )
