"""The FHIR HTTP client: timeouts, retries with backoff, paging, authorisation, no PHI in logs.

Why not fhirclient's ``FHIRServer``: it sets no timeout on any request, takes the SMART
assertion as one fixed setting, and parses a whole search page into strict models, so a
single malformed entry (corpus: Cerner's nested entry, NHS's unwrapped entry) would fail
the page. This client keeps a ``requests`` session of its own and hands pages to
:func:`monitor.feeds.fhir.bundle.read_page`, which reads entry by entry.

* Every request has ``fhir.request_timeout_seconds`` as its connect and read timeout.
* 429 and 5xx answers, timeouts and connection errors are retried up to
  ``fhir.max_retries`` times with exponential backoff; a ``Retry-After`` header (seconds or
  an HTTP date, RFC 9110 section 10.2.3) is respected, up to :data:`MAX_RETRY_AFTER_SECONDS`.
* A 401 drops a cached SMART token and the request is tried once more with a new one.
* Paging follows ``Bundle.link[relation=next]``, only to the configured server's origin
  (a bearer token is never sent elsewhere).
* Logs name the method, the resource type, the status and sizes; never a query string
  (searches carry MRNs and patient ids) nor an id from a path. urllib3's own debug line,
  which prints the whole URL, is redacted by :class:`RedactUrls`.

Errors: :class:`FhirError` (after retries, or a 4xx), :class:`MalformedJson` (the body is
not JSON; it keeps the raw bytes for the store), :class:`ConfigError` from the auth set-up.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from monitor.config import FhirSettings
from monitor.feeds.fhir.auth import Authorisation, authorisation_for
from monitor.feeds.fhir.bundle import MalformedJson, Page, parse_json, read_page

log = logging.getLogger("monitor.feeds.fhir")

FHIR_JSON = "application/fhir+json"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
MAX_RETRY_AFTER_SECONDS = 120.0
Params = Sequence[tuple[str, str]]


class FhirError(Exception):
    """A request failed for good. The message names the method, resource type and status."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RedactUrls(logging.Filter):
    """Replaces URLs and paths in urllib3's connection-pool log records with ``<url>``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                "<url>" if isinstance(a, str) and (a.startswith("/") or "://" in a) else a
                for a in record.args
            )
        return True


_REDACT = RedactUrls()


def redacted(url: str, base_url: str = "") -> str:
    """What a log may say about ``url``: the resource type, ``/…`` for an id, ``?…`` for a query."""
    parts = urlsplit(url)
    path = parts.path
    base_path = urlsplit(base_url).path.rstrip("/") if base_url else ""
    if base_path and path.startswith(base_path):
        path = path[len(base_path) :]
    segments = [s for s in path.split("/") if s]
    head = segments[0] if segments else ""
    if head.startswith(".well-known"):
        head = "/".join(segments)
    return (
        head
        + ("/…" if len(segments) > 1 and not head.startswith(".well-known") else "")
        + ("?…" if parts.query else "")
    )


class FhirClient:
    """GET-only FHIR client for one server. Not thread-safe: one poll at a time."""

    def __init__(
        self,
        settings: FhirSettings,
        *,
        session: requests.Session | None = None,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not settings.base_url:
            raise FhirError("fhir.base_url is not set")
        self.settings = settings
        self.base_url = settings.base_url if settings.base_url.endswith("/") else settings.base_url + "/"
        self.session = session or requests.Session()
        self.timeout = settings.request_timeout_seconds
        self.sleep = sleep
        self.clock = clock
        self.auth: Authorisation = authorisation_for(
            settings, discover_token_url=self._discover_token_url, environ=environ, clock=clock
        )
        logging.getLogger("urllib3.connectionpool").addFilter(_REDACT)

    def close(self) -> None:
        self.session.close()

    # -- the calls the poller makes ---------------------------------------------------

    def capabilities(self) -> dict[str, Any] | None:
        """The server's CapabilityStatement, or None when it cannot be had (logged)."""
        try:
            found = self.get("metadata")
        except (FhirError, MalformedJson) as exc:
            log.warning("CapabilityStatement unavailable: %s", exc)
            return None
        return found if isinstance(found, dict) else None

    def search(self, resource_type: str, params: Params) -> Iterator[Page]:
        """Search, following ``next`` links to the end; yields each page, sorted.

        Raises :class:`FhirError` or :class:`MalformedJson` for the page that failed; the
        pages yielded before it stand.
        """
        url: str | None = urljoin(self.base_url, resource_type)
        query: Params | None = params
        number = 0
        while url is not None:
            number += 1
            page = read_page(self.get(url, query), resource_type)
            log.info(
                "%s search page %d: %d matched, %d included, %d problems",
                resource_type,
                number,
                len(page.matches),
                len(page.included),
                len(page.problems),
            )
            yield page
            url, query = (self._same_origin(page.next_url) if page.next_url else None), None

    def read(self, reference: str) -> dict[str, Any] | None:
        """``GET [base]/Type/id``; None when the server says 404 or 410."""
        try:
            found = self.get(urljoin(self.base_url, reference))
        except FhirError as exc:
            if exc.status in (404, 410):
                return None
            raise
        return found if isinstance(found, dict) else None

    # -- one GET, with retries --------------------------------------------------------

    def get(self, path_or_url: str, params: Params | None = None) -> Any:
        """GET and decode JSON. Raises :class:`FhirError`, :class:`MalformedJson`."""
        url = urljoin(self.base_url, path_or_url)
        response = self._send("GET", url, params=params, headers={"Accept": FHIR_JSON})
        try:
            return parse_json(response.content)
        except MalformedJson as exc:
            log.warning("GET %s -> %d: %s", redacted(url, self.base_url), response.status_code, exc)
            raise

    def _post_form(self, url: str, form: Mapping[str, str]) -> Mapping[str, Any]:
        response = self._send(
            "POST", url, data=dict(form), headers={"Accept": "application/json"}, auth=False
        )
        try:
            answer = parse_json(response.content)
        except MalformedJson as exc:
            raise FhirError(f"token endpoint answered {exc}", response.status_code) from None
        if not isinstance(answer, dict):
            raise FhirError(
                "token endpoint answered something other than a JSON object", response.status_code
            )
        return answer

    def _discover_token_url(self) -> str:
        url = urljoin(self.base_url, ".well-known/smart-configuration")
        response = self._send("GET", url, headers={"Accept": "application/json"}, auth=False)
        found = parse_json(response.content)
        token_url = found.get("token_endpoint") if isinstance(found, dict) else None
        if not isinstance(token_url, str) or not token_url:
            raise FhirError("no token_endpoint in .well-known/smart-configuration; set fhir.token_url")
        return token_url

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: Params | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str],
        auth: bool = True,
    ) -> requests.Response:
        shown = redacted(url, self.base_url) if url.startswith(self.base_url) else "token endpoint"
        shown += "?…" if params and "?" not in shown else ""
        reauthorised = False
        attempt = 0
        while True:
            all_headers = dict(headers)
            if auth:
                all_headers.update(self.auth.headers(self._post_form))
            started = self.clock()
            try:
                response = self.session.request(
                    method, url, params=params, data=data, headers=all_headers, timeout=self.timeout
                )
            except (requests.Timeout, requests.ConnectionError) as exc:
                problem = "timed out" if isinstance(exc, requests.Timeout) else "connection failed"
                if attempt >= self.settings.max_retries:
                    raise FhirError(f"{method} {shown}: {problem} after {attempt + 1} attempts") from None
                delay = self._backoff(attempt)
                log.warning("%s %s: %s; retry %d in %.1fs", method, shown, problem, attempt + 1, delay)
                self.sleep(delay)
                attempt += 1
                continue
            status = response.status_code
            log.debug(
                "%s %s -> %d (%d bytes, %.2fs)",
                method,
                shown,
                status,
                len(response.content),
                self.clock() - started,
            )
            if status == 401 and auth and not reauthorised and self.auth.invalidate():
                reauthorised = True
                log.info("%s %s -> 401: fetching a new access token", method, shown)
                continue
            if status in RETRY_STATUSES and attempt < self.settings.max_retries:
                delay = self._retry_after(response) or self._backoff(attempt)
                log.warning("%s %s -> %d; retry %d in %.1fs", method, shown, status, attempt + 1, delay)
                self.sleep(delay)
                attempt += 1
                continue
            if status >= 400:
                raise FhirError(f"{method} {shown} -> HTTP {status}", status)
            return response

    def _backoff(self, attempt: int) -> float:
        delay: float = min(BACKOFF_BASE_SECONDS * 2**attempt, BACKOFF_MAX_SECONDS)
        return delay * random.uniform(0.8, 1.2)  # jitter: replicas do not retry in step

    def _retry_after(self, response: requests.Response) -> float | None:
        value = response.headers.get("Retry-After", "").strip()
        if not value:
            return None
        seconds: float | None
        if value.isdigit():
            seconds = float(value)
        else:
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = (when - datetime.fromtimestamp(self.clock(), UTC)).total_seconds()
        return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)

    def _same_origin(self, url: str) -> str:
        target, base = urlsplit(urljoin(self.base_url, url)), urlsplit(self.base_url)
        if (target.scheme, target.netloc) != (base.scheme, base.netloc):
            raise FhirError("a next link points outside the FHIR server; paging stopped")
        return target.geturl()
