"""The channel registry, address parsing and the settings behind each channel."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from monitor.config import ConfigError, Settings, WebhookSettings, load_settings
from monitor.render import Renderer
from notifiers import CHANNELS, NotifierError, notifier_class, notifier_for, parse_address
from notifiers.base import Notifier
from notifiers.console import ConsoleNotifier
from notifiers.slack import SlackNotifier

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def test_addresses_split_into_channel_and_target() -> None:
    assert parse_address("slack:#onc-2101-imaging") == ("slack", "#onc-2101-imaging")
    assert parse_address("email:team@example.org") == ("email", "team@example.org")
    assert parse_address("console:") == ("console", "")
    with pytest.raises(ValueError, match="channel address"):
        parse_address("team@example.org")


def test_every_registered_channel_is_a_notifier_named_like_its_key() -> None:
    for channel in CHANNELS:
        cls = notifier_class(channel)
        assert issubclass(cls, Notifier) and cls.name == channel


def test_channels_are_imported_only_when_first_used() -> None:
    code = "import sys, notifiers; print('slack_sdk' in sys.modules, 'jinja2' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("pager:1234", "unknown channel 'pager'"),
        ("nowhere", "not a channel address"),
        ("slack:#ct-techs", "slack is disabled"),
        ("email:team@example.org", "email is disabled"),
        ("webhook:teams", "webhook 'teams' is not configured"),
    ],
)
def test_unusable_addresses_are_permanent_errors(address: str, message: str, renderer: Renderer) -> None:
    with pytest.raises(NotifierError, match=re.escape(message)) as caught:
        notifier_for(address, Settings(), renderer=renderer, environ={})
    assert caught.value.permanent


def test_slack_needs_its_token_from_the_environment(renderer: Renderer) -> None:
    settings = Settings.model_validate({"slack": {"enabled": True}})
    with pytest.raises(NotifierError, match="HIRO_SLACK_TOKEN is not set"):
        notifier_for("slack:#ct-techs", settings, renderer=renderer, environ={})
    notifier = notifier_for(
        "slack:#ct-techs", settings, renderer=renderer, environ={"HIRO_SLACK_TOKEN": "xoxb-1"}
    )
    assert isinstance(notifier, SlackNotifier)


def test_console_needs_no_settings(renderer: Renderer) -> None:
    assert isinstance(notifier_for("console:", Settings(), renderer=renderer, environ={}), ConsoleNotifier)


def test_chat_and_webhooks_cannot_be_configured_for_full_phi(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[slack]\nphi_policy = "full"\n[webhooks.teams]\nurl = "https://x"\nphi_policy = "full"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert "slack.phi_policy" in str(caught.value) and "webhooks.teams.phi_policy" in str(caught.value)


def test_webhook_names_must_work_as_environment_variable_names(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[webhooks."Teams Channel"]\nurl = "https://x"\n')
    with pytest.raises(ConfigError, match="webhook name"):
        load_settings(path, environ={})


def test_the_example_webhook_documents_every_webhook_setting() -> None:
    """The example's commented ``[webhooks.teams]`` block, uncommented, is a complete, valid webhook."""
    text = EXAMPLE.read_text(encoding="utf-8")
    block = text[text.index("# [webhooks.teams]") :].splitlines()
    lines = [line[2:] for line in block if line.startswith("# ")]
    table = tomllib.loads("\n".join(lines))["webhooks"]["teams"]
    assert set(table) == set(WebhookSettings.model_fields)
    assert WebhookSettings.model_validate(table).phi_policy == "none"
