"""A small FHIR R4 server for the poller's tests: real HTTP on 127.0.0.1, port 0.

It serves what the poller asks for and checks what a real server would check:

* ``GET /metadata`` (a CapabilityStatement with ``fhirVersion`` and Appointment
  ``searchInclude``), ``GET /.well-known/smart-configuration``;
* ``GET /{Type}/{id}`` reads;
* ``GET /Appointment?`` with ``patient``, ``date`` and ``_lastUpdated`` (prefixes ge, gt,
  le, lt), ``_count`` paging through ``next`` links, ``_include``; ``GET /Patient?identifier=
  system|value``; ``extra_entries`` are appended as-is to Appointment searches (malformed
  entries from the corpus) and ``raw_searches`` replace a search's body (invalid JSON);
* ``POST /token``: SMART Backend Services. The client assertion must verify with the
  test's public key (RS384), carry iss = sub = client id, aud = the token URL, an ``exp``
  at most five minutes ahead and a ``jti`` never seen before; otherwise 401.
* ``faults``: scripted answers taken first (429 with Retry-After, 500, a hang).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt

from monitor.feeds.fhir.bundle import relative_key

INCLUDES = {
    "Appointment:patient": ("participant", "Patient"),
    "Appointment:location": ("participant", "Location"),
    "Appointment:actor": ("participant", None),
    "Appointment:based-on": ("basedOn", None),
    "ResearchSubject:individual": ("individual", "Patient"),
}


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up on a hanging answer


@dataclass
class Fault:
    path: str  # the first path segment it applies to ("Appointment", "token", "metadata")
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    hang_seconds: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    authorization: str


class FhirTestServer:
    def __init__(self, *, fhir_version: str = "4.0.1", includes: tuple[str, ...] = tuple(INCLUDES)) -> None:
        self.fhir_version = fhir_version
        self.includes = includes
        self.resources: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.extra_entries: list[Any] = []
        self.raw_searches: dict[str, bytes] = {}  # "Type" or "Type?param=value" -> body
        self.faults: list[Fault] = []
        self.ignored_params: set[str] = set()  # a careless server: these search parameters do nothing
        self.seen: list[Seen] = []
        # SMART: set public_key and client_id to require tokens on every FHIR call.
        self.public_key: Any = None
        self.client_id = ""
        self.token_lifetime = 300
        self.valid_tokens: set[str] = set()
        self.static_token = ""
        self.jtis: set[str] = set()
        self.token_refusals: list[str] = []
        self._httpd = _QuietServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/fhir/r4"

    @property
    def token_url(self) -> str:
        return self.base_url.rsplit("/fhir/", 1)[0] + "/token"

    def add(self, *resources: dict[str, Any]) -> None:
        for resource in resources:
            self.resources[resource["resourceType"]][resource["id"]] = resource

    def requests_for(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    def __enter__(self) -> FhirTestServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- answers ---------------------------------------------------------------------------

    def capability(self) -> dict[str, Any]:
        return {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "fhirVersion": self.fhir_version,
            "rest": [
                {
                    "mode": "server",
                    "resource": [{"type": "Appointment", "searchInclude": list(self.includes)}],
                }
            ],
        }

    def resolve(self, reference: str) -> dict[str, Any] | None:
        key = relative_key(reference)
        if key is None:
            return None
        kind, rid = key.split("/", 1)
        return self.resources.get(kind, {}).get(rid)

    def search(self, kind: str, query: dict[str, list[str]]) -> list[tuple[dict[str, Any], str]]:
        query = {k: v for k, v in query.items() if k not in self.ignored_params}
        found = []
        for resource in self.resources.get(kind, {}).values():
            if "identifier" in query:
                system, bar, value = query["identifier"][0].partition("|")
                system, value = (system, value) if bar else ("", system)
                if not any(
                    (not bar or i.get("system") == system) and i.get("value") == value
                    for i in resource.get("identifier", [])
                ):
                    continue
            if (
                "study" in query
                and relative_key(resource.get("study", {}).get("reference", "")) != query["study"][0]
            ):
                continue
            if kind == "Appointment" and not _appointment_matches(resource, query):
                continue
            found.append((resource, "match"))
        return found

    def includes_for(self, matches: list[dict[str, Any]], wanted: list[str]) -> list[dict[str, Any]]:
        extra: dict[str, dict[str, Any]] = {}
        for appointment in matches:
            for name in wanted:
                element, kind = INCLUDES[name]
                if element == "participant":
                    refs = [p.get("actor", {}) for p in appointment.get("participant", [])]
                elif element == "individual":
                    refs = [appointment.get("individual", {})]
                else:
                    refs = appointment.get(element, [])
                for ref in refs:
                    target = self.resolve(ref.get("reference", ""))
                    if target is not None and (kind is None or target["resourceType"] == kind):
                        extra[f"{target['resourceType']}/{target['id']}"] = target
        return list(extra.values())

    def token(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        def refuse(reason: str) -> tuple[int, dict[str, Any]]:
            self.token_refusals.append(reason)
            return 401, {"error": "invalid_client", "error_description": reason}

        if form.get("grant_type") != ["client_credentials"]:
            return refuse("grant_type")
        if form.get("client_assertion_type") != ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"]:
            return refuse("client_assertion_type")
        try:
            claims = jwt.decode(
                form.get("client_assertion", [""])[0],
                self.public_key,
                algorithms=["RS384"],
                audience=self.token_url,
                options={"require": ["exp", "iss", "sub", "jti", "aud"]},
            )
        except jwt.PyJWTError as exc:
            return refuse(f"assertion: {type(exc).__name__}")
        if claims["iss"] != self.client_id or claims["sub"] != self.client_id:
            return refuse("iss/sub")
        if claims["exp"] - time.time() > 300:  # real clock: a server checks exp against its own time
            return refuse("exp more than five minutes ahead")
        if claims["jti"] in self.jtis:
            return refuse("jti replayed")
        self.jtis.add(claims["jti"])
        token = uuid.uuid4().hex
        self.valid_tokens.add(token)
        return 200, {"access_token": token, "token_type": "bearer", "expires_in": self.token_lifetime}

    def authorised(self, header: str) -> bool:
        if self.public_key is None and not self.static_token:
            return True
        token = header.removeprefix("Bearer ")
        return token in self.valid_tokens or (bool(self.static_token) and token == self.static_token)


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _compare(actual: str | None, tests: list[str]) -> bool:
    if actual is None:
        return False
    moment = _when(actual)
    for test in tests:
        prefix, value = test[:2], _when(test[2:])
        ok = {"ge": moment >= value, "gt": moment > value, "le": moment <= value, "lt": moment < value}[
            prefix
        ]
        if not ok:
            return False
    return True


def _appointment_matches(resource: dict[str, Any], query: dict[str, list[str]]) -> bool:
    if "patient" in query:
        pid = query["patient"][0]
        refs = [p.get("actor", {}).get("reference", "") for p in resource.get("participant", [])]
        if not any(relative_key(r) == f"Patient/{pid}" for r in refs):
            return False
    if "date" in query and not _compare(resource.get("start"), query["date"]):
        return False
    return not (
        "_lastUpdated" in query
        and not _compare(resource.get("meta", {}).get("lastUpdated"), query["_lastUpdated"])
    )


def _handler(server: FhirTestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(raw)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)

        def _fault(self, segment: str) -> bool:
            for fault in server.faults:
                if fault.path == segment:
                    server.faults.remove(fault)
                    if fault.hang_seconds:
                        time.sleep(fault.hang_seconds)
                    self._send(fault.status, {"resourceType": "OperationOutcome"}, fault.headers)
                    return True
            return False

        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode())
            server.seen.append(Seen("POST", parts.path, {}, ""))
            if parts.path != "/token":
                self._send(405, {})
                return
            if self._fault("token"):
                return
            status, body = server.token(form)
            self._send(status, body)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            path = parts.path.removeprefix("/fhir/r4").strip("/")
            server.seen.append(Seen("GET", path, query, self.headers.get("Authorization", "")))
            segments = path.split("/")
            if self._fault(segments[0]):
                return
            if path == ".well-known/smart-configuration":
                self._send(200, {"token_endpoint": server.token_url})
                return
            if path == "metadata":
                self._send(200, server.capability())
                return
            if not server.authorised(self.headers.get("Authorization", "")):
                self._send(401, {"resourceType": "OperationOutcome"})
                return
            if len(segments) == 2:
                found = server.resources.get(segments[0], {}).get(segments[1])
                self._send(200 if found else 404, found or {"resourceType": "OperationOutcome"})
                return
            for key in (path, *(f"{path}?{name}={values[0]}" for name, values in query.items())):
                if key in server.raw_searches:
                    self._send(200, server.raw_searches[key])
                    return
            self._send(200, self._bundle(path, query))

        def _bundle(self, kind: str, query: dict[str, list[str]]) -> dict[str, Any]:
            matches = server.search(kind, query)
            count = int(query.get("_count", ["50"])[0])
            offset = int(query.get("_offset", ["0"])[0])
            page = matches[offset : offset + count]
            entries: list[Any] = [
                {
                    "fullUrl": f"{server.base_url}/{r['resourceType']}/{r['id']}",
                    "resource": r,
                    "search": {"mode": mode},
                }
                for r, mode in page
            ]
            for extra in server.includes_for([r for r, _ in page], query.get("_include", [])):
                entries.append(
                    {
                        "fullUrl": f"{server.base_url}/{extra['resourceType']}/{extra['id']}",
                        "resource": extra,
                        "search": {"mode": "include"},
                    }
                )
            if kind == "Appointment" and offset == 0:
                entries.extend(server.extra_entries)
            links = [{"relation": "self", "url": f"{server.base_url}/{kind}?{urlencode(query, doseq=True)}"}]
            if offset + count < len(matches):
                following = {**query, "_offset": [str(offset + count)]}
                links.append(
                    {
                        "relation": "next",
                        "url": f"{server.base_url}/{kind}?{urlencode(following, doseq=True)}",
                    }
                )
            return {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": len(matches),
                "link": links,
                "entry": entries,
            }

    return Handler
