"""Who the peer is, over real sockets: uvicorn as the project starts it, httpx as the client.

The requests come from 127.0.0.1 (or ::1): whether that address is a trusted proxy is what
each case sets. A header is only ever believed because of the TCP peer, never because of
another header.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

from monitor.config import ConfigError, Settings
from monitor.web import create_app
from monitor.web.app import uvicorn_config
from monitor.web.peer import parse_networks, resolve_peer
from tests.monitor.trial_setup import NOW
from tests.monitor.web.conftest import Site, csrf_in
from tests.monitor.web.site import PASSWORD, settings_for

SSO = "X-Remote-User"


@contextmanager
def serving(site: Site, host: str = "127.0.0.1", **web: object) -> Iterator[httpx.Client]:
    """The dashboard with ``[web]`` settings ``web`` on ``host``, a free port, served the way
    ``hiro-monitor run`` and ``hiro-monitor web`` serve it; a client of it."""
    settings: Settings = settings_for(site.url, host=host, port=0, **web)
    app = create_app(settings, site.engine, clock=site.clock)
    server = uvicorn.Server(uvicorn_config(app, settings.web))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    try:
        with httpx.Client(base_url=f"http://{shown}:{port}", follow_redirects=False, timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(autouse=True)
def _at_now(site: Site) -> None:
    site.clock.now = NOW


def _audited_clients(site: Site, username: str, action: str) -> list[str]:
    return [row.client for row in site.audit_rows(username=username, action=action)]  # type: ignore[attr-defined]


def test_a_forwarded_for_naming_a_trusted_proxy_signs_nobody_in(site: Site) -> None:
    """The reported hole: every route answered 200 as admin."""
    with serving(site, sso_header=SSO, trusted_proxies=["10.99.0.1"]) as client:
        forged = {SSO: "admin", "X-Forwarded-For": "10.99.0.1"}
        assert client.get("/api/exams/1", headers=forged).status_code == 401
        for path in ("/audit", "/feeds/messages/1", "/findings.csv", "/upcoming"):
            answer = client.get(path, headers=forged)
            assert answer.status_code == 303 and answer.headers["location"] == "/login", path
        assert not _audited_clients(site, "admin", "sign_in.sso")


def _wrong_password(client: httpx.Client, username: str, forwarded_for: str | None = None) -> int:
    client.cookies.clear()
    token = csrf_in(client.get("/login").text)
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    data = {"username": username, "password": "not the password", "csrf_token": token}
    return client.post("/login", data=data, headers=headers).status_code


def test_a_new_forwarded_for_per_attempt_does_not_escape_the_throttle(site: Site) -> None:
    with serving(site, trusted_proxies=["10.99.0.1"]) as client:
        codes = [_wrong_password(client, "neuro", f"203.0.113.{n}") for n in range(8)]
    assert codes == [401] * 5 + [429] * 3
    # The audit trail names the real peer, never the addresses the caller wrote.
    assert set(_audited_clients(site, "neuro", "sign_in.failed")) == {"127.0.0.1"}
    assert set(_audited_clients(site, "neuro", "sign_in.throttled")) == {"127.0.0.1"}


def test_sso_behind_the_documented_nginx_names_the_user_and_the_real_client(site: Site) -> None:
    """deploy/nginx.conf: trusted_proxies = ["127.0.0.1"], nginx appends $remote_addr."""
    with serving(site, sso_header=SSO, trusted_proxies=["127.0.0.1"]) as client:
        # What the browser wrote comes first; nginx appended the address it saw.
        headers = {SSO: "viewer", "X-Forwarded-For": "192.0.2.77, 198.51.100.23"}
        answer = client.get("/trials/LYM-3302", headers=headers)
        assert answer.status_code == 200 and "viewer (viewer)" in answer.text
    assert _audited_clients(site, "viewer", "sign_in.sso")[-1] == "198.51.100.23"
    [*_, view] = site.audit_rows(username="viewer", action="view", object_id="LYM-3302")
    assert view.client == "198.51.100.23"  # type: ignore[attr-defined]


def test_a_chain_of_two_trusted_proxies_names_the_client_in_front_of_the_first(site: Site) -> None:
    """A load balancer (10.20.0.7) in front of nginx (127.0.0.1): each appends what it saw."""
    trusted = ["127.0.0.1", "10.20.0.0/24"]
    with serving(site, sso_header=SSO, trusted_proxies=trusted) as client:
        headers = {SSO: "coord", "X-Forwarded-For": "203.0.113.66, 198.51.100.9, 10.20.0.7"}
        assert client.get("/trials/ONC-2101", headers=headers).status_code == 200
        assert _audited_clients(site, "coord", "sign_in.sso")[-1] == "198.51.100.9"
        # Throttling counts the client behind the chain: one address, whatever it forges.
        codes = [_wrong_password(client, "tech", f"192.0.2.{n}, 198.51.100.10, 10.20.0.7") for n in range(6)]
    assert codes == [401] * 5 + [429]
    assert set(_audited_clients(site, "tech", "sign_in.failed")) == {"198.51.100.10"}


def test_ipv6_peers_are_trusted_only_when_listed(site: Site) -> None:
    with serving(site, host="::1", sso_header=SSO, trusted_proxies=["::1"]) as client:
        headers = {SSO: "neuro", "X-Forwarded-For": "2001:db8::5"}
        assert client.get("/trials/NEU-4405", headers=headers).status_code == 200
    assert _audited_clients(site, "neuro", "sign_in.sso")[-1] == "2001:db8::5"
    with serving(site, host="::1", sso_header=SSO, trusted_proxies=["127.0.0.1", "2001:db8::/32"]) as client:
        forged = {SSO: "admin", "X-Forwarded-For": "2001:db8::1"}
        assert client.get("/api/findings", headers=forged).status_code == 401
        assert _wrong_password(client, "admin", "2001:db8::1") == 401
    assert _audited_clients(site, "admin", "sign_in.failed")[-1] == "::1"


def test_a_signed_in_user_is_audited_at_the_real_peer_whatever_the_headers_say(site: Site) -> None:
    with serving(site, trusted_proxies=["10.99.0.1"]) as client:
        token = csrf_in(client.get("/login").text)
        data = {"username": "viewer", "password": PASSWORD, "csrf_token": token}
        assert client.post("/login", data=data, headers={"X-Forwarded-For": "10.99.0.1"}).status_code == 303
        assert client.get("/trials/NEU-4405", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 200
    assert _audited_clients(site, "viewer", "sign_in")[-1] == "127.0.0.1"
    [*_, view] = site.audit_rows(username="viewer", action="view", object_id="NEU-4405")
    assert view.client == "127.0.0.1"  # type: ignore[attr-defined]


TRUSTED = parse_networks(["127.0.0.1", "10.20.0.0/24", "::1"])


@pytest.mark.parametrize(
    ("connection", "forwarded", "client", "proxied"),
    [
        ("192.0.2.1", ["10.20.0.7"], "192.0.2.1", False),  # untrusted peer: headers ignored
        ("127.0.0.1", [], "127.0.0.1", True),  # the proxy itself, no header
        ("127.0.0.1", ["198.51.100.1"], "198.51.100.1", True),
        ("127.0.0.1", ["6.6.6.6, 198.51.100.1"], "198.51.100.1", True),  # forged entry left of it
        ("127.0.0.1", ["6.6.6.6", "198.51.100.1"], "198.51.100.1", True),  # two headers
        ("127.0.0.1", ["198.51.100.1:5123"], "198.51.100.1", True),  # with a port
        ("127.0.0.1", ["[2001:db8::9]:443"], "2001:db8::9", True),
        ("127.0.0.1", ["198.51.100.1, 10.20.0.7"], "198.51.100.1", True),  # chain
        ("127.0.0.1", ["10.20.0.8, 10.20.0.7"], "10.20.0.8", True),  # all trusted: the first
        ("127.0.0.1", ["198.51.100.1, garbage"], "127.0.0.1", True),  # the walk stops at garbage
        ("127.0.0.1", ["198.51.100.1, unknown, 10.20.0.7"], "10.20.0.7", True),
        ("::ffff:127.0.0.1", ["198.51.100.1"], "198.51.100.1", True),  # IPv4-mapped
        ("::1", ["2001:db8::5"], "2001:db8::5", True),
        ("testclient", ["198.51.100.1"], "testclient", False),  # not an address at all
    ],
)
def test_the_client_is_read_from_the_right_past_trusted_proxies_only(
    connection: str, forwarded: list[str], client: str, proxied: bool
) -> None:
    peer = resolve_peer(connection, forwarded, TRUSTED)
    assert (peer.client, peer.via_trusted_proxy) == (client, proxied)


def test_a_trusted_proxy_that_is_not_an_address_is_a_configuration_error(tmp_path: object) -> None:
    from pathlib import Path

    from monitor.config import load_settings

    path = Path(str(tmp_path)) / "bad.toml"
    path.write_text('[web]\ntrusted_proxies = ["10.0.0.300"]\n')
    with pytest.raises(ConfigError, match=r"web\.trusted_proxies.*10\.0\.0\.300"):
        load_settings(path)
