"""Resolving an Appointment's references, and reading FHIR JSON leniently.

References are looked up in the Appointment's ``contained`` resources (``#id``), then in
``included`` under the reference as written (a ``urn:uuid:`` or an absolute URL is an
entry's ``fullUrl``), then under its ``Type/id`` (an absolute URL to the same server,
or to its STU3 twin, as Epic's App Orchard bundles write them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from monitor.feeds.fhir.bundle import Resource, relative_key


class Context:
    """The Appointment plus what its references resolve to (included, contained)."""

    def __init__(self, appointment: Mapping[str, Any], included: Mapping[str, Resource]) -> None:
        self.appointment = appointment
        self.included = included
        self.contained = {
            f"#{c['id']}": c
            for c in as_list(appointment.get("contained"))
            if isinstance(c, dict) and isinstance(c.get("id"), str)
        }

    def resolve(self, reference: Any) -> Resource | None:
        ref = as_str(reference.get("reference")) if isinstance(reference, dict) else ""
        if not ref:
            return None
        if ref.startswith("#"):
            return self.contained.get(ref)
        found = self.included.get(ref)
        key = relative_key(ref)
        if found is None and key is not None:
            found = self.included.get(key)
        return found

    def type_of(self, reference: Any, resolved: Resource | None) -> str:
        if resolved is not None:
            return as_str(resolved.get("resourceType"))
        if not isinstance(reference, dict):
            return ""
        declared = as_str(reference.get("type"))
        if declared:  # corpus NHS BaRS writes "serviceRequest": compare without case
            return declared[:1].upper() + declared[1:]
        key = relative_key(as_str(reference.get("reference")))
        return key.split("/", 1)[0] if key else ""

    def first_request(self) -> Resource | None:
        # R4 basedOn; STU3 called the order an incomingReferral (ReferralRequest).
        for field in ("basedOn", "incomingReferral"):
            for reference in as_list(self.appointment.get(field)):
                resolved = self.resolve(reference)
                if resolved is not None and resolved.get("resourceType") in (
                    "ServiceRequest",
                    "ReferralRequest",
                ):
                    return resolved
        return None


def type_code(concept: Any) -> str:
    """An identifier type's first code, else its text."""
    if not isinstance(concept, dict):
        return ""
    for coding in as_list(concept.get("coding")):
        if isinstance(coding, dict) and as_str(coding.get("code")):
            return as_str(coding.get("code"))
    return as_str(concept.get("text"))  # Epic types its MRN with text "MRN" only


def concept_text(concept: Any) -> str:
    """A CodeableConcept's text, else its first coding's display."""
    if not isinstance(concept, dict):
        return ""
    if as_str(concept.get("text")):
        return as_str(concept.get("text"))
    for coding in as_list(concept.get("coding")):
        if isinstance(coding, dict) and as_str(coding.get("display")):
            return as_str(coding.get("display"))
    return ""


def as_list(value: Any) -> list[Any]:
    """A FHIR array; a lone object where an array belongs (corpus NHS basedOn) is one item."""
    if isinstance(value, list):
        return value
    return [] if value is None else [value]


def as_str(value: Any) -> str:
    """A FHIR string, or "" for anything else (absent, null, a number where text belongs)."""
    return value if isinstance(value, str) else ""
