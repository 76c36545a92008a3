"""Sign-in, sessions, CSRF, security headers and the trusted proxy's header."""

from __future__ import annotations

from datetime import timedelta

from tests.monitor.trial_setup import NOW
from tests.monitor.web.conftest import Login, Site, csrf_in
from tests.monitor.web.site import PASSWORD


def test_every_page_but_health_and_metrics_needs_a_sign_in(site: Site) -> None:
    client = site.client()
    for path in ("/", "/upcoming", "/trials", "/trials/ONC-2101", "/exams/1", "/exams/1/sheet",
                 "/findings", "/findings.csv", "/feeds", "/audit"):  # fmt: skip
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/login", path
    for path in ("/api/exams", "/api/exams/1", "/api/findings", "/api/findings/1", "/api/trials",
                 "/api/trials/ONC-2101", "/api/enrolments", "/api/enrolments/1",
                 "/api/notifications"):  # fmt: skip
        assert client.get(path).status_code == 401, path
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["components"]["database"] == {"status": "ok"}
    assert "hiro_findings_open" in client.get("/metrics").text


def test_a_wrong_password_or_unknown_user_is_refused_and_audited(site: Site) -> None:
    client = site.client()
    token = csrf_in(client.get("/login").text)
    for name, password in (("coord", "wrong password!"), ("nobody", "whatever it is")):
        answer = client.post("/login", data={"username": name, "password": password, "csrf_token": token})
        assert answer.status_code == 401
        assert "hiro_session" not in answer.cookies
    assert site.audit_rows(action="sign_in.failed", username="nobody")


def test_sign_in_without_the_form_token_is_refused(site: Site) -> None:
    client = site.client()
    client.get("/login")
    answer = client.post("/login", data={"username": "coord", "password": "correct horse battery"})
    assert answer.status_code == 403


def test_the_session_cookie_is_httponly_samesite_lax_and_secure_when_configured(site: Site) -> None:
    for secure in (True, False):
        client = site.client(cookie_secure=secure)
        token = csrf_in(client.get("/login").text)
        answer = client.post(
            "/login", data={"username": "coord", "password": "correct horse battery", "csrf_token": token}
        )
        cookie = answer.headers["set-cookie"]
        assert "hiro_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
        assert ("Secure" in cookie) is secure


def test_signing_in_gives_a_new_session_id_and_ends_the_old_one(site: Site) -> None:
    client = site.login("coord")
    first = client.cookies["hiro_session"]
    site.login("coord", client=client)
    second = client.cookies["hiro_session"]
    assert first != second
    stale = site.client()
    stale.cookies.set("hiro_session", first)
    assert stale.get("/upcoming").status_code == 303


def test_security_headers_and_no_store_on_pages(site: Site, login: Login) -> None:
    client = login("admin")
    for path in ("/upcoming", "/api/findings", "/login"):
        headers = client.get(path).headers
        assert "default-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
    assert client.get("/healthz").headers["cache-control"] == "no-cache"


def test_a_session_ends_after_the_idle_timeout(site: Site, login: Login) -> None:
    client = login("viewer")
    site.clock.now = NOW + timedelta(minutes=14)
    assert client.get("/upcoming").status_code == 200
    site.clock.now = NOW + timedelta(minutes=28)  # 14 minutes after the last request: still alive
    assert client.get("/upcoming").status_code == 200
    site.clock.now = NOW + timedelta(minutes=44)
    assert client.get("/upcoming").status_code == 303
    site.clock.now = NOW


def test_a_session_ends_after_its_lifetime_however_busy(site: Site, login: Login) -> None:
    client = login("viewer")
    for minutes in range(10, 12 * 60, 10):
        site.clock.now = NOW + timedelta(minutes=minutes)
        assert client.get("/healthz").status_code == 200
        assert client.get("/api/trials").status_code == 200, minutes
    site.clock.now = NOW + timedelta(hours=12, minutes=5)
    assert client.get("/api/trials").status_code == 401
    site.clock.now = NOW


def test_forms_without_the_csrf_token_change_nothing(site: Site, login: Login) -> None:
    client = login("admin")
    before = len(site.audit_rows(action="finding.acknowledge"))
    for data in ({"action": "acknowledge"}, {"action": "acknowledge", "csrf_token": "forged"}):
        assert client.post("/findings/1/review", data=data).status_code == 403
    assert len(site.audit_rows(action="finding.acknowledge")) == before
    assert client.post("/logout", data={}).status_code == 403
    assert client.get("/upcoming").status_code == 200  # still signed in


def test_sign_out_ends_the_session(site: Site, login: Login) -> None:
    client = login("viewer")
    token = csrf_in(client.get("/upcoming").text)
    kept = client.cookies["hiro_session"]
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    again = site.client()
    again.cookies.set("hiro_session", kept)
    assert again.get("/upcoming").status_code == 303


def test_the_proxy_header_signs_in_only_from_a_trusted_proxy(site: Site) -> None:
    sso = {"sso_header": "X-Remote-User", "trusted_proxies": ["10.0.0.5", "192.168.7.0/24"]}
    for peer in ("10.0.0.5", "192.168.7.20"):
        proxied = site.client(peer=peer, **sso)
        answer = proxied.get("/upcoming", headers={"X-Remote-User": "coord"})
        assert answer.status_code == 200, peer
        assert "coord (coordinator)" in answer.text
        assert "hiro_session" in answer.cookies
    # Straight to the app port with a forged header: nobody is signed in.
    for peer in ("10.0.0.6", "127.0.0.1", "testclient"):
        forged = site.client(peer=peer, **sso)
        assert forged.get("/upcoming", headers={"X-Remote-User": "admin"}).status_code == 303, peer
        assert forged.get("/api/findings", headers={"X-Remote-User": "admin"}).status_code == 401, peer
    # A trusted proxy naming an unknown account signs nobody in.
    proxied = site.client(peer="10.0.0.5", **sso)
    assert proxied.get("/upcoming", headers={"X-Remote-User": "mallory"}).status_code == 303
    # Without sso_header configured the header means nothing, even from the proxy's address.
    plain = site.client(peer="10.0.0.5", trusted_proxies=["10.0.0.5"])
    assert plain.get("/upcoming", headers={"X-Remote-User": "admin"}).status_code == 303


def test_the_audit_trail_records_the_client_behind_a_trusted_proxy_only(site: Site) -> None:
    sso = {"sso_header": "X-Remote-User", "trusted_proxies": ["10.0.0.5"]}
    proxied = site.client(peer="10.0.0.5", **sso)
    headers = {"X-Remote-User": "viewer", "X-Forwarded-For": "198.51.100.1, 172.16.4.7"}
    assert proxied.get("/trials/LYM-3302", headers=headers).status_code == 200
    assert site.audit_rows(username="viewer", object_id="LYM-3302")[-1].client == "172.16.4.7"  # type: ignore[attr-defined]
    direct = site.login("viewer", client=site.client(peer="10.0.0.9", **sso))
    assert direct.get("/trials/LYM-3302", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 200
    assert site.audit_rows(username="viewer", object_id="LYM-3302")[-1].client == "10.0.0.9"  # type: ignore[attr-defined]


def _try(site: Site, peer: str, username: str, password: str) -> tuple[int, dict[str, str], bool]:
    client = site.client(peer=peer)
    token = csrf_in(client.get("/login").text)
    answer = client.post("/login", data={"username": username, "password": password, "csrf_token": token})
    return answer.status_code, dict(answer.headers), "hiro_session" in answer.cookies


def test_wrong_passwords_throttle_that_account_from_that_address_for_a_while(site: Site) -> None:
    site.clock.now = NOW
    try:
        for _ in range(5):
            assert _try(site, "10.9.9.1", "coord", "not the password")[0] == 401
        status, headers, signed_in = _try(site, "10.9.9.1", "coord", PASSWORD)
        assert status == 429 and not signed_in  # even the right password waits: no oracle
        assert 0 < int(headers["retry-after"]) <= 15 * 60
        assert site.audit_rows(action="sign_in.throttled", username="coord", client="10.9.9.1")
        # A colleague at another workstation is not locked out.
        assert _try(site, "10.9.9.2", "coord", PASSWORD)[0] == 303
        site.clock.now = NOW + timedelta(minutes=15, seconds=1)
        assert _try(site, "10.9.9.1", "coord", PASSWORD)[0] == 303
    finally:
        site.clock.now = NOW


def test_one_address_trying_many_accounts_is_throttled_too(site: Site) -> None:
    site.clock.now = NOW
    for number in range(30):
        assert _try(site, "10.9.9.3", f"guess{number}", "not the password")[0] == 401
    assert _try(site, "10.9.9.3", "coord", PASSWORD)[0] == 429
    assert _try(site, "10.9.9.4", "coord", PASSWORD)[0] == 303
