"""The FHIR R4 feed: Appointments polled from the EHR's FHIR API, mapped to ScheduleEvents.

Modules, from the pure core outwards:

* :mod:`.bundle` - a searchset page sorted entry by entry (matches, includes, issues,
  problems); :mod:`.references` - resolving an Appointment's references;
* :mod:`.mapping` - :func:`appointment_to_event`, pure, one Appointment to an event or a
  Rejection (the FHIR twin of :func:`monitor.feeds.hl7.mapping.to_events`);
* :mod:`.auth` and :mod:`.client` - HTTP with timeouts, retries, paging, SMART Backend
  Services or a static bearer token, and logs without PHI;
* :mod:`.storing` - raw resource into ``messages``, event into the exams, idempotently;
* :mod:`.poller` - :func:`poll_once`: one whole poll, recorded in ``feed_polls``;
* :mod:`.enrolment` - :func:`fetch_enrolment_proposals`: ResearchSubjects of the studies in
  ``fhir.study_trial_map``, proposed to the office, never enrolled by themselves.
"""

from monitor.feeds.fhir.client import FhirClient, FhirError
from monitor.feeds.fhir.enrolment import EnrolmentProposal, fetch_enrolment_proposals
from monitor.feeds.fhir.mapping import appointment_to_event
from monitor.feeds.fhir.poller import PollResult, poll_once

__all__ = [
    "EnrolmentProposal",
    "FhirClient",
    "FhirError",
    "PollResult",
    "appointment_to_event",
    "fetch_enrolment_proposals",
    "poll_once",
]
