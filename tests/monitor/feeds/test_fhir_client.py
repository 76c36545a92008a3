"""The FHIR client against a real local server: auth, retries, timeouts, paging, clean logs."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from monitor.config import ConfigError, FhirSettings
from monitor.feeds.fhir.auth import SmartBackend
from monitor.feeds.fhir.client import FhirClient, FhirError
from tests.monitor.feeds.fhir_fixtures import MRN, MRN_SYSTEM, PATIENT_ID, appointment, patient
from tests.monitor.feeds.fhir_server import Fault, FhirTestServer


@pytest.fixture
def server() -> Iterator[FhirTestServer]:
    with FhirTestServer() as running:
        running.add(patient())
        yield running


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def key_file(tmp_path: Path, private_key: rsa.RSAPrivateKey) -> Path:
    path = tmp_path / "hiro-fhir.pem"
    path.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def _smart(
    server: FhirTestServer, private_key: rsa.RSAPrivateKey, key_file: Path, **settings: Any
) -> FhirSettings:
    server.public_key = private_key.public_key()
    server.client_id = "hiro-monitor"
    values: dict[str, Any] = {
        "base_url": server.base_url,
        "auth": "smart_backend",
        "client_id": "hiro-monitor",
        "token_url": server.token_url,
        "private_key_file": str(key_file),
        "key_id": "hiro-2026",
        "request_timeout_seconds": 2.0,
    }
    return FhirSettings(**{**values, **settings})


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_smart_backend_token_comes_from_a_verified_assertion_and_is_cached(
    server: FhirTestServer, private_key: rsa.RSAPrivateKey, key_file: Path
) -> None:
    client = FhirClient(_smart(server, private_key, key_file))
    assert client.read(f"Patient/{PATIENT_ID}") is not None
    assert client.read(f"Patient/{PATIENT_ID}") is not None
    assert server.token_refusals == []
    assert len(server.requests_for("/token")) == 1
    reads = server.requests_for(f"Patient/{PATIENT_ID}")
    assert len(reads) == 2 and all(r.authorization.startswith("Bearer ") for r in reads)


def test_assertion_is_rs384_with_a_key_id_expires_within_five_minutes_and_is_never_reused(
    private_key: rsa.RSAPrivateKey,
) -> None:
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    auth = SmartBackend(
        client_id="c", token_url="https://t/token", private_key=pem, key_id="k1", algorithm="RS384", scope="s"
    )
    first, second = auth.assertion(), auth.assertion()
    header = jwt.get_unverified_header(first)
    assert (header["alg"], header["kid"]) == ("RS384", "k1")
    claims = [
        jwt.decode(a, private_key.public_key(), algorithms=["RS384"], audience="https://t/token")
        for a in (first, second)
    ]
    assert all(c["exp"] - c["iat"] <= 300 and c["iss"] == c["sub"] == "c" for c in claims)
    assert claims[0]["jti"] != claims[1]["jti"]


def test_expired_token_is_replaced_using_a_new_assertion(
    server: FhirTestServer, private_key: rsa.RSAPrivateKey, key_file: Path
) -> None:
    offset = [-200.0]  # the fake clock stays behind real time, so exp stays within five minutes
    server.token_lifetime = 120  # cached for 120 - 60 s

    def clock() -> float:
        return time.time() + offset[0]  # real clock: the server checks exp against its own time

    client = FhirClient(_smart(server, private_key, key_file), clock=clock)
    client.read(f"Patient/{PATIENT_ID}")
    offset[0] += 30
    client.read(f"Patient/{PATIENT_ID}")
    assert len(server.requests_for("/token")) == 1
    offset[0] += 31
    client.read(f"Patient/{PATIENT_ID}")
    assert len(server.requests_for("/token")) == 2
    assert len(server.jtis) == 2 and server.token_refusals == []


def test_a_401_drops_the_token_and_the_request_is_tried_once_more(
    server: FhirTestServer, private_key: rsa.RSAPrivateKey, key_file: Path
) -> None:
    client = FhirClient(_smart(server, private_key, key_file))
    client.read(f"Patient/{PATIENT_ID}")
    server.valid_tokens.clear()  # the server forgot (or revoked) it
    assert client.read(f"Patient/{PATIENT_ID}") is not None
    assert len(server.requests_for("/token")) == 2


def test_token_endpoint_is_discovered_from_the_smart_configuration(
    server: FhirTestServer, private_key: rsa.RSAPrivateKey, key_file: Path
) -> None:
    client = FhirClient(_smart(server, private_key, key_file, token_url=""))
    assert client.read(f"Patient/{PATIENT_ID}") is not None
    assert server.requests_for(".well-known/smart-configuration")


def test_the_test_server_refuses_a_long_lived_or_replayed_assertion(
    server: FhirTestServer, private_key: rsa.RSAPrivateKey
) -> None:
    server.public_key, server.client_id = private_key.public_key(), "c"
    now = int(time.time())  # real clock: the server checks exp against its own time
    claims = {"iss": "c", "sub": "c", "aud": server.token_url, "jti": "j1", "iat": now, "exp": now + 600}
    form = {
        "grant_type": ["client_credentials"],
        "client_assertion_type": ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"],
    }
    assert server.token({**form, "client_assertion": [jwt.encode(claims, private_key, "RS384")]})[0] == 401
    claims["exp"] = now + 200
    assert server.token({**form, "client_assertion": [jwt.encode(claims, private_key, "RS384")]})[0] == 200
    assert server.token({**form, "client_assertion": [jwt.encode(claims, private_key, "RS384")]})[0] == 401
    assert server.token_refusals == ["exp more than five minutes ahead", "jti replayed"]


def test_static_bearer_token_comes_from_the_environment(server: FhirTestServer, tmp_path: Path) -> None:
    server.static_token = "test-token-1"
    settings = FhirSettings(base_url=server.base_url, auth="bearer")
    token_file = tmp_path / "token"
    token_file.write_text("test-token-1\n")
    client = FhirClient(settings, environ={"HIRO_FHIR_TOKEN_FILE": str(token_file)})
    assert client.read(f"Patient/{PATIENT_ID}") is not None
    with pytest.raises(ConfigError, match="HIRO_FHIR_TOKEN"):
        FhirClient(settings, environ={})


def test_429_is_retried_after_the_delay_retry_after_asks_for(server: FhirTestServer) -> None:
    server.faults.append(Fault("Patient", 429, {"Retry-After": "2"}))
    sleeps = Sleeps()
    client = FhirClient(FhirSettings(base_url=server.base_url), sleep=sleeps)
    assert client.read(f"Patient/{PATIENT_ID}") is not None
    assert sleeps == [2.0]


def test_500_is_retried_with_backoff_and_gives_up_after_the_last_retry(server: FhirTestServer) -> None:
    sleeps = Sleeps()
    client = FhirClient(FhirSettings(base_url=server.base_url, max_retries=2), sleep=sleeps)
    server.faults.append(Fault("Patient", 500))
    assert client.read(f"Patient/{PATIENT_ID}") is not None
    assert len(sleeps) == 1 and 0.4 <= sleeps[0] <= 0.6
    server.faults.extend(Fault("Patient", 503) for _ in range(3))
    with pytest.raises(FhirError) as caught:
        client.read(f"Patient/{PATIENT_ID}")
    assert caught.value.status == 503
    assert len(sleeps) == 3 and sleeps[2] > sleeps[1]


def test_a_hanging_request_times_out_and_is_retried(server: FhirTestServer) -> None:
    server.faults.append(Fault("Patient", 200, hang_seconds=3.0))
    sleeps = Sleeps()
    client = FhirClient(FhirSettings(base_url=server.base_url, request_timeout_seconds=0.3), sleep=sleeps)
    began = time.monotonic()
    assert client.read(f"Patient/{PATIENT_ID}") is not None
    assert time.monotonic() - began < 2.5
    assert len(sleeps) == 1


def test_a_server_that_always_hangs_fails_within_the_timeouts(server: FhirTestServer) -> None:
    server.faults.extend(Fault("Patient", 200, hang_seconds=2.0) for _ in range(2))
    client = FhirClient(
        FhirSettings(base_url=server.base_url, request_timeout_seconds=0.2, max_retries=1), sleep=Sleeps()
    )
    with pytest.raises(FhirError, match="timed out after 2 attempts"):
        client.read(f"Patient/{PATIENT_ID}")


def test_not_found_is_none_and_not_retried(server: FhirTestServer) -> None:
    client = FhirClient(FhirSettings(base_url=server.base_url), sleep=Sleeps())
    assert client.read("Patient/nobody") is None
    assert len(server.requests_for("Patient/nobody")) == 1


def test_paging_follows_next_links_to_the_end(server: FhirTestServer) -> None:
    server.add(*(appointment(f"a.{n}") for n in range(5)))
    client = FhirClient(FhirSettings(base_url=server.base_url))
    pages = list(client.search("Appointment", [("_count", "2")]))
    assert [len(p.matches) for p in pages] == [2, 2, 1]
    assert sorted(r["id"] for p in pages for r in p.matches) == [f"a.{n}" for n in range(5)]


def test_a_next_link_to_another_server_stops_paging(server: FhirTestServer) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "next", "url": "http://127.0.0.2:9/x"}],
    }
    server.raw_searches["Appointment"] = json.dumps(bundle).encode()
    client = FhirClient(FhirSettings(base_url=server.base_url))
    pages = client.search("Appointment", [])
    next(pages)
    with pytest.raises(FhirError, match="outside the FHIR server"):
        next(pages)


def test_logs_carry_no_mrn_patient_id_or_query(
    server: FhirTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.faults.append(Fault("Patient", 500))
    client = FhirClient(FhirSettings(base_url=server.base_url), sleep=Sleeps())
    found = [
        r for page in client.search("Patient", [("identifier", f"{MRN_SYSTEM}|{MRN}")]) for r in page.matches
    ]
    assert [r["id"] for r in found] == [PATIENT_ID]
    client.read(f"Patient/{PATIENT_ID}")
    assert "Patient?…" in caplog.text and "Patient/…" in caplog.text
    for secret in (MRN, PATIENT_ID, "identifier=", MRN_SYSTEM):
        assert secret not in caplog.text
