"""Reading FHIR search bundles entry by entry, so that one malformed entry never spoils its page.

Pure: no network, no database. :func:`read_page` sorts a searchset's entries into the
resources that matched, the resources included beside them (``_include``), the
OperationOutcome issues the server put in the bundle, and the problems found, each
problem naming the resource type and id when they can be read (never patient data).

Quirks, each with a named test row (tests/monitor/feeds/test_fhir_bundle.py):

* an entry nested inside an entry (``entry.resource`` is itself ``{fullUrl, resource}``,
  corpus Cerner docs bundle): reported and skipped;
* an entry without its ``resource`` wrapper (the resource's fields sit on the entry,
  corpus NHS BaRS ServiceRequest bundle): reported and skipped;
* OperationOutcome entries (``search.mode = outcome``, corpus Epic Patient bundle):
  kept as :class:`Issue` (severity and code only: ``diagnostics`` is free text);
* links to an STU3 or DSTU2 endpoint where R4 was asked (corpus Epic App Orchard
  bundle): :attr:`Page.version_hint` says so; the entries are read as usual;
* opaque ids with dots and dashes, absolute and ``urn:uuid:`` references: every resource
  is indexed under ``Type/id`` and under its entry's ``fullUrl``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

Resource = dict[str, Any]

PERSON_TYPES = frozenset({"Patient", "RelatedPerson", "Person"})
_OLD_ENDPOINT = re.compile(r"/(STU3|DSTU2|R3|DSTU3)(/|$)", re.IGNORECASE)


class MalformedJson(ValueError):
    """The response body is not JSON; the message gives the position, never the content.
    ``raw`` keeps the bytes, for the store (purged with the other raw payloads)."""

    def __init__(self, message: str, raw: bytes = b"") -> None:
        super().__init__(message)
        self.raw = raw


@dataclass(frozen=True, slots=True)
class Problem:
    """A resource (or entry) that could not be used: type and id where known, a plain reason."""

    resource_type: str
    resource_id: str
    reason: str
    entry: Any = field(default=None, compare=False, repr=False)  # as found, for the store

    def __str__(self) -> str:
        """``Type/id: reason``; a Patient's id (an identifier of a person) is never shown."""
        if self.resource_id and self.resource_type not in PERSON_TYPES:
            return f"{self.resource_type or 'entry'}/{self.resource_id}: {self.reason}"
        return f"{self.resource_type or 'entry'}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome issue from a search bundle: severity and code only."""

    severity: str
    code: str


@dataclass(slots=True)
class Page:
    """One page of a search, sorted."""

    matches: list[Resource] = field(default_factory=list)
    included: dict[str, Resource] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    next_url: str | None = None
    version_hint: str | None = None


def parse_json(raw: bytes) -> Any:
    """Decode a response body. Raises :class:`MalformedJson` with the line and column only."""
    try:
        return json.loads(raw)
    except UnicodeDecodeError as exc:
        raise MalformedJson(f"invalid JSON (not UTF-8 at byte {exc.start})", raw) from None
    except json.JSONDecodeError as exc:
        raise MalformedJson(f"invalid JSON (line {exc.lineno}, column {exc.colno})", raw) from None


def relative_key(reference: str) -> str | None:
    """``Type/id`` of a relative or absolute RESTful reference (``_history`` dropped), else None.

    >>> relative_key("https://ehr.example.org/api/FHIR/STU3/Patient/e1.a-2")
    'Patient/e1.a-2'
    """
    if not reference or reference.startswith(("#", "urn:")):
        return None
    path = urlsplit(reference).path if "://" in reference else reference.split("?", 1)[0]
    parts = [part for part in path.split("/") if part]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-2].isalnum():
        return f"{parts[-2]}/{parts[-1]}"
    return None


def resource_keys(resource: Mapping[str, Any], full_url: str | None = None) -> list[str]:
    """The keys a resource is found under: ``Type/id`` and its entry's ``fullUrl``."""
    keys: list[str] = []
    kind, rid = resource.get("resourceType"), resource.get("id")
    if isinstance(kind, str) and isinstance(rid, str) and rid:
        keys.append(f"{kind}/{rid}")
    if isinstance(full_url, str) and full_url and full_url not in keys:
        keys.append(full_url)
    return keys


def index_resources(resources: Iterable[tuple[Resource, str | None]]) -> dict[str, Resource]:
    """Index ``(resource, fullUrl)`` pairs by every key of :func:`resource_keys`."""
    index: dict[str, Resource] = {}
    for resource, full_url in resources:
        for key in resource_keys(resource, full_url):
            index[key] = resource
    return index


def _ident(data: Mapping[str, Any]) -> tuple[str, str]:
    kind, rid = data.get("resourceType"), data.get("id")
    return (kind if isinstance(kind, str) else "", rid if isinstance(rid, str) else "")


def _issues(outcome: Mapping[str, Any]) -> list[Issue]:
    found = []
    for issue in outcome.get("issue") or []:
        if isinstance(issue, dict):
            found.append(Issue(str(issue.get("severity") or ""), str(issue.get("code") or "")))
    return found


def _version_hint(bundle: Mapping[str, Any]) -> str | None:
    urls = [link.get("url") for link in bundle.get("link") or [] if isinstance(link, dict)]
    urls += [entry.get("fullUrl") for entry in bundle.get("entry") or [] if isinstance(entry, dict)]
    for url in urls:
        if isinstance(url, str):
            found = _OLD_ENDPOINT.search(urlsplit(url).path)
            if found:
                return found.group(1).upper()
    return None


def _next_url(bundle: Mapping[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


def read_page(data: Any, resource_type: str) -> Page:
    """Sort a searchset page for a search of ``resource_type``.

    Never raises for bad content: a body that is not a Bundle becomes one :class:`Problem`
    (a server may answer a search with a bare OperationOutcome, whose issues are kept).
    """
    page = Page()
    if not isinstance(data, dict):
        page.problems.append(Problem("", "", "response is not a JSON object"))
        return page
    if data.get("resourceType") == "OperationOutcome":
        page.issues.extend(_issues(data))
        page.problems.append(
            Problem("OperationOutcome", "", "the server answered the search with an outcome")
        )
        return page
    if data.get("resourceType") != "Bundle":
        kind, rid = _ident(data)
        page.problems.append(Problem(kind, rid, "response is not a Bundle"))
        return page
    page.next_url = _next_url(data)
    page.version_hint = _version_hint(data)
    entries = data.get("entry") or []
    if not isinstance(entries, list):
        page.problems.append(Problem("Bundle", "", "Bundle.entry is not a list"))
        return page
    for entry in entries:
        _sort_entry(entry, resource_type, page)
    return page


def _sort_entry(entry: Any, resource_type: str, page: Page) -> None:
    if not isinstance(entry, dict):
        page.problems.append(Problem("", "", "bundle entry is not an object", entry))
        return
    resource = entry.get("resource")
    if resource is None:
        kind, rid = _ident(entry)
        reason = "bundle entry without its resource wrapper" if kind else "bundle entry without a resource"
        page.problems.append(Problem(kind, rid, reason, entry))
        return
    if not isinstance(resource, dict):
        page.problems.append(Problem("", "", "bundle entry's resource is not an object", entry))
        return
    if "resourceType" not in resource and isinstance(resource.get("resource"), dict):
        kind, rid = _ident(resource["resource"])
        page.problems.append(Problem(kind, rid, "bundle entry nested inside an entry", entry))
        return
    kind, rid = _ident(resource)
    search = entry.get("search") if isinstance(entry.get("search"), dict) else {}
    mode = search.get("mode") if isinstance(search, dict) else None
    if kind == "OperationOutcome" or mode == "outcome":
        page.issues.extend(_issues(resource))
        return
    if not kind:
        page.problems.append(Problem("", rid, "resource without a resourceType", entry))
        return
    full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
    for key in resource_keys(resource, full_url):
        page.included[key] = resource
    if kind == resource_type and mode != "include":
        page.matches.append(resource)
