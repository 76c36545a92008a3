"""One poll of the FHIR Appointment feed: search, resolve, map, store, record the poll.

Entry point: :func:`poll_once` (the CLI's ``hiro-monitor fhir poll --once`` and the
scheduled job call it). It never raises for the server's or the content's faults: a
search that fails is recorded in the result and in ``feed_polls.error`` and the other
searches go on; one bad resource never stops the poll. It raises only when the store
itself fails (the caller's scheduler logs it and tries again next time).

Searches (DESIGN "FHIR (Epic)"):

* ``per_patient`` (Epic): for each MRN from ``patients()`` (the enrolled subjects of
  active trials), ``Patient?identifier={mrn_system}|{mrn}``, then
  ``Appointment?patient={id}&date=ge{from}&date=lt{to}`` over the whole window (a
  subject has few appointments, and a newly enrolled one needs them all).
* ``date_range``: the first poll searches the whole window. Later polls search
  ``date=ge{from}&_lastUpdated=gt{last success - 1 min}`` with no upper date bound (an
  appointment moved beyond the window is still heard of), plus the slice of the window
  that is new since the last success (appointments booked long ago come into the window
  without being updated, so ``_lastUpdated`` alone would never return them).
* ``_include`` of the Appointment's patient, location, order and actors, where the
  server's CapabilityStatement lists them; references still unresolved are read once
  each and cached for the rest of the poll.
* A server that says it speaks FHIR 3 (STU3) or 1 (DSTU2) is polled all the same (the
  Appointment fields used are the same) and the poll records a warning saying so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from monitor.clock import SYSTEM_CLOCK
from monitor.config import ConfigError, FhirSettings, Settings
from monitor.events import Rejection, ScheduleEvent
from monitor.feeds.fhir.bundle import MalformedJson, Page, Problem, Resource, relative_key
from monitor.feeds.fhir.client import FhirClient, FhirError
from monitor.feeds.fhir.mapping import appointment_to_event
from monitor.feeds.fhir.references import as_list
from monitor.feeds.fhir.storing import Stored, canonical, store_problem, store_resource
from monitor.store.polls import last_success, poll_finished, poll_started

log = logging.getLogger("monitor.feeds.fhir")

WANTED_INCLUDES = ("Appointment:patient", "Appointment:location", "Appointment:based-on", "Appointment:actor")
RESOLVABLE = frozenset(
    {"Patient", "Location", "ServiceRequest", "Device", "HealthcareService", "ReferralRequest"}
)
LAST_UPDATED_OVERLAP = timedelta(minutes=1)  # clock skew between us and the server


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one poll did. ``accepted`` counts Appointments that map to an event (whether
    applied now or unchanged since an earlier poll); ``applied`` those written now."""

    feed: str
    started_at: datetime
    finished_at: datetime
    ok: bool
    resources: int = 0
    accepted: int = 0
    rejected: int = 0
    skipped: int = 0
    applied: int = 0
    unchanged: int = 0
    error: str = ""
    warnings: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = ()


@dataclass(slots=True)
class _Tally:
    accepted: int = 0  # applied now
    unchanged: int = 0  # mapped, and stored as it is by an earlier poll
    rejected: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)


def poll_once(
    engine: Engine,
    settings: Settings,
    patients: Callable[[], Sequence[str]] | None = None,
    *,
    client: FhirClient | None = None,
    clock: Callable[[], datetime] = SYSTEM_CLOCK,
) -> PollResult:
    """Run one poll of ``settings.fhir`` and record it in ``feed_polls``; see the module doc.

    ``patients`` gives the MRNs to poll in ``per_patient`` mode. Raises only for store
    failures (:class:`sqlalchemy.exc.SQLAlchemyError`); the poll's row then has no finish time.
    ``fhir.enabled`` is the caller's to check (a manual poll of a disabled feed is allowed).
    """
    fhir = settings.fhir
    started = clock()
    with engine.begin() as conn:
        poll_id = poll_started(conn, fhir.feed, started)
        since = last_success(conn, fhir.feed)
    tally = _Tally()
    made_client = client is None
    try:
        if client is None:
            client = FhirClient(fhir)
        _Poll(engine, fhir, client, tally, clock).run(started, since, patients)
    except (FhirError, MalformedJson, ConfigError) as exc:
        tally.errors.append(str(exc))
    finally:
        if made_client and client is not None:
            client.close()
    finished = clock()
    ok = not tally.errors
    result = PollResult(
        feed=fhir.feed,
        started_at=started,
        finished_at=finished,
        ok=ok,
        resources=tally.accepted + tally.unchanged + tally.rejected + tally.skipped,
        accepted=tally.accepted + tally.unchanged,
        rejected=tally.rejected,
        skipped=tally.skipped,
        applied=tally.accepted,
        unchanged=tally.unchanged,
        error="; ".join(tally.errors),
        warnings=tuple(tally.warnings),
        problems=tuple(tally.problems),
    )
    with engine.begin() as conn:
        poll_finished(
            conn,
            poll_id,
            finished_at=finished,
            ok=ok,
            resources=result.resources,
            accepted=result.accepted,
            rejected=result.rejected,
            error="; ".join([*tally.errors, *(f"warning: {w}" for w in tally.warnings)]),
        )
    log.info(
        "FHIR poll of %s %s: %d Appointments, %d accepted (%d applied), %d rejected, %d skipped, %d warnings",
        fhir.feed,
        "ok" if ok else "FAILED",
        result.resources,
        result.accepted,
        result.applied,
        result.rejected,
        result.skipped,
        len(result.warnings),
    )
    return result


class _Poll:
    def __init__(
        self,
        engine: Engine,
        settings: FhirSettings,
        client: FhirClient,
        tally: _Tally,
        clock: Callable[[], datetime],
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.client = client
        self.tally = tally
        self.clock = clock
        self.cache: dict[str, Resource | None] = {}
        self.includes: list[str] = []
        self.seen: set[str] = set()

    def run(
        self, started: datetime, since: datetime | None, patients: Callable[[], Sequence[str]] | None
    ) -> None:
        self._read_capabilities()
        window_from = started - timedelta(days=self.settings.look_back_days)
        window_to = started + timedelta(days=self.settings.look_ahead_days)
        for label, params, patient_id in self._searches(window_from, window_to, since, patients):
            try:
                self._search(params, patient_id)
            except (FhirError, MalformedJson) as exc:
                self.tally.errors.append(f"{label}: {exc}")
                if isinstance(exc, MalformedJson):
                    self._store_problem(Problem("Bundle", "", str(exc)), exc.raw)

    # -- what to ask ----------------------------------------------------------------------

    def _read_capabilities(self) -> None:
        statement = self.client.capabilities()
        if statement is None:
            self.tally.warn("no CapabilityStatement: searching without _include")
            return
        version = str(statement.get("fhirVersion") or "")
        if version and not version.startswith("4."):
            name = {"3": "STU3", "1": "DSTU2"}.get(version[:1], version)
            self.tally.warn(f"server speaks FHIR {version} ({name}), not R4: Appointments read as R4")
        offered: set[str] = set()
        for rest in as_list(statement.get("rest")):
            for resource in as_list(rest.get("resource")) if isinstance(rest, dict) else []:
                if isinstance(resource, dict) and resource.get("type") == "Appointment":
                    offered.update(str(i) for i in as_list(resource.get("searchInclude")))
        self.includes = [i for i in WANTED_INCLUDES if i in offered or "*" in offered]

    def _searches(
        self,
        window_from: datetime,
        window_to: datetime,
        since: datetime | None,
        patients: Callable[[], Sequence[str]] | None,
    ) -> Iterator[tuple[str, list[tuple[str, str]], str | None]]:
        """(label for errors, search parameters, the patient id searched for) of each search."""
        common = [("_count", str(self.settings.page_size))] + [("_include", i) for i in self.includes]
        if self.settings.service_category:
            common.append(("service-category", self.settings.service_category))
        whole = [("date", f"ge{_instant(window_from)}"), ("date", f"lt{_instant(window_to)}")]
        if self.settings.mode == "date_range":
            if since is None:
                yield "Appointment search (whole window)", whole + common, None
                return
            changed = [
                ("date", f"ge{_instant(window_from)}"),
                ("_lastUpdated", f"gt{_instant(since - LAST_UPDATED_OVERLAP)}"),
            ]
            yield "Appointment search (updated since last poll)", changed + common, None
            new_from = max(window_from, since + timedelta(days=self.settings.look_ahead_days))
            if new_from < window_to:
                yield (
                    "Appointment search (new days)",
                    [("date", f"ge{_instant(new_from)}"), whole[1], *common],
                    None,
                )
            return
        if not self.settings.mrn_system:
            raise ConfigError("fhir.mrn_system is required in per_patient mode")
        if patients is None:
            raise ConfigError("per_patient mode needs the list of enrolled patients")
        try:
            mrns = list(patients())
        except Exception as exc:  # the caller's query; its message could hold anything
            raise FhirError(f"the list of enrolled patients failed ({type(exc).__name__})") from None
        for number, mrn in enumerate(mrns, start=1):
            label = f"patient {number} of {len(mrns)}"  # never the MRN itself
            for patient_id in self._patient_ids(mrn, label):
                params = [("patient", patient_id), *whole, *common]
                yield f"Appointment search for {label}", params, patient_id

    def _patient_ids(self, mrn: str, label: str) -> list[str]:
        """Ids of the Patients that carry this MRN. A Patient the server returns without it (a
        server that ignored the identifier parameter) is dropped: minimum necessary."""
        system = self.settings.mrn_system
        ids: list[str] = []
        try:
            for page in self.client.search("Patient", [("identifier", f"{system}|{_escape(mrn)}")]):
                self._note_page(page, "Patient search")
                if page.problems:
                    self.tally.warn("Patient search: malformed entries skipped")
                for found in page.matches:
                    if not isinstance(found.get("id"), str):
                        continue
                    if any(
                        isinstance(i, dict) and i.get("system") == system and i.get("value") == mrn
                        for i in as_list(found.get("identifier"))
                    ):
                        ids.append(found["id"])
                    else:
                        self.tally.warn(
                            "Patient search returned a patient without the MRN asked for: ignored"
                        )
        except (FhirError, MalformedJson) as exc:
            self.tally.errors.append(f"Patient search for {label}: {exc}")
            return []
        if not ids:
            self.tally.warn("an enrolled patient was not found by MRN")
        return ids

    # -- one search, page by page ----------------------------------------------------------

    def _search(self, params: list[tuple[str, str]], patient_id: str | None) -> None:
        for page in self.client.search("Appointment", params):
            self._note_page(page, "Appointment search")
            if patient_id is not None:
                page.matches = self._of_patient(page.matches, patient_id)
            for problem in page.problems:
                if problem in self.tally.problems:
                    continue  # the same entry from another of this poll's searches
                self.tally.problems.append(problem)
                self.tally.rejected += 1
                new = self._store_problem(problem, canonical(problem.entry))
                log.log(logging.WARNING if new else logging.DEBUG, "skipped %s", problem)
            fresh = [r for r in page.matches if r.get("id") is None or r.get("id") not in self.seen]
            self.seen.update(str(r["id"]) for r in fresh if r.get("id") is not None)
            page.matches = fresh  # an Appointment found by two of this poll's searches counts once
            self._resolve(page.matches)
            self._store_page(page)

    def _of_patient(self, appointments: list[Resource], patient_id: str) -> list[Resource]:
        """Only the searched patient's Appointments: a server that ignored ``patient`` must not
        make us store everyone's schedule."""
        wanted = f"Patient/{patient_id}"
        kept = []
        for appointment in appointments:
            actors = [p.get("actor") for p in as_list(appointment.get("participant")) if isinstance(p, dict)]
            refs = [a.get("reference") for a in actors if isinstance(a, dict)]
            if any(isinstance(r, str) and relative_key(r) == wanted for r in refs):
                kept.append(appointment)
        if len(kept) < len(appointments):
            self.tally.warn("Appointment search returned other patients' appointments: ignored")
        return kept

    def _note_page(self, page: Page, what: str) -> None:
        self.cache.update(page.included)
        for issue in page.issues:
            self.tally.warn(f"{what}: the server reported an issue ({issue.severity} {issue.code})")
        if page.version_hint:
            self.tally.warn(f"{what}: the bundle links point at a {page.version_hint} endpoint")

    def _resolve(self, appointments: list[Resource]) -> None:
        """Read each referenced resource not yet in the poll's cache, once per poll."""
        for appointment in appointments:
            references = [
                p.get("actor") for p in as_list(appointment.get("participant")) if isinstance(p, dict)
            ]
            references += as_list(appointment.get("basedOn"))
            for reference in references:
                ref = reference.get("reference") if isinstance(reference, dict) else None
                key = relative_key(ref) if isinstance(ref, str) else None
                if key is None or key in self.cache or key.split("/", 1)[0] not in RESOLVABLE:
                    continue
                try:
                    self.cache[key] = self.client.read(key)
                except (FhirError, MalformedJson) as exc:
                    self.cache[key] = None
                    self.tally.warn(f"a referenced {key.split('/', 1)[0]} could not be read ({exc})")

    def _store_page(self, page: Page) -> None:
        included = {k: v for k, v in self.cache.items() if v is not None}
        mapped = [(r, appointment_to_event(r, included, self.settings)) for r in page.matches]
        now = self.clock()
        try:
            with self.engine.begin() as conn:
                outcomes = [store_resource(conn, self.settings.feed, r, m, now) for r, m in mapped]
        except OperationalError:
            raise
        except SQLAlchemyError as exc:
            log.warning(
                "page could not be stored at once (%s); storing its resources one by one", type(exc).__name__
            )
            outcomes = [self._store_alone(r, m, now) for r, m in mapped]
        for (resource, result), outcome in zip(mapped, outcomes, strict=True):
            self._count(resource, result, outcome)

    def _store_alone(self, resource: Resource, mapped: ScheduleEvent | Rejection, now: datetime) -> Stored:
        try:
            with self.engine.begin() as conn:
                return store_resource(conn, self.settings.feed, resource, mapped, now)
        except OperationalError:
            raise
        except SQLAlchemyError as exc:
            problem = Problem(
                "Appointment", str(resource.get("id") or ""), f"could not be stored ({type(exc).__name__})"
            )
            self.tally.problems.append(problem)
            log.warning("rejected %s", problem)
            return "rejected"

    def _count(self, resource: Resource, mapped: ScheduleEvent | Rejection, outcome: Stored) -> None:
        if outcome == "unchanged" and isinstance(mapped, ScheduleEvent):
            self.tally.unchanged += 1
        elif outcome == "accepted":
            self.tally.accepted += 1
        elif isinstance(mapped, Rejection) and mapped.skipped:
            self.tally.skipped += 1
        else:
            self.tally.rejected += 1
            if isinstance(mapped, Rejection):  # (a store failure was reported where it happened)
                problem = Problem("Appointment", str(resource.get("id") or ""), mapped.reason)
                self.tally.problems.append(problem)
                # Warned once, when first stored; every later poll that meets it again says so quietly.
                log.log(logging.DEBUG if outcome == "unchanged" else logging.WARNING, "rejected %s", problem)

    def _store_problem(self, problem: Problem, raw: bytes) -> bool:
        with self.engine.begin() as conn:
            return store_problem(conn, self.settings.feed, problem, raw, self.clock())


def _escape(value: str) -> str:
    r"""A token search value with FHIR's escapes (``\\``, ``\|``, ``\,``, ``\$``; R4 search 3.1.1.4)."""
    for char in ("\\", "|", ",", "$"):
        value = value.replace(char, "\\" + char)
    return value


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
