"""The first week at a real office: findings that are true.

- A visit whose window closed before the office watched the subject is history (``before
  monitoring``), not a missed visit, unless an exam is on record for it.
- A cancelled or no-show visit is due again, and the coordinator hears when its window opens
  and before it closes: no visit goes quietly missed (a property over random schedules).
- A booked exam is done only when the EHR says so: past its start with no arrival or
  completion it is ``unconfirmed``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from rules import (
    Audience,
    Enrolment,
    Evaluation,
    ExamRecord,
    ExamStatus,
    FindingKind,
    NotificationKind,
    OccurrenceStatus,
    PlannedNotification,
    evaluate,
)
from tests.rules.builders import C1D1, NEW_YORK, enrolment, exam, local, trial

WEEK_6_KEY = "T-1:S-01:restaging#1"  # window 2026-04-06..2026-04-20
SCREENING_KEY = "T-1:S-01:screening#1"  # window 2026-02-02..2026-03-01


def _run(exams: list[ExamRecord], now: datetime, subject: Enrolment | None = None) -> Evaluation:
    return evaluate([trial()], [subject or enrolment()], exams, now, site_zone=NEW_YORK, due_soon_days=7)


def _status(result: Evaluation, key: str) -> OccurrenceStatus:
    [found] = [o for o in result.occurrences if o.key == key]
    return found.status


def test_a_window_closed_before_monitoring_began_is_history_not_a_missed_visit() -> None:
    watched_from = enrolment(monitored_from=date(2026, 4, 25))
    result = _run([], local(date(2026, 4, 27), 12), watched_from)
    assert _status(result, SCREENING_KEY) is OccurrenceStatus.BEFORE_MONITORING
    assert _status(result, WEEK_6_KEY) is OccurrenceStatus.BEFORE_MONITORING
    assert not [f for f in result.findings if f.kind is FindingKind.MISSED]
    assert not result.planned_notifications
    # Without a monitoring start (every visit watched) the same schedule is two missed visits.
    unwatched = _run([], local(date(2026, 4, 27), 12))
    assert {f.occurrence_key for f in unwatched.findings if f.kind is FindingKind.MISSED} == {
        SCREENING_KEY,
        WEEK_6_KEY,
    }


def test_an_exam_on_record_before_monitoring_is_judged_as_usual() -> None:
    done = exam(1, date(2026, 4, 14), status=ExamStatus.COMPLETED)
    result = _run([done], local(date(2026, 4, 27), 12), enrolment(monitored_from=date(2026, 4, 25)))
    assert _status(result, WEEK_6_KEY) is OccurrenceStatus.DONE_IN_WINDOW


def test_screening_for_a_subject_enrolled_after_screening_is_not_a_critical_missed() -> None:
    # Added to the registry on C1D1, after the screening window (-28d..-1d) had closed.
    result = _run([], local(C1D1, 12), enrolment(monitored_from=C1D1))
    assert _status(result, SCREENING_KEY) is OccurrenceStatus.BEFORE_MONITORING
    assert not [f for f in result.findings if f.occurrence_key == SCREENING_KEY]


def test_a_cancelled_visit_is_due_again_and_alerted_when_its_window_opens_and_before_it_closes() -> None:
    cancelled = exam(1, date(2026, 4, 10), status=ExamStatus.CANCELLED)
    now = local(date(2026, 3, 31), 12)
    result = _run([cancelled], now)
    kinds = {f.kind for f in result.findings if f.occurrence_key == WEEK_6_KEY}
    assert kinds == {FindingKind.CANCELLED, FindingKind.DUE_UNSCHEDULED}
    [due] = [f for f in result.findings if f.kind is FindingKind.DUE_UNSCHEDULED]
    assert "appointment 7000000001" in due.detail and "was cancelled" in due.detail
    alerts = sorted(
        n.due_at for n in result.planned_notifications if n.finding_kind is FindingKind.DUE_UNSCHEDULED
    )
    # The cancellation was alerted now; the visit is alerted again when the window opens and
    # two days before it closes, at 08:00 in New York, while it stays unbooked.
    assert alerts == [local(date(2026, 4, 6), 8), local(date(2026, 4, 18), 8)]
    assert [n.due_at for n in result.planned_notifications if n.finding_kind is FindingKind.CANCELLED] == [
        now
    ]
    # Booked again in the window: the later alerts are no longer planned (the outbox cancels them).
    rebooked = _run([cancelled, exam(2, date(2026, 4, 14))], now)
    assert not [n for n in rebooked.planned_notifications if n.finding_kind is FindingKind.DUE_UNSCHEDULED]


def test_a_booked_exam_is_done_only_when_the_ehr_says_so() -> None:
    booked = exam(1, date(2026, 4, 13), hour=10)
    assert _status(_run([booked], local(date(2026, 4, 13), 20)), WEEK_6_KEY) is OccurrenceStatus.BOOKED
    later = _run([booked], local(date(2026, 4, 14), 11))  # 25 hours after the start
    assert _status(later, WEEK_6_KEY) is OccurrenceStatus.UNCONFIRMED
    [unconfirmed] = [f for f in later.findings if f.kind is FindingKind.UNCONFIRMED]
    assert unconfirmed.severity.value == "warning"
    # Shown and in the digest, but not an alert of its own.
    assert not [n for n in later.planned_notifications if n.finding_kind is FindingKind.UNCONFIRMED]
    # Still no "missed": the visit was booked in its window, the feed may just be slow to say so.
    after_window = _run([booked], local(date(2026, 4, 30), 12))
    assert not [
        f for f in after_window.findings if f.kind is FindingKind.MISSED and f.occurrence_key == WEEK_6_KEY
    ]
    performed = replace(booked, status=ExamStatus.ARRIVED)
    assert (
        _status(_run([performed], local(date(2026, 4, 14), 11)), WEEK_6_KEY)
        is OccurrenceStatus.DONE_IN_WINDOW
    )


# -- no visit goes quietly missed ----------------------------------------------------------

FIRST_DAY = C1D1 - timedelta(days=35)  # before the screening window opens
LAST_DAY = C1D1 + timedelta(days=95)  # after the Week 12 window closes


@dataclass(frozen=True)
class Booking:
    """One booking as the EHR would send it: booked on ``booked`` for ``day``, then its fate."""

    booked: int  # days after FIRST_DAY
    lead: int  # days from booking to the exam
    fate: str  # completed | no_show | cancelled | silent (never a word again)
    cancel_after: int  # days after booking the cancellation comes (before the exam day)
    code: str


bookings = st.lists(
    st.builds(
        Booking,
        booked=st.integers(0, (LAST_DAY - FIRST_DAY).days - 1),
        lead=st.integers(1, 45),
        fate=st.sampled_from(["completed", "no_show", "cancelled", "silent"]),
        cancel_after=st.integers(0, 44),
        code=st.sampled_from(["CT1", "CT1", "CT2", "CT999"]),
    ),
    max_size=6,
)


def _events(plan: list[Booking]) -> list[tuple[datetime, int, ExamStatus | None, date]]:
    """(when, exam id, status it gets, exam day): booked at 09:00, cancelled at 11:00 before the
    exam day, completed or no-show at 18:00 on the exam day."""
    events = []
    for exam_id, booking in enumerate(plan, start=1):
        booked_on = FIRST_DAY + timedelta(days=booking.booked)
        day = booked_on + timedelta(days=booking.lead)
        events.append((local(booked_on, 9), exam_id, ExamStatus.SCHEDULED, day))
        if booking.fate == "cancelled":
            cancel_on = booked_on + timedelta(days=min(booking.cancel_after, booking.lead - 1))
            events.append((local(cancel_on, 11), exam_id, ExamStatus.CANCELLED, day))
        elif booking.fate != "silent":
            status = ExamStatus.COMPLETED if booking.fate == "completed" else ExamStatus.NO_SHOW
            events.append((local(day, 18), exam_id, status, day))
    return sorted(events, key=lambda event: (event[0], event[1]))


@settings(max_examples=60, deadline=None)
@given(plan=bookings, watched_after=st.integers(0, 120))
def test_every_missed_visit_was_alerted_while_its_window_was_open(
    plan: list[Booking], watched_after: int
) -> None:
    """The office evaluates after every message (the feed writer does) and at noon each day;
    an alert counts as heard when an evaluation finds it due."""
    watched_from = FIRST_DAY + timedelta(days=watched_after)
    subject = enrolment(monitored_from=watched_from)
    codes = {exam_id: booking.code for exam_id, booking in enumerate(plan, start=1)}
    exams: dict[int, ExamRecord] = {}
    heard: dict[str, set[date]] = {}  # occurrence key -> days an alert about it went out
    sent: set[str] = set()
    moments = [(when, event) for when, *event in _events(plan)]
    last = max([LAST_DAY, *(when.astimezone(NEW_YORK).date() for when, _ in moments)])
    day = watched_from
    while day <= last:  # the office looks every day as long as anything happens
        moments.append((local(day, 12), None))
        day += timedelta(days=1)
    result = None
    pending: dict[str, PlannedNotification] = {}  # planned by the last evaluation, still to send
    for now, event in sorted(moments, key=lambda m: (m[0], m[1] is None)):
        # The dispatcher sends what the last evaluation planned as it falls due.
        for key, note in list(pending.items()):
            if note.due_at <= now:
                sent.add(key)
                heard.setdefault(note.occurrence_key or "", set()).add(
                    note.due_at.astimezone(NEW_YORK).date()
                )
                del pending[key]
        if event is not None:
            exam_id, status, exam_day = event
            exams[exam_id] = exam(exam_id, exam_day, status=status, code=codes[exam_id])
        if now < local(watched_from, 0):
            continue
        result = _run(list(exams.values()), now, subject)
        alerts = [
            note
            for note in result.planned_notifications
            if note.kind is NotificationKind.ALERT
            and note.audience is Audience.COORDINATOR
            and note.occurrence_key
            and note.dedupe_key not in sent
        ]
        # As the outbox does: of the alerts about one finding first planned already due, only
        # the latest is sent; the others are recorded skipped (never sent).
        due_now: dict[tuple[str, str], list[PlannedNotification]] = {}
        for note in alerts:
            if note.due_at <= now:
                due_now.setdefault((note.finding_key, note.address), []).append(note)
        for notes in due_now.values():
            sent.update(note.dedupe_key for note in notes)
            heard.setdefault(notes[0].occurrence_key or "", set()).add(now.astimezone(NEW_YORK).date())
        pending = {note.dedupe_key: note for note in alerts if note.dedupe_key not in sent}
    assert result is not None
    for missed in (f for f in result.findings if f.kind is FindingKind.MISSED):
        assert missed.window_start is not None and missed.window_end is not None
        while_open = {
            d
            for d in heard.get(missed.occurrence_key or "", ())
            if missed.window_start <= d <= missed.window_end
        }
        assert while_open, f"{missed.key} went missed without an alert while its window was open"


# -- lead times in the office's terms ------------------------------------------------------


def test_lead_times_on_the_sites_calendar_stay_at_their_hour_across_dst() -> None:
    from rules import load_protocol
    from tests.rules.builders import PROTOCOL

    text = PROTOCOL.replace(
        'lead_times = { coordinator = ["72h", "24h"], technologist = ["24h"] }',
        'lead_times = { coordinator = ["the day before at 14:00"],'
        ' technologist = ["the morning of at 07:00"] }',
    )
    office_terms = load_protocol(text, "t.toml")
    lead = office_terms.routing.coordinator_lead_times[0]
    assert lead.words() == "the day before at 14:00" and lead.key == "d1@14:00"
    assert office_terms.routing.technologist_lead_times[0].words() == "the morning of at 07:00"
    # New York moves its clocks on Sun 8 Mar 2026: 14:00 and 07:00 stay 14:00 and 07:00 local.
    for day, offset in ((date(2026, 3, 6), 5), (date(2026, 3, 10), 4)):
        booked = exam(1, day, hour=9, minute=30)
        result = evaluate([office_terms], [enrolment()], [booked], local(day - timedelta(days=10), 12),
                          site_zone=NEW_YORK)  # fmt: skip
        dues = {
            n.kind: n.due_at
            for n in result.planned_notifications
            if n.exam_id == 1 and n.kind.value != "booking"
        }
        before = day - timedelta(days=1)
        assert dues[NotificationKind.REMINDER] == datetime(
            before.year, before.month, before.day, 14 + offset, tzinfo=UTC
        )
        assert dues[NotificationKind.INSTRUCTIONS] == datetime(
            day.year, day.month, day.day, 7 + offset, tzinfo=UTC
        )


def test_a_lead_time_that_is_neither_a_duration_nor_a_day_and_time_is_named() -> None:
    from rules import ProtocolError, load_protocol
    from tests.rules.builders import PROTOCOL

    text = PROTOCOL.replace(
        'coordinator = ["72h", "24h"]', 'coordinator = ["72h", "the day before at 25:00", "soon"]'
    )
    try:
        load_protocol(text, "t.toml")
    except ProtocolError as error:
        message = str(error)
    else:
        raise AssertionError("the protocol loaded")
    assert "routing.lead_times.coordinator[2]" in message and "bad time of day" in message
    assert "routing.lead_times.coordinator[3]" in message and "the day before at 14:00" in message
