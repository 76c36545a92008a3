"""The settings object: one typed value, loaded once, passed down.

Sources, later wins: built-in defaults, the TOML file (``--config`` or ``HIRO_CONFIG``),
environment overrides (``HIRO_DATABASE_URL``), then CLI flags (applied by the CLI).
Secrets come from the environment, or from a file named by ``<NAME>_FILE`` (systemd
credentials, Docker/Kubernetes secrets), never from the TOML file itself.

Every setting is documented in ``config.example.toml``; a test keeps the two in step.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from monitor.events import EventKind
from notifiers.settings import EmailSettings, SecretUnreadable, SlackSettings, WebhookSettings, read_secret
from rules.rescheduling import WEEKDAYS, Closures


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


def _check_weekdays(value: list[str]) -> list[str]:
    names = [name.strip().lower()[:3] for name in value]
    unknown = [given for given, name in zip(value, names, strict=True) if name not in WEEKDAYS]
    if unknown:
        raise ValueError(f"not a day of the week: {', '.join(map(repr, unknown))} (write Mon ... Sun)")
    return names


class SiteSettings(_Section):
    name: str = "Research Imaging Office"
    timezone: str = "America/New_York"
    # Days the site does not scan research subjects: the rescheduling assistant offers none.
    closed_weekdays: list[str] = Field(default_factory=lambda: ["sat", "sun"])
    closed_days: list[date] = Field(default_factory=list)

    _zone = field_validator("timezone")(_check_zone)
    _weekdays = field_validator("closed_weekdays")(_check_weekdays)

    def closures(self) -> Closures:
        return Closures(
            frozenset(WEEKDAYS[name] for name in self.closed_weekdays), frozenset(self.closed_days)
        )


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
    # Mutual TLS: with a CA bundle, every sender must show a certificate it signed; with
    # allowed clients too, that certificate's subject CN or one of its DNS names must be listed.
    tls_client_ca: str = ""
    tls_allowed_clients: tuple[str, ...] = ()


class FhirSettings(_Section):
    """The FHIR R4 Appointment poller. Secrets (the bearer token) come from the environment:
    ``HIRO_FHIR_TOKEN`` or ``HIRO_FHIR_TOKEN_FILE``; the SMART private key from its file."""

    enabled: bool = False
    base_url: str = ""
    feed: str = "epic-fhir"
    mode: Literal["per_patient", "date_range"] = "per_patient"
    look_back_days: int = Field(default=2, ge=0)
    look_ahead_days: int = Field(default=120, ge=1)
    poll_interval_seconds: int = Field(default=300, ge=10)
    page_size: int = Field(default=100, ge=1, le=1000)
    request_timeout_seconds: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=4, ge=0, le=10)
    service_category: str = ""
    mrn_system: str = ""
    auth: Literal["none", "bearer", "smart_backend"] = "none"
    client_id: str = ""
    token_url: str = ""
    private_key_file: str = ""
    key_id: str = ""
    algorithm: Literal["RS384", "ES384"] = "RS384"
    scope: str = "system/Appointment.read system/Patient.read system/ServiceRequest.read system/Location.read"
    study_trial_map: dict[str, str] = Field(default_factory=dict)


def _check_ae_title(value: str) -> str:
    """A DICOM AE title: 1 to 16 printable ASCII characters, no backslash, not only spaces."""
    if not 1 <= len(value) <= 16 or not value.strip():
        raise ValueError("an AE title has 1 to 16 characters, not all spaces")
    if "\\" in value or not all(" " <= char <= "~" for char in value):
        raise ValueError("an AE title holds printable ASCII characters other than a backslash")
    return value


class PacsSettings(_Section):
    """The PACS whose studies are checked against the trials' acquisition rules (metadata only,
    never pixel data), read over DICOMweb (``dicomweb_url``) or DIMSE C-FIND (``host``,
    ``port``, the AE titles). Secrets come from the environment: the basic-auth password from
    ``HIRO_PACS_PASSWORD`` (or ``HIRO_PACS_PASSWORD_FILE``), a bearer token from
    ``HIRO_PACS_TOKEN`` (or ``HIRO_PACS_TOKEN_FILE``)."""

    enabled: bool = False
    feed: str = "pacs"  # its name on the feed-health page
    protocol: Literal["dicomweb", "dimse"] = "dicomweb"
    dicomweb_url: str = ""
    auth: Literal["none", "basic", "bearer"] = "none"
    username: str = ""
    ca_file: str = ""  # TLS: the CA bundle that signs the PACS's certificate (empty: the system's)
    # DIMSE: the PACS's address and AE title, and ours (which the PACS must know).
    host: str = ""
    port: int = Field(default=104, ge=1, le=65535)
    called_ae: str = "PACS"
    calling_ae: str = "HIROMONITOR"
    # DIMSE over TLS (trusting ca_file); a client certificate when the PACS asks for one.
    tls: bool = False
    certificate_file: str = ""
    private_key_file: str = ""
    poll_interval_seconds: int = Field(default=60, ge=10)
    look_back_days: int = Field(default=2, ge=0, le=30)
    request_timeout_seconds: float = Field(default=10.0, gt=0)
    page_size: int = Field(default=500, ge=10, le=5000)
    max_requests_per_poll: int = Field(default=300, ge=10)
    # Orthanc's REST API (same credentials): where de-identified copies for the trials' core
    # labs are made and sent from (``hiro-monitor corelab send``); empty: none are made.
    orthanc_url: str = ""
    copy_timeout_seconds: float = Field(default=300.0, gt=0)  # making or sending one study's copy
    images_due_hours: float = Field(default=4.0, gt=0)

    _ae_titles = field_validator("called_ae", "calling_ae")(_check_ae_title)

    @model_validator(mode="after")
    def _client_certificate_pair(self) -> PacsSettings:
        if bool(self.certificate_file) != bool(self.private_key_file):
            raise ValueError("give both certificate_file and private_key_file, or neither")
        return self


class NotificationSettings(_Section):
    """What every channel shares: the site's template folder and the dashboard's address."""

    templates_dir: str = ""
    dashboard_base_url: str = ""


def _check_webhook_names(value: dict[str, WebhookSettings]) -> dict[str, WebhookSettings]:
    for name in value:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
            raise ValueError(f"webhook name {name!r}: use lower-case letters, digits, '-' and '_'")
    return value


class WebSettings(_Section):
    """The dashboard and JSON API (``hiro-monitor web``). Sign-in is by local account
    (``hiro-monitor users add``) or, when ``sso_header`` is set, by the identity a trusted
    reverse proxy puts in that header; the header is believed only from ``trusted_proxies``."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    cookie_secure: bool = True
    idle_timeout_minutes: int = Field(default=15, ge=1)
    session_lifetime_hours: int = Field(default=12, ge=1)
    sso_header: str = ""
    trusted_proxies: tuple[str, ...] = ()
    upcoming_days: int = Field(default=14, ge=1, le=366)
    # Wrong passwords allowed per account and address within the lockout (x6 per address).
    login_attempts: int = Field(default=5, ge=1, le=1000)
    login_lockout_minutes: int = Field(default=15, ge=1, le=1440)
    # Upcoming and trial tables are rebuilt when the data changes, and at least this often.
    page_cache_seconds: float = Field(default=10, ge=0, le=3600)
    # Threads per web process answering pages (monitor/threads.py: page_threads). Pages are
    # Python under one interpreter lock: more threads add no CPU, only queueing.
    threads: int = Field(default=4, ge=1, le=64)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # A typo must not silently trust nothing (or, worse, something else): name it.
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network (e.g. 10.0.0.0/24)") from None
        return value


class SchedulerSettings(_Section):
    """The jobs ``hiro-monitor run`` runs (APScheduler, in memory; see monitor/dispatch/scheduler.py).

    With PostgreSQL and several replicas, one replica at a time runs the evaluation, digest,
    purge and FHIR poll jobs (a PostgreSQL advisory lock); dispatch runs on every replica."""

    enabled: bool = True
    evaluate_every_minutes: int = Field(default=15, ge=1)
    dispatch_every_seconds: float = Field(default=2.0, gt=0, le=300)
    digest_enabled: bool = True
    digest_hour: int = Field(default=7, ge=0, le=23)
    digest_look_ahead_days: int = Field(default=7, ge=1, le=60)
    purge_hour: int = Field(default=3, ge=0, le=23)
    # Replicas on PostgreSQL: how often a follower tries for the leader lock (and the leader
    # checks it still holds it). A dead leader's jobs resume within about this long.
    leader_check_seconds: float = Field(default=3.0, gt=0, le=60)


class EvaluationSettings(_Section):
    """How the compliance engine judges the schedule (``monitor/evaluation.py``, ``rules/``)."""

    # An unbooked visit is due (alerted) from this many days before its window opens.
    due_soon_days: int = Field(default=7, ge=0, le=90)
    # No alerts about facts older than this (an exam date or a window's end): history is not news.
    alert_lookback_days: int = Field(default=14, ge=0, le=366)
    # A booked exam this long past its start with no arrival or completion is "unconfirmed".
    unconfirmed_after_hours: float = Field(default=24.0, gt=0, le=24 * 60)
    # A long-running evaluator (the daemon's scheduled job) judges only the enrolments whose
    # inputs changed or whose dates and lead times have come (rules.stability); every this
    # many hours it judges them all again, whatever the store says changed.
    full_sweep_hours: float = Field(default=1.0, gt=0, le=24)


class DispatchSettings(_Section):
    """The outbox dispatcher: retries, backoff and how a crashed sender's rows are taken back."""

    enabled: bool = True
    workers: int = Field(default=32, ge=1, le=256)
    max_attempts: int = Field(default=10, ge=1)
    retry_base_seconds: float = Field(default=30.0, gt=0)
    retry_max_seconds: float = Field(default=3600.0, gt=0)
    sending_timeout_seconds: float = Field(default=300.0, ge=10)
    # The first planning of an empty outbox records booking notices as skipped (never sent):
    # a fresh install pointed at an existing schedule does not announce every booking.
    quiet_first_run: bool = True


_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


def _check_hours(value: str) -> str:
    """``"07:00-19:00"`` (site time, start before end) or ``""`` (all day)."""
    text = value.strip()
    found = _HOURS.match(text)
    if text and (found is None or text[:5] >= text[6:]):
        raise ValueError(f"{value!r}: write the hours as HH:MM-HH:MM, the start before the end (07:00-19:00)")
    return text


class FeedWatch(_Section):
    """How one feed is watched for silence (``[operations.feeds.NAME]``)."""

    # Alert when the feed sends nothing for this long within the watched hours (0: never).
    quiet_minutes: int = Field(default=60, ge=0)
    # Watched on the site's open days between these times (site zone); "" all day, every day.
    hours: str = "07:00-19:00"

    _hours = field_validator("hours")(_check_hours)


class OperationsSettings(_Section):
    """Alerts to the integration team's channel (no patient data): a feed gone quiet, a rise
    in rejected messages, a backlog in the outbox; each says so once when it recovers."""

    # Where operations alerts go ("slack:#hl7-ops", "email:interfaces@hospital.org", "webhook:NAME").
    channels: tuple[str, ...] = ()
    check_every_seconds: int = Field(default=60, ge=5, le=3600)
    # The feeds watched for silence and how; the HL7 feed (and the FHIR feed when it is
    # enabled) are watched with the defaults unless named here.
    feeds: dict[str, FeedWatch] = Field(default_factory=dict)
    # AE and AR answers of one feed within the last hour that raise an alert (0: never).
    rejections_per_hour: int = Field(default=20, ge=0)
    # Outbox messages due this many minutes ago or more and still unsent that raise an alert (0: never).
    outbox_backlog: int = Field(default=50, ge=0)
    outbox_backlog_minutes: int = Field(default=15, ge=1)
    # A sending system whose connections have all closed and that has not come back for this
    # long (0: never). Each replica reports the senders that left its own listener.
    sender_gone_minutes: int = Field(default=10, ge=0)


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class LoggingSettings(_Section):
    """Log format and levels (``monitor/logs.py``); ``--log-level`` overrides ``level``."""

    format: Literal["text", "json"] = "text"
    level: LogLevel = "INFO"
    levels: dict[str, LogLevel] = Field(default_factory=dict)


class Settings(_Section):
    site: SiteSettings = SiteSettings()
    database: DatabaseSettings = DatabaseSettings()
    hl7: Hl7Settings = Hl7Settings()
    mllp: MllpSettings = MllpSettings()
    fhir: FhirSettings = FhirSettings()
    notifications: NotificationSettings = NotificationSettings()
    slack: SlackSettings = SlackSettings()
    email: EmailSettings = EmailSettings()
    webhooks: dict[str, WebhookSettings] = Field(default_factory=dict)
    logging: LoggingSettings = LoggingSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    dispatch: DispatchSettings = DispatchSettings()
    web: WebSettings = WebSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    pacs: PacsSettings = PacsSettings()
    operations: OperationsSettings = OperationsSettings()

    _webhook_names = field_validator("webhooks")(_check_webhook_names)

    def feed_names(self) -> tuple[str, ...]:
        """The feeds this site's messages come from: the HL7 feed and the FHIR feed."""
        return tuple(dict.fromkeys((self.hl7.feed, self.fhir.feed)))


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
    """A secret from ``NAME`` or from the file named by ``NAME_FILE`` (trailing newline dropped);
    :class:`ConfigError` when that file cannot be read."""
    try:
        return read_secret(name, environ)
    except SecretUnreadable as exc:
        raise ConfigError(str(exc)) from exc
