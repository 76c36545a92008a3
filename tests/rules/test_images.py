"""The engine with a PACS watched: images as completion evidence, who hears, what is not news."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

from rules import Audience, Evaluation, ExamStatus, FindingKind, NotificationKind, OccurrenceStatus
from tests.rules.builders import PROTOCOL, exam, local, trial
from tests.rules.test_engine import IMAGED, WATCHED, WEEK_6, WEEK_6_KEY, _run, _study

SCAN = local(WEEK_6, 10)


def _kinds(result: Evaluation) -> set[FindingKind]:
    return {f.kind for f in result.findings if f.occurrence_key == WEEK_6_KEY}


def test_images_in_the_pacs_make_a_booked_exam_done_with_no_reminder_or_unconfirmed() -> None:
    images = replace(WATCHED, studies={1: _study("1.9")})
    result = _run([exam(1, WEEK_6)], SCAN + timedelta(hours=30), protocols=[IMAGED], images=images)
    (week_6,) = [o for o in result.occurrences if o.key == WEEK_6_KEY]
    assert week_6.status is OccurrenceStatus.DONE_IN_WINDOW
    assert _kinds(result) == {FindingKind.IN_WINDOW}
    assert not [n for n in result.planned_notifications if n.kind is NotificationKind.REMINDER]


def test_images_are_expected_only_once_due_and_only_for_exams_after_the_pacs_was_watched() -> None:
    booked = [exam(1, WEEK_6)]
    assert FindingKind.IMAGES_MISSING not in _kinds(
        _run(booked, SCAN + timedelta(hours=3), protocols=[IMAGED], images=WATCHED)
    )
    assert FindingKind.IMAGES_MISSING in _kinds(
        _run(booked, SCAN + timedelta(hours=4), protocols=[IMAGED], images=WATCHED)
    )
    later = replace(WATCHED, watched_from=SCAN + timedelta(days=1))  # the PACS came after the scan
    assert FindingKind.IMAGES_MISSING not in _kinds(
        _run(booked, SCAN + timedelta(days=2), protocols=[IMAGED], images=later)
    )
    # No PACS watched: images are not judged at all.
    assert FindingKind.IMAGES_MISSING not in _kinds(
        _run(booked, SCAN + timedelta(days=2), protocols=[IMAGED])
    )


def test_a_deviation_alerts_the_coordinators_and_the_room_and_new_wrong_images_alert_again() -> None:
    def alerts(thickness: float) -> dict[str, tuple[Audience, str]]:
        images = replace(WATCHED, studies={1: _study("1.9", thickness=thickness)})
        scanned = exam(1, WEEK_6, status=ExamStatus.COMPLETED, location="CT3")
        result = _run([scanned], SCAN + timedelta(minutes=20), protocols=[IMAGED], images=images)
        return {
            n.dedupe_key: (n.audience, n.address)
            for n in result.planned_notifications
            if n.finding_kind is FindingKind.PARAMETER_DEVIATION
        }

    first = alerts(7.5)
    assert set(first.values()) == {
        (Audience.COORDINATOR, "email:coord@example.org"),
        (Audience.TECHNOLOGIST, "slack:#ct3"),  # the room's channel: the technologist at the console
    }
    assert alerts(7.5) == first  # the same images again: nothing new to send
    assert not set(alerts(6.0)) & set(first)  # other wrong images: news again
    assert alerts(2.5) == {}  # conforming: no finding, no alert


def test_old_history_raises_no_image_alert() -> None:
    images = replace(WATCHED, studies={1: _study("1.9", thickness=7.5)})
    scanned = [exam(1, WEEK_6, status=ExamStatus.COMPLETED)]
    result = _run(scanned, local(date(2026, 6, 1)), protocols=[IMAGED], images=images)
    assert FindingKind.PARAMETER_DEVIATION in _kinds(result)
    assert not [n for n in result.planned_notifications if n.finding_kind is FindingKind.PARAMETER_DEVIATION]


def test_a_pacs_not_seen_since_the_images_fell_due_raises_no_missing_images() -> None:
    """A PACS down since the morning: the exam's images may be there; nobody could look."""
    down = replace(WATCHED, seen_until=SCAN + timedelta(hours=3, minutes=59))
    result = _run(
        [exam(1, WEEK_6, status=ExamStatus.COMPLETED)],
        SCAN + timedelta(days=1),
        protocols=[IMAGED],
        images=down,
    )
    assert FindingKind.IMAGES_MISSING not in _kinds(result)
    seen = replace(down, seen_until=SCAN + timedelta(hours=4))
    result = _run(
        [exam(1, WEEK_6, status=ExamStatus.COMPLETED)],
        SCAN + timedelta(days=1),
        protocols=[IMAGED],
        images=seen,
    )
    assert FindingKind.IMAGES_MISSING in _kinds(result)


def test_a_timepoints_own_rules_apply_at_its_visits_only() -> None:
    strict = trial(
        PROTOCOL.replace(
            "\n[routing]",
            "\n[timepoints.acquisition.ct]\n[[timepoints.acquisition.ct.series]]\n"
            'require = { SliceThickness = "<= 1.25" }\n\n[routing]',
            1,
        )
    )
    images = replace(WATCHED, studies={1: _study("1.9", thickness=2.5)})
    scanned = [exam(1, WEEK_6, status=ExamStatus.COMPLETED)]
    result = _run(scanned, SCAN + timedelta(hours=1), protocols=[strict], images=images)
    assert FindingKind.PARAMETER_DEVIATION in _kinds(result)  # restaging's own: <= 1.25 mm
    assert FindingKind.PARAMETER_DEVIATION not in _kinds(
        _run(scanned, SCAN + timedelta(hours=1), protocols=[IMAGED], images=images)
    )
