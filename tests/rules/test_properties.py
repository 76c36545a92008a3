"""Properties over many schedules: input order, re-evaluation, stability, DST and month ends."""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rules import Evaluation, ExamRecord, ExamStatus, FindingKind, evaluate, occurrences
from tests.rules.builders import C1D1, NEW_YORK, enrolment, exam, local, trial

PROTOCOL = trial()
PEOPLE = [enrolment("S-01", mrns=("E10001",)), enrolment("S-02", mrns=("E10002",), arm="B", enrolment_id=2)]
CODES = [("CT1", "CT"), ("CT2", "CT"), ("MR1", "MR"), ("CT999", "CT"), ("XR1", "XR")]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def schedules(draw: st.DrawFn, max_exams: int = 14) -> list[ExamRecord]:
    """Exams for two subjects around their first 30 weeks, with every status and odd hours."""
    count = draw(st.integers(min_value=0, max_value=max_exams))
    ids = draw(
        st.lists(st.integers(min_value=1, max_value=10_000), min_size=count, max_size=count, unique=True)
    )
    found = []
    for exam_id in ids:
        code, modality = draw(st.sampled_from(CODES))
        found.append(
            exam(
                exam_id,
                C1D1 + timedelta(days=draw(st.integers(min_value=-40, max_value=210))),
                code=code,
                modality=modality,
                status=draw(st.sampled_from(list(ExamStatus))),
                mrn=draw(st.sampled_from(["E10001", "E10002"])),
                hour=draw(st.integers(min_value=0, max_value=23)),
                minute=draw(st.sampled_from([0, 30, 59])),
            )
        )
    return found


NOWS = st.integers(min_value=-30, max_value=240).map(lambda days: local(C1D1 + timedelta(days=days), 12))


def _evaluate(exams: list[ExamRecord], now: datetime) -> Evaluation:
    return evaluate([PROTOCOL], PEOPLE, exams, now, site_zone=NEW_YORK)


@SETTINGS
@given(schedules(), NOWS, st.randoms(use_true_random=False))
def test_the_order_exams_arrive_in_never_changes_the_result(
    exams: list[ExamRecord], now: datetime, rnd: random.Random
) -> None:
    shuffled = exams[:]
    rnd.shuffle(shuffled)
    people = PEOPLE[::-1]
    assert evaluate([PROTOCOL], people, shuffled, now, site_zone=NEW_YORK) == _evaluate(exams, now)


@SETTINGS
@given(schedules(), NOWS, st.integers(min_value=0, max_value=10))
def test_re_evaluating_an_unchanged_schedule_gives_identical_findings_and_dedupe_keys(
    exams: list[ExamRecord], now: datetime, minutes: int
) -> None:
    first, second = _evaluate(exams, now), _evaluate(list(exams), now)
    assert first == second
    later = _evaluate(exams, now + timedelta(minutes=minutes))  # same local day: same verdicts
    assert later.findings == first.findings
    assert later.occurrences == first.occurrences


def _served(result: Evaluation) -> dict[int, str | None]:
    serving = (FindingKind.IN_WINDOW, FindingKind.EARLY, FindingKind.LATE, FindingKind.DUPLICATE)
    return {
        f.exam_id: f.occurrence_key for f in result.findings if f.kind in serving and f.exam_id is not None
    }


@SETTINGS
@given(
    schedules(),
    NOWS,
    st.integers(min_value=-40, max_value=400),
    st.sampled_from(CODES),
    st.sampled_from(list(ExamStatus)),
)
def test_a_newly_seen_exam_never_reshuffles_existing_assignments(
    exams: list[ExamRecord], now: datetime, offset: int, code: tuple[str, str], status: ExamStatus
) -> None:
    newest = exam(
        max((e.id for e in exams), default=0) + 1,
        C1D1 + timedelta(days=offset),
        code=code[0],
        modality=code[1],
        status=status,
    )
    before, after = _served(_evaluate(exams, now)), _served(_evaluate([*exams, newest], now))
    assert {exam_id: after.get(exam_id) for exam_id in before} == before


@SETTINGS
@given(st.dates(min_value=date(2024, 1, 1), max_value=date(2028, 12, 31)))
@example(date(2026, 3, 8))  # spring forward in New York
@example(date(2026, 11, 1))  # fall back
@example(date(2026, 3, 22))  # window opens on 2026-03-08
def test_an_exam_at_23_30_local_on_the_last_day_of_the_window_is_in_window(last_day: date) -> None:
    subject = enrolment(c1d1=last_day - timedelta(days=49))  # Week 6 window closes on last_day
    key = "T-1:S-01:restaging#1"
    now = local(last_day + timedelta(days=2), 12)

    def kind_of(instant: datetime) -> set[FindingKind]:
        scan = ExamRecord(1, "E10001", "CT1", "CT", "CT", instant, ExamStatus.COMPLETED)
        result = evaluate([PROTOCOL], [subject], [scan], now, site_zone=NEW_YORK)
        return {f.kind for f in result.findings if f.occurrence_key == key and f.exam_id == 1}

    at = datetime.combine(last_day, time(23, 30), tzinfo=NEW_YORK)
    assert kind_of(at) == {FindingKind.IN_WINDOW}
    assert kind_of(at + timedelta(hours=1)) == {FindingKind.LATE}
    first_day = last_day - timedelta(days=14)
    assert kind_of(datetime.combine(first_day, time(0, 5), tzinfo=NEW_YORK)) == {FindingKind.IN_WINDOW}
    assert kind_of(datetime.combine(first_day, time(0, 5), tzinfo=NEW_YORK) - timedelta(minutes=10)) == {
        FindingKind.EARLY
    }


@SETTINGS
@given(st.dates(min_value=date(2024, 1, 1), max_value=date(2028, 12, 31)))
def test_weekly_schedules_keep_their_spacing_across_month_ends(c1d1: date) -> None:
    found = [o for o in occurrences(PROTOCOL, enrolment(c1d1=c1d1), through=c1d1 + timedelta(days=400))]
    restaging = [o for o in found if o.timepoint == "restaging"]
    assert [(o.due - c1d1).days for o in restaging] == [42, 84, 126, 168]
    assert [o.label for o in restaging] == ["Week 6", "Week 12", "Week 18", "Week 24"]
    assert all(
        (o.window_end - o.window_start).days == 14 and o.window_start < o.due < o.window_end
        for o in restaging
    )
    (screening,) = [o for o in found if o.timepoint == "screening"]
    assert (screening.window_start, screening.window_end) == (
        c1d1 - timedelta(days=28),
        c1d1 - timedelta(days=1),
    )
