"""Accounts managed by admins in the dashboard and on the command line: disable, enable,
change role and scope; every change audited with before and after (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.cli import main
from tests.monitor.web.conftest import Login, Site, csrf_in


def _post(client: object, data: dict[str, str]) -> object:
    token = csrf_in(client.get("/accounts").text)  # type: ignore[attr-defined]
    return client.post("/accounts", data={**data, "csrf_token": token})  # type: ignore[attr-defined]


def test_a_disabled_account_is_signed_out_and_can_be_enabled_again(site: Site, login: Login) -> None:
    viewer = site.login("viewer")
    assert viewer.get("/upcoming").status_code == 200
    admin = login("admin")
    answer = _post(admin, {"username": "viewer", "action": "disable"})
    assert answer.status_code == 303  # type: ignore[attr-defined]
    assert viewer.get("/upcoming").status_code == 303  # its session ends at the next request
    [row] = site.audit_rows(action="account.disable", object_id="viewer")
    assert (row.username, row.before, row.after) == ("admin", "viewer [all]", "viewer [all] disabled")  # type: ignore[attr-defined]
    assert "<td>no</td>" in admin.get("/accounts").text
    _post(admin, {"username": "viewer", "action": "enable"})
    assert site.login("viewer").get("/upcoming").status_code == 200


def test_a_coordinators_trials_change_and_the_scope_follows(site: Site, login: Login) -> None:
    admin = login("admin")
    _post(admin, {"username": "neuro", "action": "change", "role": "coordinator",
                  "trials": "NEU-4405, LYM-3302", "modalities": ""})  # fmt: skip
    [row] = site.audit_rows(action="account.change", object_id="neuro")
    assert (row.before, row.after) == ("coordinator [NEU-4405]", "coordinator [NEU-4405,LYM-3302]")  # type: ignore[attr-defined]
    trials = [t["trial"] for t in site.login("neuro").get("/api/trials").json()]
    assert sorted(trials) == ["LYM-3302", "NEU-4405"]
    refused = _post(admin, {"username": "neuro", "action": "change", "role": "coordinator", "trials": ""})
    assert refused.status_code == 422  # type: ignore[attr-defined]


def test_an_admin_cannot_lock_themselves_out_and_others_cannot_manage_accounts(
    site: Site, login: Login
) -> None:
    admin = login("admin")
    assert _post(admin, {"username": "admin", "action": "disable"}).status_code == 422  # type: ignore[attr-defined]
    demote = {"username": "admin", "action": "change", "role": "viewer"}
    assert _post(admin, demote).status_code == 422  # type: ignore[attr-defined]
    assert site.audit_rows(object_type="account", object_id="admin") == []
    coord = login("coord")
    assert coord.get("/accounts").status_code == 403
    token = csrf_in(coord.get("/findings").text)
    forged = coord.post("/accounts", data={"username": "coord", "action": "enable", "csrf_token": token})
    assert forged.status_code == 403


def test_users_list_and_disable_on_the_command_line(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--database", site.url, "--log-level", "WARNING", "users"]
    assert main([*base, "disable", "tech"], clock=site.clock) == 0
    assert main([*base, "list", "--json"], clock=site.clock) == 0
    accounts = {a["username"]: a for a in json.loads(capsys.readouterr().out.split("\n", 1)[1])}
    assert accounts["tech"]["active"] is False and accounts["coord"]["trials"] == ["ONC-2101"]
    [row] = site.audit_rows(action="account.disable", object_id="tech")
    assert row.username.startswith("cli")  # type: ignore[attr-defined]
    assert main([*base, "enable", "tech"], clock=site.clock) == 0
    assert main([*base, "list"], clock=site.clock) == 0
    table = capsys.readouterr().out
    assert all(len(line) <= 80 for line in table.splitlines())
    assert "tech " in table and "CT" in table
    assert main([*base, "disable", "nobody"], clock=site.clock) == 2
    assert "no account 'nobody'" in capsys.readouterr().err
