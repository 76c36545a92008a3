"""FHIR Appointment (R4, and the STU3 shape Epic still serves) to :class:`ScheduleEvent`.

Entry point: :func:`appointment_to_event`. Pure and never raises for bad input: every
problem becomes a :class:`Rejection` with a plain, PHI-free reason and an HL7 table 0357
error code, as the HL7 mapping does:

=====  ==================================================================  =======
code   when                                                                skipped
=====  ==================================================================  =======
0      no patient participant at all (a hold or block of time)             yes
101    no id; no status                                                    no
102    start or end that is not a FHIR instant (an offset is required)     no
103    a status outside the Appointment status value set                   no
200    not an Appointment                                                  no
207    anything unexpected (the reason names the exception type)           no
=====  ==================================================================  =======

Choices (each has a named row in tests/monitor/feeds/test_fhir_mapping.py):

* Identity: ``Appointment.id``. Identifiers typed FILL/PLAC (HL7 v2-0203) are kept in
  ``extra["filler_id"]`` / ``extra["placer_id"]``: they are what an HL7 feed calls SCH-2/SCH-1.
* Kind: from ``status`` (:data:`STATUS_KINDS`); a cancelationReason never overrides it
  (Cerner sends one on no-shows too). proposed, pending and waitlist are ``ordered``:
  wanted, not yet booked.
* Start and duration: ``start`` to UTC; the duration is ``end - start``, else
  ``minutesDuration`` (the msft converter writes ``minutesDuration: 1`` next to a 50
  minute start/end, and FHIR allows it to differ). A participant's own period is not the
  appointment's (the Cerner docs carry one from another year).
* Patient: the participant whose actor is (or resolves to) a Patient. Its identifiers
  come from the resolved Patient (``included``, keyed ``Type/id`` or fullUrl; contained
  ``#id``; absolute URLs reduced to ``Type/id``), else from ``actor.identifier``. The MRN
  is the identifier whose system is ``mrn_system``, else (no system configured) the
  first typed MR/MRN. Government and insurance numbers (SSN, driver's licence, passport,
  Medicare ...) are dropped; names, birth dates and a patient's ``actor.display`` are
  never read.
* Procedure: the first ``serviceType``, else the basedOn ServiceRequest's ``code``, else
  ``appointmentType``; the coding the user selected, else the first with a code. FHIR code
  system URIs that HL7 v2 table 0396 names are given by that name (``SCT``, ``LN``, ``C4``)
  so both feeds say the same. When serviceType wins, the order's code is kept in
  ``extra["order_code"]``.
* Location: the first Location participant's name (or its reference's display);
  further Locations, Devices, HealthcareServices and display-only resources (a Cerner
  room) are ``resources``. Practitioners are not: they are people, not scanners or rooms.
* Comments: ``comment``, ``patientInstruction``, then the ServiceRequest's notes and
  patient instruction.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fhirclient.models.fhirinstant import FHIRInstant  # type: ignore[import-untyped]

from monitor.config import FhirSettings
from monitor.events import UNNEEDED_IDENTIFIER_TYPES, EventKind, PatientIdentifier, Rejection, ScheduleEvent
from monitor.feeds.fhir.bundle import Resource
from monitor.feeds.fhir.references import Context, as_list, as_str, concept_text, type_code

K = EventKind
# http://hl7.org/fhir/R4/valueset-appointmentstatus.html (STU3 has the same codes minus
# checked-in and waitlist).
STATUS_KINDS: Mapping[str, EventKind] = {
    "proposed": K.ORDERED,
    "pending": K.ORDERED,
    "waitlist": K.ORDERED,
    "booked": K.BOOKED,
    "arrived": K.ARRIVED,
    "checked-in": K.ARRIVED,
    "fulfilled": K.COMPLETED,
    "cancelled": K.CANCELLED,
    "noshow": K.NO_SHOW,
    "entered-in-error": K.DELETED,
}

# FHIR code system URIs (http://hl7.org/fhir/R4/terminologies-systems.html) and the names
# HL7 v2 table 0396 gives them, so that an HL7 and a FHIR feed name a code system alike.
HL7_SYSTEM_NAMES: Mapping[str, str] = {
    "http://snomed.info/sct": "SCT",
    "http://loinc.org": "LN",
    "http://www.ama-assn.org/go/cpt": "C4",
    "urn:oid:2.16.840.1.113883.6.12": "C4",
    "http://www.cms.gov/Medicare/Coding/ICD10": "I10P",
    "urn:oid:2.16.840.1.113883.6.285": "HCPCS",
}

# US social security number systems: dropped like the types in UNNEEDED_IDENTIFIER_TYPES.
_UNNEEDED_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/us-ssn", "urn:oid:2.16.840.1.113883.4.1"})
_MRN_TYPES = frozenset({"MR", "MRN"})
_RESOURCE_TYPES = frozenset({"Device", "HealthcareService", "Location"})
_PEOPLE = frozenset({"Practitioner", "PractitionerRole", "RelatedPerson", "Patient"})
_SHORT = 64


class _Invalid(Exception):
    def __init__(self, reason: str, code: str, *, skipped: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.code, self.skipped = reason, code, skipped


def appointment_to_event(
    resource: Mapping[str, Any], included: Mapping[str, Resource], settings: FhirSettings
) -> ScheduleEvent | Rejection:
    """Map one Appointment; ``included`` holds the resources it may reference (see module doc)."""
    try:
        return _map(resource, included, settings)
    except _Invalid as problem:
        return Rejection(problem.reason, problem.code, skipped=problem.skipped)
    except Exception as exc:  # never let bad input escape; the type name carries no PHI
        return Rejection(f"internal error while mapping the Appointment ({type(exc).__name__})", "207")


def _map(
    resource: Mapping[str, Any], included: Mapping[str, Resource], settings: FhirSettings
) -> ScheduleEvent:
    if not isinstance(resource, Mapping) or resource.get("resourceType") != "Appointment":
        raise _Invalid("not an Appointment", "200")
    rid = as_str(resource.get("id"))
    if not rid:
        raise _Invalid("Appointment.id missing", "101")
    status = as_str(resource.get("status"))
    if not status:
        raise _Invalid("Appointment.status missing", "101")
    kind = STATUS_KINDS.get(status.lower())
    if kind is None:
        raise _Invalid(f"Appointment.status {status[:24]!r} is not an appointment status", "103")
    start, end = _instant(resource, "start"), _instant(resource, "end")
    context = Context(resource, included)
    patient_ids, has_patient = _patient(context)
    if not has_patient:
        raise _Invalid("no patient participant: hold or block", "0", skipped=True)
    service_request = context.first_request()
    code, text, system, extra = _procedure(resource, service_request)
    location, resources = _places(context)
    extra.update(_appointment_identifiers(resource))
    reason = concept_text(resource.get("cancelationReason"))
    if reason and kind in (K.CANCELLED, K.NO_SHOW):
        extra["cancel_reason"] = reason[:200]
    return ScheduleEvent(
        source=settings.feed,
        external_id=rid,
        kind=kind,
        trigger="Appointment",
        status_code=status,
        patient_ids=patient_ids,
        mrn=_choose_mrn(patient_ids, settings.mrn_system),
        accession=_typed_identifier(service_request, {"ACSN"}),
        order_number=_typed_identifier(service_request, {"PLAC", "FILL"}),
        procedure_code=code,
        procedure_text=text,
        procedure_system=system,
        start=start,
        duration_minutes=_duration(resource, start, end),
        location=location,
        resources=resources,
        comments=_comments(resource, service_request),
        extra=extra,
        event_time=_last_updated(resource),
    )


def _last_updated(resource: Mapping[str, Any]) -> datetime | None:
    """``meta.lastUpdated``: orders the versions of one Appointment; None when absent or bad
    (it only orders events, so a bad one must not reject the resource)."""
    meta = resource.get("meta")
    if not isinstance(meta, Mapping):
        return None
    try:
        parsed = FHIRInstant(meta.get("lastUpdated")).datetime
    except (TypeError, ValueError):
        return None
    if not isinstance(parsed, datetime) or parsed.utcoffset() is None:
        return None
    return parsed.astimezone(UTC)


# --- the patient ------------------------------------------------------------------------------


def _patient(context: Context) -> tuple[tuple[PatientIdentifier, ...], bool]:
    """The patient participant's identifiers, and whether there is a patient at all."""
    has_patient = False
    for participant in as_list(context.appointment.get("participant")):
        actor = participant.get("actor") if isinstance(participant, dict) else None
        if not isinstance(actor, dict):
            continue
        resolved = context.resolve(actor)
        kind = context.type_of(actor, resolved)
        if kind not in ("Patient", "") or (kind == "" and not as_str(actor.get("reference"))):
            continue
        has_patient = True  # an unresolvable urn:uuid actor may well be the patient
        sources = [resolved.get("identifier")] if resolved is not None else []
        sources.append([actor.get("identifier")])
        ids = tuple(i for source in sources for i in _identifiers(source))
        if ids:
            return ids, True
    return (), has_patient


def _identifiers(values: Any) -> list[PatientIdentifier]:
    found: list[PatientIdentifier] = []
    for identifier in as_list(values):
        if not isinstance(identifier, dict):
            continue
        value, system = as_str(identifier.get("value")), as_str(identifier.get("system"))
        kind = type_code(identifier.get("type"))
        if not value or system in _UNNEEDED_SYSTEMS or kind.upper() in UNNEEDED_IDENTIFIER_TYPES:
            continue
        found.append(PatientIdentifier(value, system, kind))
    return found


def _choose_mrn(ids: tuple[PatientIdentifier, ...], system: str) -> str | None:
    if system:
        return next((i.value for i in ids if i.authority == system), None)
    return next((i.value for i in ids if i.type_code.upper() in _MRN_TYPES), None)


# --- what, where, when --------------------------------------------------------------------


def _procedure(
    appointment: Mapping[str, Any], request: Resource | None
) -> tuple[str | None, str | None, str | None, dict[str, str]]:
    extra: dict[str, str] = {}
    order = _coding(request.get("code")) if request is not None else None
    service_types = as_list(appointment.get("serviceType"))
    for candidate in (
        service_types[0] if service_types else None,
        "order",
        appointment.get("appointmentType"),
    ):
        found = order if candidate == "order" else _coding(candidate)
        if found is not None:
            if candidate != "order" and order is not None and order[0]:
                extra["order_code"] = order[0]
            return (*found, extra)
    return None, None, None, extra


def _coding(concept: Any) -> tuple[str | None, str | None, str | None] | None:
    if not isinstance(concept, dict):
        return None
    codings = [c for c in as_list(concept.get("coding")) if isinstance(c, dict) and as_str(c.get("code"))]
    chosen = next((c for c in codings if c.get("userSelected") is True), codings[0] if codings else None)
    text = as_str(concept.get("text"))
    if chosen is None:
        return (None, text, None) if text else None
    system = as_str(chosen.get("system"))
    return (
        as_str(chosen.get("code")),
        as_str(chosen.get("display")) or text or None,
        HL7_SYSTEM_NAMES.get(system, system) or None,
    )


def _places(context: Context) -> tuple[str | None, tuple[str, ...]]:
    location: str | None = None
    resources: list[str] = []
    for participant in as_list(context.appointment.get("participant")):
        actor = participant.get("actor") if isinstance(participant, dict) else None
        if not isinstance(actor, dict):
            continue
        resolved = context.resolve(actor)
        kind = context.type_of(actor, resolved)
        if not kind and not as_str(actor.get("reference")) and not _mentions_patient(participant):
            name = as_str(actor.get("display"))  # a Cerner room: a display and a type, no reference
        elif kind in _RESOURCE_TYPES:
            name = _resource_name(resolved, actor)
        else:
            continue
        if kind == "Location" and location is None:
            location = name or None
        elif name and name[:_SHORT] not in resources:
            resources.append(name[:_SHORT])
    return location, tuple(resources)


def _mentions_patient(participant: Mapping[str, Any]) -> bool:
    for concept in as_list(participant.get("type")):
        if isinstance(concept, dict):
            texts = [as_str(concept.get("text"))]
            texts += [
                as_str(c.get("display")) + as_str(c.get("code"))
                for c in as_list(concept.get("coding"))
                if isinstance(c, dict)
            ]
            if any("patient" in t.lower() or t.upper() == "SBJ" for t in texts):
                return True
    return False


def _resource_name(resolved: Resource | None, actor: Mapping[str, Any]) -> str:
    if resolved is not None:
        kind = resolved.get("resourceType")
        if kind == "Device":
            ids = [as_str(i.get("value")) for i in as_list(resolved.get("identifier")) if isinstance(i, dict)]
            names = [
                as_str(n.get("name")) for n in as_list(resolved.get("deviceName")) if isinstance(n, dict)
            ]
            for value in (*ids, *names):
                if value:
                    return value
        name = as_str(resolved.get("name"))
        if name:
            return name
        types = as_list(resolved.get("type"))
        if types and concept_text(types[0]):
            return concept_text(types[0])
    return as_str(actor.get("display"))


def _instant(resource: Mapping[str, Any], field: str) -> datetime | None:
    value = resource.get(field)
    if value is None:
        return None
    try:
        parsed = FHIRInstant(value).datetime
    except (TypeError, ValueError):
        raise _Invalid(f"Appointment.{field} is not an instant with a UTC offset", "102") from None
    if not isinstance(parsed, datetime) or parsed.utcoffset() is None:
        raise _Invalid(f"Appointment.{field} is not an instant with a UTC offset", "102")
    return parsed.astimezone(UTC)


def _duration(resource: Mapping[str, Any], start: datetime | None, end: datetime | None) -> int | None:
    if start is not None and end is not None and end > start:
        return int((end - start).total_seconds() // 60)
    minutes = resource.get("minutesDuration")
    if isinstance(minutes, int) and not isinstance(minutes, bool) and minutes > 0:
        return minutes
    return None


def _comments(appointment: Mapping[str, Any], request: Resource | None) -> tuple[str, ...]:
    texts = [as_str(appointment.get("comment")), as_str(appointment.get("patientInstruction"))]
    if request is not None:
        texts += [as_str(note.get("text")) for note in as_list(request.get("note")) if isinstance(note, dict)]
        texts.append(as_str(request.get("patientInstruction")))
    out: list[str] = []
    for text in texts:
        text = text.strip()
        if text and text not in out:
            out.append(text)
    return tuple(out)


def _appointment_identifiers(resource: Mapping[str, Any]) -> dict[str, str]:
    extra: dict[str, str] = {}
    for identifier in as_list(resource.get("identifier")):
        if isinstance(identifier, dict) and as_str(identifier.get("value")):
            name = {"FILL": "filler_id", "PLAC": "placer_id"}.get(type_code(identifier.get("type")).upper())
            if name and name not in extra:
                extra[name] = as_str(identifier.get("value"))
    return extra


def _typed_identifier(resource: Resource | None, types: set[str]) -> str | None:
    if resource is None:
        return None
    for identifier in as_list(resource.get("identifier")):
        if isinstance(identifier, dict) and type_code(identifier.get("type")).upper() in types:
            return as_str(identifier.get("value")) or None
    return None
