"""How long a judgement holds: the first instant its conclusions may change with the same inputs.

The engine reads the clock in two ways (:class:`rules.judging.Run`):

- the site's date: whether a window is open, closing or closed, when an unbooked visit is
  due, how far the occurrences run (the horizon) and which facts are still news (the alert
  look-back). All of these change at local midnight, and only then;
- the instant, always against an exam's start: a booking notice is planned only before the
  start, each reminder and instruction sheet by whether its due time has passed (the late one
  is chosen among those passed), a booked exam becomes ``unconfirmed`` once
  ``unconfirmed_after`` has passed since its start, and, with a PACS watched, its images
  are due ``images_due_after`` after it.

So with unchanged inputs the engine's answer for one enrolment is the same from ``now`` until
the next local midnight or the next of those instants, whichever comes first. Every exam of
the subject's MRNs counts here, whatever its state or modality, and every lead time of the
trial: a superset costs at most an earlier judgement, never a stale one.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from rules.engine import ExamsByMrn, exams_of
from rules.model import Enrolment
from rules.protocol import Trial

__all__ = ["stable_until"]

_DAY = timedelta(days=1)


def stable_until(
    trial: Trial,
    enrolment: Enrolment,
    exams_by_mrn: ExamsByMrn,
    now: datetime,
    *,
    site_zone: ZoneInfo,
    unconfirmed_after_hours: float = 24.0,
    images_due_after: timedelta | None = None,
    also_at: Iterable[datetime] = (),
) -> datetime:
    """The first instant after ``now`` (aware, UTC) at which :func:`rules.evaluate_enrolments`
    may conclude otherwise for ``enrolment``, its protocol and exams unchanged (module doc).
    ``images_due_after``: with a PACS watched, an exam's images are expected that long after
    its start (``images_missing`` from then on). ``also_at``: other instants the answer may
    change at (a core-lab copy's reminder and deadline: :func:`rules.core_lab.submission_instants`)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    local = now.astimezone(site_zone)
    midnight = datetime.combine(local.date() + _DAY, time(0), site_zone).astimezone(UTC)
    until = min(midnight, now.astimezone(UTC) + _DAY)  # a day with a DST change is not longer
    for instant in also_at:
        if now < instant < until:
            until = instant.astimezone(UTC)
    unconfirmed_after = timedelta(hours=unconfirmed_after_hours)
    leads = (*trial.routing.coordinator_lead_times, *trial.routing.technologist_lead_times)
    images = (images_due_after,) if images_due_after is not None else ()
    last = max((unconfirmed_after, *images))
    for exam in exams_of(enrolment, exams_by_mrn):
        start = exam.start
        # Every instant tied to this exam lies at or before start + the last of those delays.
        if start is None or start + last <= now:
            continue
        ties = (start, start + unconfirmed_after, *(start + delay for delay in images))
        for instant in (*ties, *(lead.due(start, site_zone) for lead in leads)):
            if now < instant < until:
                until = instant.astimezone(UTC)
    return until
