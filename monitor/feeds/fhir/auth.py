"""Authorisation for the FHIR client: none, a static bearer token, or SMART Backend Services.

SMART Backend Services (https://hl7.org/fhir/smart-app-launch/backend-services.html): the
client posts a ``client_credentials`` grant with a JWT client assertion signed by its
private key. The assertion is minted anew for every token request (a fresh ``jti``, ``exp``
at most five minutes ahead, as Epic requires) - unlike fhirclient, which takes one fixed
``jwt_token`` and would replay it. The access token is cached until shortly before it
expires; a 401 from the FHIR server drops it (:meth:`SmartBackend.invalidate`).

Secrets never come from the config file: the bearer token from ``HIRO_FHIR_TOKEN`` (or
``HIRO_FHIR_TOKEN_FILE``), the private key from ``fhir.private_key_file``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import jwt

from monitor.config import ConfigError, FhirSettings, secret

# Assertion lifetime: SMART says exp "no more than five minutes in the future"; a minute
# less leaves room for our clock running ahead of the authorisation server's.
ASSERTION_LIFETIME_SECONDS = 240
# Refresh the access token this long before the server says it expires.
EXPIRY_MARGIN_SECONDS = 60
# When the token response has no expires_in (it should), assume this.
DEFAULT_TOKEN_LIFETIME_SECONDS = 300
_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

PostForm = Callable[[str, Mapping[str, str]], Mapping[str, Any]]


class Authorisation(Protocol):
    """Adds credentials to a request; forgets them when the server refuses them."""

    def headers(self, post_form: PostForm) -> dict[str, str]: ...

    def invalidate(self) -> bool:
        """Drop cached credentials; True when asking again could help (a new token)."""
        ...


class NoAuthorisation:
    def headers(self, post_form: PostForm) -> dict[str, str]:
        return {}

    def invalidate(self) -> bool:
        return False


class StaticBearer:
    """A fixed bearer token (test servers, sandboxes)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def headers(self, post_form: PostForm) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def invalidate(self) -> bool:
        return False


class SmartBackend:
    """SMART Backend Services client credentials with a signed JWT assertion.

    ``token_url`` may be a callable that discovers it (``.well-known/smart-configuration``)
    on first use. Raises :class:`ConfigError` when the key cannot be read; errors from the
    token endpoint propagate from ``post_form``.
    """

    def __init__(
        self,
        *,
        client_id: str,
        token_url: str | Callable[[], str],
        private_key: str,
        key_id: str,
        algorithm: str,
        scope: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self._token_url = token_url
        self._key = private_key
        self.key_id = key_id
        self.algorithm = algorithm
        self.scope = scope
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0

    @property
    def token_url(self) -> str:
        if callable(self._token_url):
            self._token_url = self._token_url()
        return self._token_url

    def assertion(self) -> str:
        """A new signed client assertion: iss = sub = client id, aud = token URL, unique jti."""
        now = int(self._clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_url,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECONDS,
        }
        headers = {"kid": self.key_id, "typ": "JWT"} if self.key_id else {"typ": "JWT"}
        return jwt.encode(claims, self._key, algorithm=self.algorithm, headers=headers)

    def headers(self, post_form: PostForm) -> dict[str, str]:
        if self._token is None or self._clock() >= self._expires_at:
            self._fetch(post_form)
        return {"Authorization": f"Bearer {self._token}"}

    def invalidate(self) -> bool:
        self._token, self._expires_at = None, 0.0
        return True

    def _fetch(self, post_form: PostForm) -> None:
        answer = post_form(
            self.token_url,
            {
                "grant_type": "client_credentials",
                "scope": self.scope,
                "client_assertion_type": _ASSERTION_TYPE,
                "client_assertion": self.assertion(),
            },
        )
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise PermissionError("the token endpoint answered without an access_token")
        lifetime = answer.get("expires_in", DEFAULT_TOKEN_LIFETIME_SECONDS)
        try:
            seconds = float(lifetime)
        except (TypeError, ValueError):
            seconds = DEFAULT_TOKEN_LIFETIME_SECONDS
        self._token = token
        self._expires_at = self._clock() + max(seconds - EXPIRY_MARGIN_SECONDS, 0.0)


def authorisation_for(
    settings: FhirSettings,
    *,
    discover_token_url: Callable[[], str],
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
) -> Authorisation:
    """The :class:`Authorisation` that ``fhir.auth`` names. Raises :class:`ConfigError`
    naming the missing key, secret or unreadable key file."""
    if settings.auth == "none":
        return NoAuthorisation()
    if settings.auth == "bearer":
        token = secret("HIRO_FHIR_TOKEN", environ)
        if not token:
            raise ConfigError("fhir.auth = 'bearer' needs HIRO_FHIR_TOKEN (or HIRO_FHIR_TOKEN_FILE)")
        return StaticBearer(token)
    if not settings.client_id or not settings.private_key_file:
        raise ConfigError("fhir.auth = 'smart_backend' needs fhir.client_id and fhir.private_key_file")
    try:
        key = Path(settings.private_key_file).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"fhir.private_key_file: cannot read {settings.private_key_file}: {exc.strerror}"
        ) from exc
    return SmartBackend(
        client_id=settings.client_id,
        token_url=settings.token_url or discover_token_url,
        private_key=key,
        key_id=settings.key_id,
        algorithm=settings.algorithm,
        scope=settings.scope,
        clock=clock,
    )
