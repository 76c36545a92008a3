"""Planned notifications: who should hear about a booked research exam or a problem, and when.

- Coordinators get a ``booking`` notice as soon as a research exam is booked in its window
  (timepoint and window status; a booking outside its window raises an ``alert`` instead),
  a ``reminder`` at each of the trial's coordinator lead times before a booked research exam
  (``routing.lead_times.coordinator``), and an ``alert`` as soon as a problem finding
  appears (any kind but ``in_window``).
- Technologists get the ``instructions`` sheet at each technologist lead time, addressed by
  the exam's room first, then by its modality (``routing.rooms``, ``routing.technologists``).

Reminders are planned only for exams still to come. Lead times that have already passed
collapse into one reminder due now (the closest to the exam), so a booking made 10 hours
ahead gets one reminder, not three, due at once. Alerts are not raised for findings about dates further
back than ``alert_lookback_days`` (old history imported on the first run is not news).

Dedupe keys are built from what the message is about, never from ``now``: re-evaluating an
unchanged schedule plans the same keys, and a moved exam plans new ones.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from rules.model import (
    Audience,
    Enrolment,
    ExamRecord,
    Finding,
    FindingKind,
    NotificationKind,
    PlannedNotification,
)
from rules.protocol import LeadTime, Routing

__all__ = ["plan_alerts", "plan_image_alerts", "plan_reminders", "plan_sheets"]


def _due_times(
    start: datetime, leads: tuple[LeadTime, ...], now: datetime, zone: ZoneInfo
) -> list[tuple[LeadTime, datetime]]:
    """``(lead, due_at)`` still worth sending: every future one, plus the one already passed
    that is closest to the exam. A lead that falls at or after the start is dropped.

    A passed one keeps its own due time (in the past: the dispatcher sends it at once, and
    says that it is late), so the plan does not depend on when the evaluation ran.
    """
    dues = [(lead, lead.due(start, zone)) for lead in leads]
    dues = [(lead, due) for lead, due in dues if due < start]
    wanted = [(lead, due) for lead, due in dues if due > now]
    passed = [(lead, due) for lead, due in dues if due <= now]
    if passed:
        wanted.append(max(passed, key=lambda item: item[1]))
    return wanted


def plan_sheets(
    routing: Routing,
    enrolment: Enrolment,
    exam: ExamRecord,
    modality: str,
    finding: Finding,
    now: datetime,
    zone: ZoneInfo,
) -> list[PlannedNotification]:
    """Only the technologists' instruction sheets of :func:`plan_reminders`: for an exam booked
    with a wrong orderable (the sheet warns that the order is not fixed, before the scan)."""
    return [
        plan
        for plan in plan_reminders(routing, enrolment, exam, modality, finding, now, zone)
        if plan.kind is NotificationKind.INSTRUCTIONS
    ]


def plan_reminders(
    routing: Routing,
    enrolment: Enrolment,
    exam: ExamRecord,
    modality: str,
    finding: Finding,
    now: datetime,
    zone: ZoneInfo,
) -> list[PlannedNotification]:
    """The booking notice, coordinator reminders and technologist instruction sheets for one
    booked research exam (lead times on the site's calendar, ``zone``).

    The booking notice (in-window bookings only: the others get an alert) is due at ``now``;
    its dedupe key carries the exam start, so a rescheduled exam plans a new one (the
    dispatcher turns it into an update of the message already posted about the exam).
    """
    start = exam.start
    if start is None or start <= now:
        return []
    start_key = start.astimezone(UTC).isoformat(timespec="minutes")
    # (audience, kind, address, due_at, dedupe key): all else is the same for every message
    wanted: list[tuple[Audience, NotificationKind, str, datetime, str]] = []
    if finding.kind is FindingKind.IN_WINDOW:
        booking = NotificationKind.BOOKING
        for address in routing.coordinators:
            dedupe_key = f"{booking}|{address}|{finding.key}|{start_key}"
            wanted.append((Audience.COORDINATOR, booking, address, now, dedupe_key))
    audiences = (
        (
            Audience.COORDINATOR,
            NotificationKind.REMINDER,
            routing.coordinators,
            routing.coordinator_lead_times,
        ),
        (
            Audience.TECHNOLOGIST,
            NotificationKind.INSTRUCTIONS,
            routing.technologists_for(modality, exam.location),
            routing.technologist_lead_times,
        ),
    )
    for audience, kind, addresses, leads in audiences:
        for lead, due_at in _due_times(start, leads, now, zone):
            for address in addresses:  # plain loops: generators here cost ~5% of the whole call
                dedupe_key = f"{kind}|{address}|{finding.key}|{lead.key}|{start_key}"
                wanted.append((audience, kind, address, due_at, dedupe_key))
    return [
        PlannedNotification(
            audience=audience,
            address=address,
            kind=kind,
            due_at=due_at.astimezone(UTC),
            finding_key=finding.key,
            finding_kind=finding.kind,
            dedupe_key=dedupe_key,
            trial=enrolment.trial,
            enrolment_id=enrolment.id,
            exam_id=exam.id,
            occurrence_key=finding.occurrence_key,
        )
        for audience, kind, address, due_at, dedupe_key in wanted
    ]


# Findings the office reads in the digest and on the dashboard, not as an alert of their own.
_NOT_ALERTED = frozenset({FindingKind.IN_WINDOW, FindingKind.UNCONFIRMED})


def worth_alerting(kind: FindingKind, fact_day: int, today: int, alert_lookback_days: int) -> bool:
    """Whether a finding about ``fact_day`` (ordinal: exam date or window end) deserves an alert today."""
    return kind not in _NOT_ALERTED and today - fact_day <= alert_lookback_days


def plan_alerts(
    routing: Routing,
    finding: Finding,
    fact_day: date,
    due_at: datetime,
    later: tuple[tuple[str, datetime], ...] = (),
    *,
    immediate: bool = True,
) -> list[PlannedNotification]:
    """Coordinator alerts for a problem finding, due at ``due_at`` (now, in UTC) unless not
    ``immediate``, and at each ``(phase, when)`` of ``later`` while the finding stands (a
    visit still unbooked when its window opens, and when it is about to close: a pending one
    is dropped when the finding resolves).

    ``fact_day`` is the exam date or the window's end. The dedupe key carries the exam date
    (or the window start), so an exam moved to another wrong day is news again, while
    re-evaluating the same facts never is. Call :func:`worth_alerting` first.
    """
    about = fact_day.isoformat() if finding.exam_id is not None else f"{finding.window_start}"
    first = ((about, due_at),) if immediate else ()
    times = (*first, *((f"{about}:{phase}", when) for phase, when in later))
    return [
        _alert(finding, Audience.COORDINATOR, address, when, what)
        for what, when in times
        for address in routing.coordinators
    ]


def plan_image_alerts(
    routing: Routing,
    finding: Finding,
    exam: ExamRecord,
    modality: str,
    due_at: datetime,
    about: str,
) -> list[PlannedNotification]:
    """Alerts about an exam's images, due at ``due_at``: to the coordinators, and to the
    technologists of the exam's room (else its modality), who can still repeat a series
    while the patient is there.

    ``about`` names what was found (the study and the rows that failed), so that other wrong
    images of the same exam are news again, while re-checking the same images never is.
    """
    audiences = [(Audience.COORDINATOR, address) for address in routing.coordinators]
    audiences += [
        (Audience.TECHNOLOGIST, address) for address in routing.technologists_for(modality, exam.location)
    ]
    return [
        _alert(finding, audience, address, due_at, about) for audience, address in dict.fromkeys(audiences)
    ]


def plan_core_lab_alerts(
    routing: Routing, finding: Finding, due_at: datetime, about: str
) -> list[PlannedNotification]:
    """Alerts to the coordinators about an exam's copy for the core lab (due, overdue,
    refused), due at ``due_at``; ``about`` names the deadline or the refusal, so that each is
    news once."""
    return [
        _alert(finding, Audience.COORDINATOR, address, due_at, about)
        for address in dict.fromkeys(routing.coordinators)
    ]


def _alert(
    finding: Finding, audience: Audience, address: str, due_at: datetime, about: str
) -> PlannedNotification:
    """One alert about ``finding``; its dedupe key ends with ``about`` (what makes it news)."""
    return PlannedNotification(
        audience=audience,
        address=address,
        kind=NotificationKind.ALERT,
        due_at=due_at,
        finding_key=finding.key,
        finding_kind=finding.kind,
        dedupe_key=f"{NotificationKind.ALERT}|{address}|{finding.key}|{about}",
        trial=finding.trial,
        enrolment_id=finding.enrolment_id,
        exam_id=finding.exam_id,
        occurrence_key=finding.occurrence_key,
    )
