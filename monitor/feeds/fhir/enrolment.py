"""Enrolment proposals from the EHR's ResearchSubject and ResearchStudy resources.

The office's own registry stays the source of truth (DESIGN "FHIR (Epic)"): what the EHR
says about research subjects is only ever *proposed* to the office, never enrolled by
itself. :func:`subject_to_proposal` is pure; :func:`fetch_enrolment_proposals` searches
each study named in ``fhir.study_trial_map`` (keys ``system|value`` or a bare identifier
value, values the office's trial ids) and returns what it found; whoever calls it decides
how to show the proposals (and drops those already enrolled).

Searches: ``ResearchStudy?identifier=``, then ``ResearchSubject?study=ResearchStudy/{id}``
with ``_include=ResearchSubject:individual``; an individual not included is read. A
server may not offer search by study (check the site's FHIR documentation): the fetch then
reports the search's error and proposes nothing.

A proposal carries the MRN (the identifier of ``fhir.mrn_system``), the study's subject
identifier, status, arm and start: never a name or birth date.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from monitor.config import FhirSettings
from monitor.events import Rejection
from monitor.feeds.fhir.bundle import MalformedJson, Problem, Resource, relative_key
from monitor.feeds.fhir.client import FhirClient, FhirError
from monitor.feeds.fhir.references import Context, as_list, as_str

log = logging.getLogger("monitor.feeds.fhir")


@dataclass(frozen=True, slots=True)
class EnrolmentProposal:
    """A subject the EHR lists in a tracked study, for the office to confirm or dismiss."""

    trial: str
    study: str  # the study identifier that matched the map (system|value or value)
    source_id: str  # ResearchSubject.id
    mrn: str | None
    subject_id: str | None  # ResearchSubject.identifier (the study subject id), if any
    status: str  # ResearchSubject.status as the EHR says it
    arm: str | None = None
    started: date | None = None


@dataclass(slots=True)
class ProposalSearch:
    proposals: list[EnrolmentProposal] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def subject_to_proposal(
    subject: Mapping[str, Any], included: Mapping[str, Resource], settings: FhirSettings
) -> EnrolmentProposal | Rejection:
    """One ResearchSubject to a proposal. Skipped (``Rejection.skipped``) when its study is
    not in ``fhir.study_trial_map``; rejected when it has no id, status or individual."""
    if subject.get("resourceType") != "ResearchSubject":
        return Rejection("not a ResearchSubject", "200")
    sid, status = as_str(subject.get("id")), as_str(subject.get("status"))
    if not sid or not status:
        return Rejection("ResearchSubject.id or .status missing", "101")
    context = Context(subject, included)
    study = context.resolve(subject.get("study"))
    matched = _tracked_study(study, settings.study_trial_map) if study is not None else None
    if matched is None:
        return Rejection("study not in fhir.study_trial_map", "0", skipped=True)
    individual = subject.get("individual") or subject.get("subject")  # R4 / R5 name
    if not isinstance(individual, dict):
        return Rejection("ResearchSubject.individual missing", "101")
    person = context.resolve(individual)
    identifiers = [person.get("identifier")] if person is not None else []
    identifiers.append([individual.get("identifier")])
    mrn = next(
        (
            as_str(i.get("value"))
            for source in identifiers
            for i in as_list(source)
            if isinstance(i, dict) and i.get("system") == settings.mrn_system and as_str(i.get("value"))
        ),
        None,
    )
    own_ids = [as_str(i.get("value")) for i in as_list(subject.get("identifier")) if isinstance(i, dict)]
    period = subject.get("period") if isinstance(subject.get("period"), dict) else {}
    return EnrolmentProposal(
        trial=matched[1],
        study=matched[0],
        source_id=sid,
        mrn=mrn,
        subject_id=next((i for i in own_ids if i), None),
        status=status,
        arm=as_str(subject.get("actualArm")) or as_str(subject.get("assignedArm")) or None,
        started=_date(period.get("start") if isinstance(period, dict) else None),
    )


def _tracked_study(study: Resource, trials: Mapping[str, str]) -> tuple[str, str] | None:
    for identifier in as_list(study.get("identifier")):
        if not isinstance(identifier, dict):
            continue
        value, system = as_str(identifier.get("value")), as_str(identifier.get("system"))
        for key in (f"{system}|{value}", value):
            if key in trials:
                return key, trials[key]
    return None


def _date(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def fetch_enrolment_proposals(client: FhirClient, settings: FhirSettings) -> ProposalSearch:
    """Search every tracked study's subjects. Never raises for the server's faults: a failed
    search is in ``errors`` (no identifiers in the text) and the other studies go on."""
    found = ProposalSearch()
    cache: dict[str, Resource] = {}
    for number, key in enumerate(settings.study_trial_map, start=1):
        label = f"study {number} of {len(settings.study_trial_map)}"
        try:
            for study_id in _study_ids(client, key, cache):
                params = [
                    ("study", f"ResearchStudy/{study_id}"),
                    ("_include", "ResearchSubject:individual"),
                    ("_count", str(settings.page_size)),
                ]
                for page in client.search("ResearchSubject", params):
                    cache.update(page.included)
                    found.problems += page.problems
                    for subject in page.matches:
                        _read_individual(client, subject, cache)
                        result = subject_to_proposal(subject, cache, settings)
                        if isinstance(result, EnrolmentProposal):
                            found.proposals.append(result)
                        elif not result.skipped:
                            found.problems.append(
                                Problem("ResearchSubject", as_str(subject.get("id")), result.reason)
                            )
        except (FhirError, MalformedJson) as exc:
            found.errors.append(f"ResearchSubject search for {label}: {exc}")
    log.info(
        "enrolment proposals: %d subjects, %d problems, %d failed searches",
        len(found.proposals),
        len(found.problems),
        len(found.errors),
    )
    return found


def _study_ids(client: FhirClient, key: str, cache: dict[str, Resource]) -> list[str]:
    ids: list[str] = []
    for page in client.search("ResearchStudy", [("identifier", key)]):
        cache.update(page.included)
        for study in page.matches:
            if isinstance(study.get("id"), str) and _tracked_study(study, {key: ""}) is not None:
                ids.append(study["id"])
    return ids


def _read_individual(client: FhirClient, subject: Resource, cache: dict[str, Resource]) -> None:
    individual = subject.get("individual")
    ref = individual.get("reference") if isinstance(individual, dict) else None
    key = relative_key(ref) if isinstance(ref, str) else None
    if key is not None and key not in cache and key.startswith("Patient/"):
        person = client.read(key)
        if person is not None:
            cache[key] = person
