"""The settings object: one typed value, loaded once, passed down.

Sources, later wins: built-in defaults, the TOML file (``--config`` or ``HIRO_CONFIG``),
environment overrides (``HIRO_DATABASE_URL``), then CLI flags (applied by the CLI).
Secrets come from the environment, or from a file named by ``<NAME>_FILE`` (systemd
credentials, Docker/Kubernetes secrets), never from the TOML file itself.

Every setting is documented in ``config.example.toml``; a test keeps the two in step.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from monitor.events import EventKind


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and the problem."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as 'America/Chicago')") from exc
    return value


class SiteSettings(_Section):
    name: str = "Research Imaging Office"
    timezone: str = "America/New_York"

    _zone = field_validator("timezone")(_check_zone)


class DatabaseSettings(_Section):
    url: str = "sqlite:///hiro-monitor.db"
    raw_retention_days: int = Field(default=90, ge=1)


class Hl7Settings(_Section):
    feed: str = "epic"
    timezone: str = "America/New_York"
    mrn_authorities: tuple[str, ...] = ()
    mrn_type_codes: tuple[str, ...] = ("MR", "MRN")
    status_codes: dict[str, EventKind] = Field(default_factory=dict)

    _zone = field_validator("timezone")(_check_zone)


class MllpSettings(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=2575, ge=0, le=65535)
    max_message_bytes: int = Field(default=1_048_576, ge=1024)
    message_deadline_seconds: float = Field(default=30.0, gt=0)
    idle_timeout_seconds: float = Field(default=600.0, gt=0)
    ack_mode: Literal["after_processing", "after_storing_raw"] = "after_processing"
    allowed_senders: tuple[str, ...] = ()
    tls_certificate: str = ""
    tls_private_key: str = ""


class Settings(_Section):
    site: SiteSettings = SiteSettings()
    database: DatabaseSettings = DatabaseSettings()
    hl7: Hl7Settings = Hl7Settings()
    mllp: MllpSettings = MllpSettings()


def _format_errors(exc: ValidationError, origin: str) -> str:
    lines = [f"{origin}: invalid configuration"]
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        lines.append(f"  {key}: {err['msg']}")
    return "\n".join(lines)


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file (if any) and the environment into :class:`Settings`.

    Raises :class:`ConfigError` naming the file, the key and the problem.
    """
    env = os.environ if environ is None else environ
    chosen = path if path is not None else env.get("HIRO_CONFIG")
    data: dict[str, object] = {}
    origin = "defaults"
    if chosen:
        origin = str(chosen)
        try:
            data = tomllib.loads(Path(chosen).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{chosen}: configuration file not found") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{chosen}: not valid TOML: {exc}") from exc
    database_url = secret("HIRO_DATABASE_URL", env)
    if database_url:
        section = dict(data.get("database", {}))  # type: ignore[call-overload]
        section["url"] = database_url
        data["database"] = section
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, origin)) from exc


def secret(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """A secret from ``NAME`` or from the file named by ``NAME_FILE`` (trailing newline dropped)."""
    env = os.environ if environ is None else environ
    if env.get(name):
        return env[name]
    file_name = env.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read {file_name}: {exc.strerror}") from exc
    return None
