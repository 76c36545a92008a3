"""The compliance engine: one row per finding kind, then assignment, anchors, arms, versions, alerts."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

import pytest

from rules import (
    Audience,
    Enrolment,
    EnrolmentStatus,
    Evaluation,
    ExamRecord,
    ExamStatus,
    FindingKind,
    ImagesSeen,
    NotificationKind,
    OccurrenceStatus,
    Severity,
    evaluate,
    evaluate_enrolments,
    index_exams,
)
from rules.acquisition import SeriesSeen, StudySeen
from rules.core_lab import SubmissionSeen
from rules.protocol import Trial
from tests.rules.builders import (
    C1D1,
    NEW_YORK,
    PROTOCOL,
    enrolment,
    exam,
    local,
    timepoint,
    trial,
    with_timepoints,
)

WEEK_6 = date(2026, 4, 13)  # due; window 2026-04-06..2026-04-20
WEEK_6_KEY = "T-1:S-01:restaging#1"
DONE, CANCELLED, NO_SHOW = ExamStatus.COMPLETED, ExamStatus.CANCELLED, ExamStatus.NO_SHOW


def _now(day: date, hour: int = 12) -> datetime:
    return local(day, hour)


def _run(
    exams: list[ExamRecord],
    now: datetime,
    *,
    enrolments: list[Enrolment] | None = None,
    protocols: list[Trial] | None = None,
    images: ImagesSeen | None = None,
) -> Evaluation:
    return evaluate(
        protocols or [trial()],
        enrolments or [enrolment()],
        exams,
        now,
        site_zone=NEW_YORK,
        due_soon_days=7,
        images=images,
    )


# Images (rules.images): the CT's axial series must be <= 5 mm, on the screening scan's scanner.
IMAGED = trial(
    PROTOCOL
    + """
[exams.ct.acquisition]
baseline = "screening"
same_scanner = true

[[exams.ct.acquisition.series]]
label = "Axial"
where = { ImageType = "AXIAL" }
require = { SliceThickness = "<= 5" }
"""
)
SCREENING_DAY = C1D1 - timedelta(days=10)
# Watched since January; the last successful poll long after every exam of these tests.
WATCHED = ImagesSeen({}, watched_from=local(date(2026, 1, 1)), seen_until=local(date(2027, 1, 1)))


def _study(uid: str, thickness: float = 2.5, serial: str = "SN-1") -> StudySeen:
    values = {"ImageType": (("ORIGINAL", "PRIMARY", "AXIAL"),), "SliceThickness": ((str(thickness),),)}
    values["DeviceSerialNumber"] = ((serial,),)
    return StudySeen(
        uid, "", "E10001", None, ("CT",), (SeriesSeen(f"{uid}.2", 2, "AXIAL", "CT", 40, values),)
    )


# To the core lab (rules.core_lab): the copy is due 2 days after the images, reminded 12 h before.
CORE_LABBED = trial(
    PROTOCOL
    + """
[core_lab]
deadline = "48h"
sponsor = "Acme"
site_id = "101"
destination = { kind = "manual" }
"""
)
COPY_DUE = local(date(2026, 4, 15), 10)


def _submitted(status: str, problem: str = "") -> ImagesSeen:
    return replace(
        WATCHED, studies={1: _study("1.9")}, submissions={1: SubmissionSeen(status, COPY_DUE, problem)}
    )


@dataclass(frozen=True)
class Case:
    """One rule: the schedule, the moment, the finding expected (by key) and kinds that must be absent."""

    name: str
    exams: list[ExamRecord]
    now: datetime
    key: str
    severity: Severity
    detail: str
    absent: tuple[FindingKind, ...] = ()
    enrolment: Enrolment = field(default_factory=enrolment)
    protocol: Trial | None = None
    images: ImagesSeen | None = None


CASES = [
    Case(
        "in window: a performed exam inside the window",
        [exam(1, WEEK_6, status=DONE)],
        _now(date(2026, 4, 20)),
        f"{WEEK_6_KEY}:in_window:exam1",
        Severity.INFO,
        "performed 2026-04-13, in window 2026-04-06..2026-04-20",
        absent=(FindingKind.DUE_UNSCHEDULED, FindingKind.MISSED),
    ),
    Case(
        "early: a booked exam before the window opens",
        [exam(1, date(2026, 4, 1))],
        _now(date(2026, 3, 25)),
        f"{WEEK_6_KEY}:early:exam1",
        Severity.WARNING,
        "5 days before the window 2026-04-06..2026-04-20",
        absent=(FindingKind.DUE_UNSCHEDULED,),
    ),
    Case(
        "late: a performed exam after the window closed is critical",
        [exam(1, date(2026, 4, 24), status=DONE)],
        _now(date(2026, 4, 30)),
        f"{WEEK_6_KEY}:late:exam1",
        Severity.CRITICAL,
        "4 days after the window",
        absent=(FindingKind.MISSED,),
    ),
    Case(
        "wrong orderable: right patient, right modality, code not accepted",
        [exam(1, WEEK_6, code="CT999")],
        _now(date(2026, 4, 1)),
        f"{WEEK_6_KEY}:wrong_orderable:exam1",
        Severity.CRITICAL,
        "CT research (CT999, appointment 7000000001, accession A000001) on 2026-04-13 is CT near this"
        " timepoint (window 2026-04-06..2026-04-20) but its orderable is not accepted; order CT1 or CT2",
        absent=(FindingKind.UNMATCHED_EXAM,),
    ),
    Case(
        "due unscheduled: the window opens within the due-soon days, nothing booked",
        [],
        _now(date(2026, 3, 30)),
        f"{WEEK_6_KEY}:due_unscheduled",
        Severity.WARNING,
        "is due (window 2026-04-06..2026-04-20, due 2026-04-13)",
    ),
    Case(
        "missed: the window closed with nothing performed",
        [],
        _now(date(2026, 4, 21)),
        f"{WEEK_6_KEY}:missed",
        Severity.CRITICAL,
        "window 2026-04-06..2026-04-20 closed with no exam performed",
    ),
    Case(
        "cancelled: the timepoint is open again",
        [exam(1, WEEK_6, status=CANCELLED)],
        _now(date(2026, 4, 8)),
        f"{WEEK_6_KEY}:cancelled:exam1",
        Severity.WARNING,
        "was cancelled; the timepoint is open again",
        absent=(FindingKind.IN_WINDOW,),
    ),
    Case(
        "no-show: the timepoint is open again",
        [exam(1, WEEK_6, status=NO_SHOW)],
        _now(date(2026, 4, 14)),
        f"{WEEK_6_KEY}:no_show:exam1",
        Severity.WARNING,
        "was not attended (no-show)",
    ),
    Case(
        "duplicate: a second exam inside a served window",
        [exam(1, WEEK_6), exam(2, date(2026, 4, 15))],
        _now(date(2026, 4, 1)),
        f"{WEEK_6_KEY}:duplicate:exam2",
        Severity.WARNING,
        "CT research (CT1, appointment 7000000001, accession A000001) already serves it",
    ),
    Case(
        "unmatched exam: trial-modality imaging that serves no timepoint",
        [exam(1, WEEK_6, status=DONE), exam(2, date(2026, 4, 14), code="CT999", status=DONE)],
        _now(date(2026, 4, 20)),
        "T-1:S-01:exam2:unmatched_exam",
        Severity.INFO,
        "CT research (CT999, appointment 7000000002, accession A000002) on 2026-04-14 serves no timepoint",
        absent=(FindingKind.WRONG_ORDERABLE,),
    ),
    Case(
        "unconfirmed: a booked exam 24 hours past its start with no arrival or completion",
        [exam(1, WEEK_6)],
        _now(date(2026, 4, 14)),  # 26 hours after 10:00 on the 13th
        f"{WEEK_6_KEY}:unconfirmed:exam1",
        Severity.WARNING,
        "was booked for 2026-04-13; no arrival or completion has come from the EHR since",
        absent=(FindingKind.MISSED, FindingKind.DUE_UNSCHEDULED),
    ),
    Case(
        "after off-study: a research exam booked after the off-study date",
        [exam(1, WEEK_6)],
        _now(date(2026, 4, 2)),
        "T-1:S-01:exam1:after_off_study",
        Severity.CRITICAL,
        "is after the off-study date 2026-04-01",
        absent=(FindingKind.IN_WINDOW,),
        enrolment=enrolment(off_study=date(2026, 4, 1)),
    ),
    Case(
        "images missing: a performed exam whose study never reached the PACS",
        [exam(1, WEEK_6, status=DONE)],
        _now(date(2026, 4, 13), 18),
        f"{WEEK_6_KEY}:images_missing:exam1",
        Severity.WARNING,
        "no images have reached the PACS",
        protocol=IMAGED,
        images=WATCHED,
    ),
    Case(
        "parameter deviation: the images break an acquisition rule",
        [exam(1, WEEK_6, status=DONE)],
        _now(date(2026, 4, 13), 18),
        f"{WEEK_6_KEY}:parameter_deviation:exam1",
        Severity.CRITICAL,
        "series 2 AXIAL: SliceThickness 7.5 (protocol: <= 5)",
        absent=(FindingKind.IMAGES_MISSING,),
        protocol=IMAGED,
        images=replace(WATCHED, studies={1: _study("1.9", thickness=7.5)}),
    ),
    Case(
        "scanner mismatch: the follow-up scanned elsewhere than the baseline",
        [exam(1, SCREENING_DAY, status=DONE), exam(2, WEEK_6)],  # images: evidence of the scan
        _now(date(2026, 4, 13), 18),
        f"{WEEK_6_KEY}:scanner_mismatch:exam2",
        Severity.CRITICAL,
        "acquired on serial SN-2, not on the baseline's serial SN-1",
        absent=(FindingKind.UNCONFIRMED, FindingKind.PARAMETER_DEVIATION),
        protocol=IMAGED,
        images=replace(WATCHED, studies={1: _study("1.8"), 2: _study("1.9", serial="SN-2")}),
    ),
    Case(
        "core lab due: the trial's reminder before the copy's deadline",
        [exam(1, WEEK_6, status=DONE)],
        COPY_DUE - timedelta(hours=12),
        f"{WEEK_6_KEY}:core_lab_due:exam1",
        Severity.WARNING,
        "due at the core lab (manual upload to the sponsor's portal) within 12 h, by Wed 15 Apr 10:00 EDT",
        protocol=CORE_LABBED,
        images=_submitted("due"),
    ),
    Case(
        "core lab overdue: the deadline passed and nothing was submitted",
        [exam(1, WEEK_6, status=DONE)],
        COPY_DUE,
        f"{WEEK_6_KEY}:core_lab_overdue:exam1",
        Severity.CRITICAL,
        "were due at the core lab (manual upload to the sponsor's portal) by Wed 15 Apr 10:00 EDT",
        absent=(FindingKind.CORE_LAB_DUE,),
        protocol=CORE_LABBED,
        images=_submitted("due"),
    ),
    Case(
        "core lab refused: the de-identified copy failed its check and was not sent",
        [exam(1, WEEK_6, status=DONE)],
        _now(date(2026, 4, 13), 18),
        f"{WEEK_6_KEY}:core_lab_refused:exam1",
        Severity.CRITICAL,
        "refused and not sent (StudyDescription holds the patient's name (40 of 40 images))",
        protocol=CORE_LABBED,
        images=_submitted("refused", "StudyDescription holds the patient's name (40 of 40 images)"),
    ),
    Case(
        "core lab query due: its answer is due within the trial's query reminder (2 days)",
        [exam(1, WEEK_6, status=DONE)],
        _now(date(2026, 4, 18), 9),
        f"{WEEK_6_KEY}:core_lab_query_due:exam1",
        Severity.WARNING,
        "a core-lab query is open; the answer is due Mon 20 Apr",
        absent=(FindingKind.CORE_LAB_QUERY_OVERDUE, FindingKind.CORE_LAB_OVERDUE),
        protocol=CORE_LABBED,
        images=replace(_submitted("submitted"), queries={1: (date(2026, 4, 20),)}),
    ),
    Case(
        "core lab query overdue: the answer's date has passed",
        [exam(1, WEEK_6, status=DONE)],
        _now(date(2026, 4, 21), 9),
        f"{WEEK_6_KEY}:core_lab_query_overdue:exam1",
        Severity.CRITICAL,
        "2 core-lab queries are unanswered; the answer was due Mon 20 Apr",
        protocol=CORE_LABBED,
        images=replace(_submitted("submitted"), queries={1: (date(2026, 4, 20), date(2026, 4, 24))}),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_rule_produces_its_finding(case: Case) -> None:
    protocols = [case.protocol] if case.protocol else None
    result = _run(case.exams, case.now, enrolments=[case.enrolment], protocols=protocols, images=case.images)
    by_key = {f.key: f for f in result.findings}
    assert case.key in by_key, sorted(by_key)
    finding = by_key[case.key]
    assert finding.severity is case.severity
    assert case.detail in finding.detail
    assert finding.subject == "S-01" and "E10001" not in finding.detail  # study id, never the MRN
    week_6 = [f for f in result.findings if f.occurrence_key == WEEK_6_KEY]
    assert not [f for f in week_6 if f.kind in case.absent], [f.key for f in week_6]


def test_every_finding_kind_has_a_row_in_the_table() -> None:
    covered = {kind for case in CASES for kind in FindingKind if kind in case.key.split(":")}
    assert covered == set(FindingKind)


def _occurrence(result: Evaluation, key: str) -> tuple[OccurrenceStatus, int | None]:
    (found,) = [o for o in result.occurrences if o.key == key]
    return found.status, found.exam_id


@pytest.mark.parametrize(
    ("exams", "now", "status"),
    [
        ([], _now(date(2026, 3, 1)), OccurrenceStatus.PLANNED),
        ([], _now(date(2026, 3, 30)), OccurrenceStatus.DUE),
        ([exam(1, WEEK_6)], _now(date(2026, 4, 1)), OccurrenceStatus.BOOKED),
        ([exam(1, WEEK_6, status=DONE)], _now(date(2026, 4, 14)), OccurrenceStatus.DONE_IN_WINDOW),
        (
            [exam(1, date(2026, 4, 22), status=DONE)],
            _now(date(2026, 4, 23)),
            OccurrenceStatus.DONE_OUT_OF_WINDOW,
        ),
        ([], _now(date(2026, 4, 21)), OccurrenceStatus.MISSED),
    ],
    ids=["planned", "due", "booked", "done in window", "done out of window", "missed"],
)
def test_occurrences_carry_the_status_coordinators_expect(
    exams: list[ExamRecord], now: datetime, status: OccurrenceStatus
) -> None:
    assert _occurrence(_run(exams, now), WEEK_6_KEY)[0] is status


def _assignments(result: Evaluation) -> dict[int, str | None]:
    serving = (FindingKind.IN_WINDOW, FindingKind.EARLY, FindingKind.LATE, FindingKind.DUPLICATE)
    return {
        f.exam_id: f.occurrence_key for f in result.findings if f.kind in serving and f.exam_id is not None
    }


def test_a_new_exam_never_takes_an_occurrence_from_an_older_one() -> None:
    late = exam(1, date(2026, 4, 23))  # booked 3 days after the Week 6 window
    before = _run([late], _now(date(2026, 4, 1)))
    assert _assignments(before) == {1: WEEK_6_KEY}
    inside = exam(2, WEEK_6)  # later someone books a second one inside the window
    after = _run([late, inside], _now(date(2026, 4, 1)))
    assert _assignments(after) == {1: WEEK_6_KEY, 2: WEEK_6_KEY}
    assert {f.key for f in after.findings if f.kind is FindingKind.DUPLICATE} == {
        f"{WEEK_6_KEY}:duplicate:exam2"
    }


def test_unrelated_exams_change_nothing_about_existing_findings() -> None:
    exams = [exam(1, date(2026, 2, 20), status=DONE), exam(2, WEEK_6)]
    before = _run(exams, _now(date(2026, 4, 1)))
    unrelated = [
        exam(3, WEEK_6, code="XR1", modality="XR"),  # a modality the trial does not use
        exam(4, WEEK_6, mrn="E99999"),  # another patient
        exam(5, WEEK_6, status=ExamStatus.DELETED),  # entered in error
    ]
    after = _run([*unrelated, *exams], _now(date(2026, 4, 1)))
    assert after == before


def test_each_exam_takes_the_closest_free_occurrence_with_ties_to_the_earlier_visit() -> None:
    # 2026-05-04 is 14 days after the Week 6 window and 14 days before the Week 12 window: a tie.
    result = _run([exam(1, date(2026, 5, 4))], _now(date(2026, 4, 1)))
    assert _assignments(result) == {1: WEEK_6_KEY}
    result = _run([exam(1, WEEK_6, status=DONE), exam(2, date(2026, 5, 4))], _now(date(2026, 4, 20)))
    assert _assignments(result) == {1: WEEK_6_KEY, 2: "T-1:S-01:restaging#2"}


def test_when_the_anchor_date_changes_every_due_date_is_recomputed() -> None:
    before = _run([], _now(date(2026, 3, 1)))
    moved = enrolment(c1d1=C1D1 + timedelta(days=9))
    after = _run([], _now(date(2026, 3, 1)), enrolments=[moved])
    assert [o.key for o in after.occurrences] == [o.key for o in before.occurrences]
    assert all(
        b.due + timedelta(days=9) == a.due for b, a in zip(before.occurrences, after.occurrences, strict=True)
    )
    booked = _run([exam(1, date(2026, 4, 7))], _now(date(2026, 3, 1)), enrolments=[moved])
    assert {f.kind for f in booked.findings if f.exam_id == 1} == {
        FindingKind.EARLY
    }  # window now opens 04-15


def test_arms_are_evaluated_against_their_own_schedule() -> None:
    safety = timepoint("safety", anchor="c1d1", day=22, window="+-3d", arms=["B"])
    protocol = trial(with_timepoints(safety))
    now = _now(date(2026, 3, 27))  # the Day 22 window (03-20..03-26) has closed
    arm_a = _run([], now, protocols=[protocol], enrolments=[enrolment(arm="A")])
    arm_b = _run([], now, protocols=[protocol], enrolments=[enrolment(arm="B")])
    assert not [f for f in arm_a.findings if f.timepoint == "safety"]
    assert [f.key for f in arm_b.findings if f.timepoint == "safety"] == ["T-1:S-01:safety#1:missed"]


def test_an_event_driven_timepoint_is_due_once_its_anchor_is_set_later() -> None:
    eot = timepoint("eot", anchor="end_of_treatment", offset="4w", window="+-7d")
    protocol = trial(with_timepoints(eot))
    now = _now(date(2026, 9, 25))
    without = _run([], now, protocols=[protocol])
    assert not [o for o in without.occurrences if o.timepoint == "eot"]
    with_eot = _run([], now, protocols=[protocol], enrolments=[enrolment(end_of_treatment=date(2026, 9, 1))])
    assert [f.key for f in with_eot.findings if f.timepoint == "eot"] == ["T-1:S-01:eot#1:due_unscheduled"]


@pytest.mark.parametrize(("anchor_is_day", "expected"), [(1, FindingKind.IN_WINDOW), (0, FindingKind.EARLY)])
def test_day_0_and_day_1_protocols_judge_the_same_exam_differently(
    anchor_is_day: int, expected: FindingKind
) -> None:
    d15 = '[[timepoints]]\nid = "d15"\nexams = ["mr"]\nanchor = "c1d1"\nday = 15\nwindow = "+-0d"\n'
    text = with_timepoints(d15).replace("anchor_is_day = 1", f"anchor_is_day = {anchor_is_day}")
    scan = exam(1, C1D1 + timedelta(days=14), code="MR1", modality="MR")
    result = _run([scan], _now(date(2026, 3, 10)), protocols=[trial(text)])
    assert [f.kind for f in result.findings if f.exam_id == 1] == [expected]


def test_counting_from_the_previous_exam_lets_the_schedule_drift() -> None:
    text = PROTOCOL.replace('until = "24w"', 'until = "24w"\ncount_from = "previous_exam"')
    late = exam(1, date(2026, 4, 18), status=DONE)  # Week 6 done 5 days after its due date
    result = _run([late], _now(date(2026, 4, 20)), protocols=[trial(text)])
    dues = [o.due for o in result.occurrences if o.timepoint == "restaging"]
    assert dues[:2] == [WEEK_6, date(2026, 4, 18) + timedelta(weeks=6)]


def test_an_amendment_changes_which_orderables_are_accepted_from_its_date() -> None:
    amended = PROTOCOL + (
        '\n[[versions]]\nname = "v1"\neffective = 2025-01-01\n'
        '\n[[versions]]\nname = "A1"\neffective = 2026-05-01\n'
        '[versions.exams.ct]\nmodality = "CT"\norderables = ["CT1", "CT3"]\n'
        '[versions.exams.mr]\nmodality = "MR"\norderables = ["MR1"]\n'
    )
    scans = [exam(1, WEEK_6, code="CT3"), exam(2, date(2026, 5, 25), code="CT3")]
    result = _run(scans, _now(date(2026, 4, 1)), protocols=[trial(amended)])
    kinds = {f.exam_id: (f.kind, f.occurrence_key) for f in result.findings if f.exam_id}
    assert kinds == {
        1: (FindingKind.WRONG_ORDERABLE, WEEK_6_KEY),  # Week 6 is due under v1: CT3 not yet accepted
        2: (FindingKind.IN_WINDOW, "T-1:S-01:restaging#2"),
    }


def test_same_scanner_as_baseline_carries_the_baseline_room() -> None:
    text = PROTOCOL.replace(
        'label = "CT chest/abdomen/pelvis"', 'label = "CT CAP"\nsame_scanner_as = "screening"'
    )
    scans = [exam(1, date(2026, 2, 20), status=DONE, location="CT3"), exam(2, WEEK_6, location="CT1")]
    result = _run(scans, _now(date(2026, 4, 1)), protocols=[trial(text)])
    assert {o.key: o.required_scanner for o in result.occurrences}[WEEK_6_KEY] == "CT3"


def test_a_patient_in_two_trials_has_no_unmatched_finding_for_the_other_trials_exam() -> None:
    other = trial(
        PROTOCOL.replace('id = "T-1"', 'id = "T-2"')
        .replace('"CT1", "CT2"', '"CT7"')
        .replace('"MR1"', '"MR7"')
    )
    both = [enrolment(), enrolment(trial_id="T-2", enrolment_id=2)]
    scan = exam(1, WEEK_6, code="CT7", status=DONE)
    result = _run([scan], _now(date(2026, 4, 14)), protocols=[trial(), other], enrolments=both)
    assert [(f.trial, f.kind) for f in result.findings if f.exam_id == 1] == [("T-2", FindingKind.IN_WINDOW)]


def test_exams_are_found_under_any_of_the_subjects_mrns() -> None:
    scan = exam(1, WEEK_6, mrn="E20002", status=DONE)
    result = _run([scan], _now(date(2026, 4, 14)), enrolments=[enrolment(mrns=("E10001", "E20002"))])
    assert _occurrence(result, WEEK_6_KEY) == (OccurrenceStatus.DONE_IN_WINDOW, 1)


def test_a_subject_who_left_without_an_off_study_date_gets_no_due_or_missed_findings() -> None:
    gone = enrolment(status=EnrolmentStatus.WITHDRAWN)
    result = _run([], _now(date(2026, 4, 21)), enrolments=[gone])
    assert not result.findings
    assert _occurrence(result, WEEK_6_KEY)[0] is OccurrenceStatus.MISSED


def test_an_enrolment_in_an_unknown_trial_is_skipped_and_named() -> None:
    result = _run([], _now(date(2026, 4, 1)), enrolments=[enrolment(trial_id="T-9")])
    assert result.unknown_trials == ("T-9",) and not result.occurrences


def test_naive_times_are_refused() -> None:
    naive = replace(exam(1, WEEK_6), start=datetime(2026, 4, 13, 10))
    with pytest.raises(ValueError, match="timezone-aware"):
        _run([naive], _now(date(2026, 4, 1)))
    with pytest.raises(ValueError, match="timezone-aware"):
        _run([], datetime(2026, 4, 1))


def test_evaluating_one_enrolment_gives_exactly_its_part_of_the_full_evaluation() -> None:
    people = [enrolment(f"S-{n:02d}", mrns=(f"E1{n:04d}",), enrolment_id=n) for n in range(1, 6)]
    scans = [exam(n, WEEK_6 + timedelta(days=n), mrn=f"E1{n % 5 + 1:04d}", status=DONE) for n in range(1, 11)]
    now = _now(date(2026, 4, 30))
    full = _run(scans, now, enrolments=people)
    one = evaluate_enrolments([trial()], [people[2]], index_exams(scans), now, site_zone=NEW_YORK)
    assert one.findings == tuple(f for f in full.findings if f.subject == "S-03")
    assert one.planned_notifications == tuple(n for n in full.planned_notifications if n.enrolment_id == 3)


# -- planned notifications ------------------------------------------------------------------


def test_a_booked_research_exam_plans_a_booking_notice_reminders_and_an_instruction_sheet() -> None:
    scan = exam(1, WEEK_6, hour=9, location="CT3")
    now = _now(date(2026, 4, 1))
    result = _run([scan], now)
    planned = sorted((n.audience, n.kind, n.address, n.due_at) for n in result.planned_notifications)
    start = local(WEEK_6, 9)
    assert planned == [
        (Audience.COORDINATOR, NotificationKind.BOOKING, "email:coord@example.org", now.astimezone(UTC)),
        (
            Audience.COORDINATOR,
            NotificationKind.REMINDER,
            "email:coord@example.org",
            start - timedelta(hours=72),
        ),
        (
            Audience.COORDINATOR,
            NotificationKind.REMINDER,
            "email:coord@example.org",
            start - timedelta(hours=24),
        ),
        (Audience.TECHNOLOGIST, NotificationKind.INSTRUCTIONS, "slack:#ct3", start - timedelta(hours=24)),
    ]
    assert all(
        n.due_at.tzinfo is UTC and n.finding_key == f"{WEEK_6_KEY}:in_window:exam1"
        for n in result.planned_notifications
    )


def test_technologists_are_routed_by_modality_when_the_room_has_no_channel() -> None:
    scan = exam(1, WEEK_6, code="MR1", modality="MR", location="MR2")
    result = _run([scan], _now(date(2026, 4, 1)))
    assert {n.address for n in result.planned_notifications if n.audience is Audience.TECHNOLOGIST} == {
        "slack:#mr"
    }


def test_lead_times_already_passed_collapse_into_one_reminder_due_now() -> None:
    scan = exam(1, WEEK_6, hour=9)
    now = local(WEEK_6, 9) - timedelta(hours=10)
    reminders = [n for n in _run([scan], now).planned_notifications if n.kind is NotificationKind.REMINDER]
    assert len(reminders) == 1 and reminders[0].due_at <= now and "|24h|" in reminders[0].dedupe_key


def test_problems_alert_the_coordinator_immediately_and_in_window_exams_do_not() -> None:
    early = _run([exam(1, date(2026, 4, 1))], _now(date(2026, 3, 25)))
    alerts = [n for n in early.planned_notifications if n.kind is NotificationKind.ALERT]
    # Now, and again when the window opens and before it closes while the booking stays early.
    assert [(n.address, n.finding_kind, n.due_at) for n in alerts] == [
        ("email:coord@example.org", FindingKind.EARLY, _now(date(2026, 3, 25)).astimezone(UTC)),
        ("email:coord@example.org", FindingKind.EARLY, local(date(2026, 4, 6), 8).astimezone(UTC)),
        ("email:coord@example.org", FindingKind.EARLY, local(date(2026, 4, 18), 8).astimezone(UTC)),
    ]
    assert not [n for n in early.planned_notifications if n.kind is NotificationKind.BOOKING]
    fine = _run([exam(1, WEEK_6)], _now(date(2026, 4, 1)))
    assert not [n for n in fine.planned_notifications if n.kind is NotificationKind.ALERT]
    [booking] = [n for n in fine.planned_notifications if n.kind is NotificationKind.BOOKING]
    assert booking.finding_kind is FindingKind.IN_WINDOW and booking.exam_id == 1


def test_old_problems_raise_no_alerts() -> None:
    result = _run([], _now(date(2026, 6, 10)))  # Week 6 closed 51 days ago, Week 12 nine days ago
    missed = [f.occurrence_label for f in result.findings if f.kind is FindingKind.MISSED]
    alerted = {n.finding_key for n in result.planned_notifications}
    assert missed == ["Screening", "Week 6", "Week 12"]
    assert alerted == {"T-1:S-01:restaging#2:missed"}


def test_a_rescheduled_exam_gets_new_dedupe_keys_and_an_unchanged_one_keeps_them() -> None:
    now = _now(date(2026, 4, 1))
    first = {n.dedupe_key for n in _run([exam(1, WEEK_6)], now).planned_notifications}
    again = {n.dedupe_key for n in _run([exam(1, WEEK_6)], now + timedelta(hours=5)).planned_notifications}
    moved = {n.dedupe_key for n in _run([exam(1, WEEK_6 + timedelta(days=1))], now).planned_notifications}
    assert first == again
    assert not first & moved
