"""``hiro-monitor check-config``: settings, store, protocols, templates, channel credentials."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.demo import EXAMPLES
from monitor.store.database import make_engine, upgrade
from monitor.store.registry import store_protocol
from monitor.store.schema import trial_versions
from rules import load_protocol
from tests.notifiers.slack_server import FakeSlack, SlackServer
from tests.notifiers.smtp_server import Inbox, SmtpServer
from tests.tls import make_certificate

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ONC = EXAMPLES / "trials" / "onc-2101-recist-ct.toml"
SLACK_CHANNELS = {
    "onc-2101-imaging": "C0ONC2101",
    "ct-techs": "C0CTTECHS",
    "mr-techs": "C0MRTECHS",
    "ct3-console": "C0CT3CON",
}


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A store holding the ONC-2101 example protocol (email + Slack routing)."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url)
    upgrade(engine)
    text = ONC.read_text(encoding="utf-8")
    with engine.begin() as conn:
        store_protocol(conn, load_protocol(text, ONC.name), text, ONC.name, NOW)
    engine.dispose()
    return url


def _config(tmp_path: Path, url: str, extra: str = "") -> str:
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "{url}"\n{extra}', encoding="utf-8")
    return str(path)


@pytest.fixture
def slack() -> Iterator[SlackServer]:
    with SlackServer(FakeSlack(channels=dict(SLACK_CHANNELS))) as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[tuple[SmtpServer, Inbox]]:
    inbox = Inbox()
    server = SmtpServer(inbox, mode="plain")
    server.start()
    try:
        yield server, inbox
    finally:
        server.stop()


def test_disabled_channels_the_protocols_route_to_are_problems(
    tmp_path: Path, store: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HIRO_SLACK_TOKEN", raising=False)
    code = main(["--config", _config(tmp_path, store), "check-config"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "protocols: 1 in force (ONC-2101) load cleanly" in out
    assert "PROBLEM  channel slack: slack is disabled" in out
    assert "PROBLEM  channel email: email is disabled" in out
    assert "MLLP listener on 127.0.0.1:2575" in out and "FHIR poll: off" in out


def test_a_missing_slack_token_is_named(
    tmp_path: Path, store: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HIRO_SLACK_TOKEN", raising=False)
    config = _config(tmp_path, store, "[slack]\nenabled = true\n[email]\nenabled = true\n")
    assert main(["--config", config, "check-config"]) == 1
    out = capsys.readouterr().out
    assert "HIRO_SLACK_TOKEN is not set" in out and "channel email" not in out


def test_send_test_reaches_every_slack_channel_and_email_address(
    tmp_path: Path,
    store: str,
    slack: SlackServer,
    smtp: tuple[SmtpServer, Inbox],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, inbox = smtp
    monkeypatch.setenv("HIRO_SLACK_TOKEN", slack.fake.token)
    config = _config(
        tmp_path,
        store,
        f'[slack]\nenabled = true\nbase_url = "{slack.base_url}"\n'
        f'[email]\nenabled = true\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "plain"\n',
    )
    code = main(["--config", config, "check-config", "--send-test"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "configuration OK" in out
    for channel_id in SLACK_CHANNELS.values():
        [posted] = slack.fake.posted(channel_id)
        assert "check-config" in str(posted["blocks"])
    [(_sender, recipients, email)] = inbox.received
    assert recipients == ["onc2101-team@example.org"]
    body = email.get_body(("plain",))
    assert body is not None and "check-config" in body.get_content()


def test_a_broken_protocol_and_a_broken_site_template_are_reported(
    tmp_path: Path, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(store)
    with engine.begin() as conn:
        conn.execute(
            trial_versions.insert().values(
                trial="BAD-1",
                version=1,
                content="[trial\nid=",
                sha256="0" * 64,
                source="bad.toml",
                loaded_at=NOW,
            )
        )
    engine.dispose()
    site = tmp_path / "site" / "instructions"
    site.mkdir(parents=True)
    (site / "default.html").write_text("<p>{{ no_such_field }}</p>\n", encoding="utf-8")
    config = _config(tmp_path, store, f'[notifications]\ntemplates_dir = "{site.parent}"\n')
    assert main(["--config", config, "check-config"]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM  protocol BAD-1 v1:" in out and "not valid TOML" in out
    assert "PROBLEM  instruction sheet (default):" in out and "no_such_field" in out


def test_a_sqlite_file_that_does_not_exist_is_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "later" / "hiro.db"
    assert main(["--config", _config(tmp_path, f"sqlite:///{path}"), "check-config"]) == 0
    out = capsys.readouterr().out
    assert "empty; `hiro-monitor run` (or `db upgrade`) creates the schema" in out
    assert not path.exists() and not path.parent.exists()


def test_unreadable_tls_and_key_files_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    extra = (
        f'[mllp]\ntls_certificate = "{tmp_path / "missing.pem"}"\ntls_private_key = ""\n'
        '[fhir]\nenabled = true\nbase_url = "https://ehr.example.org/fhir/"\nauth = "smart_backend"\n'
    )
    assert main(["--config", _config(tmp_path, f"sqlite:///{tmp_path / 'x.db'}", extra), "check-config"]) == 1
    out = capsys.readouterr().out
    assert (
        "PROBLEM  mllp.tls_certificate: cannot read" in out and "PROBLEM  mllp.tls_private_key: empty" in out
    )
    assert "PROBLEM  fhir.private_key_file: empty" in out
    assert "FHIR poll of https://ehr.example.org/fhir/: per_patient" in out


def test_a_key_that_is_not_the_certificates_is_named_by_check_config_and_by_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cert, _ = make_certificate(tmp_path / "a")
    _, other_key = make_certificate(tmp_path / "b")
    tls = f'tls_certificate = "{cert}"\ntls_private_key = "{other_key}"'
    extra = f"[mllp]\nport = 0\n{tls}\n[web]\nenabled = false\n"
    config = _config(tmp_path, f"sqlite:///{tmp_path / 'x.db'}", extra)
    mismatch = "mllp.tls_private_key does not match mllp.tls_certificate (they are not a pair)"

    assert main(["--config", config, "check-config"]) == 1
    assert f"PROBLEM  {mismatch}" in capsys.readouterr().out
    assert main(["--config", config, "run"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == mismatch and "Traceback" not in captured.out + captured.err


def test_an_allowed_client_list_without_a_client_ca_is_named_by_check_config_and_by_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, key = make_certificate(tmp_path)
    tls = f'tls_certificate = "{cert}"\ntls_private_key = "{key}"\ntls_allowed_clients = ["epic-bridge"]'
    config = _config(
        tmp_path, f"sqlite:///{tmp_path / 'x.db'}", f"[mllp]\nport = 0\n{tls}\n[web]\nenabled = false\n"
    )
    assert main(["--config", config, "check-config"]) == 1
    assert "PROBLEM  mllp.tls_allowed_clients needs mllp.tls_client_ca" in capsys.readouterr().out
    assert main(["--config", config, "run"]) == 2
    assert capsys.readouterr().err.startswith("mllp.tls_allowed_clients needs mllp.tls_client_ca")


def test_an_operations_channel_that_cannot_send_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = '[operations]\nchannels = ["slack:#hl7-ops"]\n'
    assert main(["--config", _config(tmp_path, f"sqlite:///{tmp_path / 'x.db'}", extra), "check-config"]) == 1
    assert "PROBLEM  channel slack:" in capsys.readouterr().out
