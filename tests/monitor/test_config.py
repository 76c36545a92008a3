from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from monitor.config import ConfigError, Settings, load_settings, secret

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= _keys(annotation, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def _flatten(data: dict[str, object], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, value in data.items():
        if isinstance(value, dict) and not name.endswith(
            ("status_codes", "_map", "webhooks", "levels", "feeds")
        ):  # tables as values
            keys |= _flatten(value, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def test_example_config_documents_every_setting_and_nothing_else() -> None:
    documented = _flatten(tomllib.loads(EXAMPLE.read_text()))
    assert documented == _keys(Settings)


def test_example_config_values_are_the_defaults() -> None:
    assert load_settings(EXAMPLE, environ={}) == Settings()


def test_unknown_key_is_named_with_its_section(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[mllp]\nprot = 2575\n[hl7]\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    message = str(caught.value)
    assert "mllp.prot" in message
    assert "hl7.timezone" in message and "unknown time zone" in message


def test_database_url_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    assert (
        load_settings(None, environ={"HIRO_DATABASE_URL": "sqlite:///x.db"}).database.url == "sqlite:///x.db"
    )
    secret_file = tmp_path / "url"
    secret_file.write_text("postgresql://u@h/db\n")
    settings = load_settings(None, environ={"HIRO_DATABASE_URL_FILE": str(secret_file)})
    assert settings.database.url == "postgresql://u@h/db"
    assert secret("NOT_SET", environ={}) is None


def test_config_file_named_by_hiro_config(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[site]\ntimezone = "Europe/Berlin"\n')
    assert load_settings(None, environ={"HIRO_CONFIG": str(path)}).site.timezone == "Europe/Berlin"
