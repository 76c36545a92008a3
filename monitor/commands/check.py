"""``hiro-monitor check-config [--send-test]``: is this installation ready to run?

Checks, in order, and reports every problem rather than the first:

1. the settings (already loaded: a bad file never gets this far, the CLI exits 2 naming
   the key);
2. the store: reachable, its schema revision (behind is a note: ``run`` migrates on start);
3. the protocols in force: each trial's latest stored version loads (``rules.load_protocol``);
4. the templates: each trial's instruction sheet (its own or the default) and the message
   bodies render with a synthetic context (strict templates: a missing field is an error);
5. the channels: every address the protocols route to (and every enabled channel) has
   its settings and secrets: Slack token, SMTP password when a user name is set, webhook
   secrets;
6. the MRN pools of the stored exams (``_check_identifier_pools``): several assigning
   authorities among the MR-type identifiers while ``[hl7] mrn_authorities`` is empty, a
   configured pool's identifier passed over, exams of enrolled MRNs that matched nobody;
7. the PACS, when ``[pacs] enabled`` (``_check_pacs``): its address and secrets are set, and
   it answers one ping (``PacsReader.ping``: a QIDO-RS search for no study, or a C-ECHO with
   the configured AE titles and TLS), which asks for no patient's data. Like the store, it is
   contacted on every run (it is only read), not only with ``--send-test``, which is for what
   people receive. Over DIMSE, acquisition rules that read attributes inside a sequence (a PET
   uptake rule's injection time) are a warning: many PACS leave sequences out of C-FIND answers;
8. the trials' core labs (:mod:`monitor.commands.check_core_lab`): Orthanc answers where the
   project sends copies, the date-shift key is set where dates are shifted, and every
   transmittal form renders;

then prints what ``hiro-monitor run`` would start. ``--send-test`` sends one clearly marked
test message (no patient data) to each address. Exit 0 when there is no problem (notes and
warnings do not fail the check: a warning names a risk the store shows, not a setting that
cannot work), 1 otherwise.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from monitor.commands import utc_now
from monitor.commands.check_core_lab import check_core_labs
from monitor.config import ConfigError, Settings, secret
from monitor.render import Renderer
from notifiers import (
    AlertContent,
    MessageKind,
    Notification,
    NotifierError,
    PhiPolicy,
    notifier_for,
    parse_address,
)
from rules import load_protocol
from rules.model import Audience
from rules.protocol import Trial

__all__ = ["Report", "check", "register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "check-config", help="validate settings, store, protocols, templates and channel credentials"
    )
    parser.add_argument(
        "--send-test", action="store_true", help="send a test message to each channel address"
    )
    parser.set_defaults(handler=cmd_check_config)


@dataclass
class Report:
    """What the checks found: ``problems`` make the command fail; ``notes`` (information)
    and ``warnings`` (a risk to look at: exams that may go unmatched) do not."""

    ok: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _check_store(settings: Settings, engine: Engine, report: Report, now: datetime) -> list[Trial]:
    from monitor.commands.db import head_revision
    from monitor.store.database import current_revision

    url = _safe_url(settings.database.url)
    try:
        revision = current_revision(engine)
    except SQLAlchemyError as exc:
        report.problems.append(f"database {url}: cannot connect ({type(exc).__name__})")
        return []
    head = head_revision(engine)
    if revision is None:
        report.notes.append(f"database {url}: empty; `hiro-monitor run` (or `db upgrade`) creates the schema")
        return []
    if revision != head:
        report.notes.append(f"database {url}: revision {revision}, migrated to {head} on start")
    else:
        report.ok.append(f"database {url}: reachable, schema {revision}")
    tables = set(inspect(engine).get_table_names())
    if {"exams", "enrolment_mrns", "enrolments"} <= tables:
        _check_identifier_pools(settings, engine, report, now)
    if "trial_versions" not in tables:
        return []
    return _check_protocols(engine, report)


def _counted(counts: Mapping[str, int], limit: int = 8) -> str:
    """``EPI in 9,812 exams, OSH in 40 exams``: pools by how many exams carry them."""
    from monitor.store.exams.pools import pool_label

    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    shown = [f"{pool_label(name)[:40]} in {n:,} exam{'s' if n != 1 else ''}" for name, n in ranked[:limit]]
    if len(ranked) > limit:
        shown.append(f"{len(ranked) - limit} more")
    return ", ".join(shown)


def _check_identifier_pools(settings: Settings, engine: Engine, report: Report, now: datetime) -> None:
    """Warn when the stored exams show that the MRN can come from the wrong identifier pool.

    Reads the latest exams of the HL7 feed (``survey_pools``) and the exams of enrolled MRNs
    that matched nobody (``missed_enrolled``, as Feed health lists them). Names pools
    (assigning authorities) and counts only: never an identifier's value (PHI)."""
    from monitor.store.exams.pools import SURVEY_SIZE, missed_enrolled, pool_label, survey_pools

    hl7 = settings.hl7
    types = ", ".join(hl7.mrn_type_codes) or "any"
    with engine.connect() as conn:
        survey = survey_pools(conn, hl7.feed, hl7.mrn_type_codes, hl7.mrn_authorities)
        missed = missed_enrolled(conn, now)
    if not survey.exams and not missed.total:
        return
    latest = "the latest " if survey.exams >= SURVEY_SIZE else "the "
    seen = f"{latest}{survey.exams:,} exams of feed {hl7.feed}"
    if survey.mixed and not hl7.mrn_authorities:
        several = (
            f" ({survey.several:,} exam{' has' if survey.several == 1 else 's have'} more than one)"
            if survey.several
            else ""
        )
        found = f"; enrolled MRNs are found in {_counted(survey.enrolled)}" if survey.enrolled else ""
        best = max(survey.enrolled.items(), key=lambda item: (item[1], item[0]), default=None)
        choices = " or ".join(pool_label(name) for name in sorted(survey.pools))
        pool = pool_label(best[0]) if best else f"<the pool of your MRNs: {choices}>"
        report.warnings.append(
            f"MRN pools: [hl7] mrn_authorities is empty, and {seen} carry identifiers of type "
            f"{types} from {len(survey.pools)} pools: {_counted(survey.pools)}{several}{found}. "
            "The MRN is then the first identifier of that type, whatever its pool: another pool's "
            "number can be chosen and an enrolled subject's exam match nobody. Name the site's "
            f'own pool: [hl7] mrn_authorities = ["{pool}"]'
        )
    if survey.passed_over:
        report.warnings.append(
            f"MRN pools: in {seen}, an identifier of type {types} from a configured pool is not the "
            f"exam's MRN ({_counted(survey.passed_over)}). Exams stored before "
            "[hl7] mrn_authorities was set keep their MRN until their next message; if new exams "
            "show this, two configured pools come in one PID-3 and the first of them wins, "
            "whatever the order of mrn_authorities: list only the site's own pool"
        )
    if missed.total:
        zone = ZoneInfo(settings.site.timezone)
        paths = Counter(f"{m.chosen_pool} chosen over {m.found_pool}" for m in missed.exams)
        among = f" in the latest {len(missed.exams)}" if missed.total > len(missed.exams) else ""
        one = missed.total == 1
        report.warnings.append(
            f"MRN pools: {missed.total:,} exam{'' if one else 's'} starting "
            f"{missed.since.astimezone(zone):%Y-%m-%d} to {missed.until.astimezone(zone):%Y-%m-%d} "
            f"match{'es' if one else ''} no enrolment although another of {'its' if one else 'their'} "
            "identifiers is an enrolled MRN ("
            + ", ".join(f"{path}: {n}" for path, n in paths.most_common(3))
            + f"{among}); Feed health lists {'it' if one else 'them'}"
        )


def _check_protocols(engine: Engine, report: Report) -> list[Trial]:
    from monitor.store.registry.protocols import protocol_text, protocols_in_force

    trials: list[Trial] = []
    with engine.connect() as conn:
        for stored in protocols_in_force(conn):
            content = protocol_text(conn, stored.id)
            try:
                trials.append(load_protocol(content, stored.source or stored.trial))
            except Exception as exc:  # ProtocolError lists every problem with its key path
                report.problems.append(f"protocol {stored.trial} v{stored.version}: {exc}")
    if trials:
        report.ok.append(
            f"protocols: {len(trials)} in force ({', '.join(t.id for t in trials)}) load cleanly"
        )
    else:
        report.notes.append("protocols: none loaded yet (`hiro-monitor trials load FILE`)")
    return trials


def _sample(now: datetime, trial: str = "TEST", **changes: Any) -> AlertContent:
    """Synthetic content for rendering and test messages (an exam a day after ``now``): no patient data."""
    start = now.replace(microsecond=0) + timedelta(days=1)
    values: dict[str, Any] = {
        "trial": trial,
        "subject": "000",
        "trial_title": "hiro-monitor configuration check",
        "timepoint": "Test timepoint",
        "exam_label": "Test exam",
        "exam_start": start,
        "modality": "CT",
        "room": "TEST",
        "detail": "This is a test message from `hiro-monitor check-config --send-test`.",
        "next_step": "No action needed.",
        "window_start": start.date() - timedelta(days=3),
        "window_end": start.date() + timedelta(days=3),
        "parameters": ("Test parameter",),
        "preparation": ("Test preparation",),
    }
    values.update(changes)
    return AlertContent(**values)


def _check_templates(settings: Settings, trials: Iterable[Trial], report: Report, now: datetime) -> None:
    from notifiers.compose import html_body, render_sheet, text_body

    renderer = Renderer.from_settings(settings)
    sheets = {("default", "")}
    for trial in trials:
        for version in trial.versions:
            for exam in version.exams.values():
                if exam.instructions:
                    sheets.add((f"{trial.id} {exam.id}", exam.instructions))
    failed = 0
    for label, name in sorted(sheets):
        try:
            render_sheet(renderer, _sample(now, instructions_template=name), PhiPolicy.NONE)
        except NotifierError as exc:
            failed += 1
            report.problems.append(f"instruction sheet ({label}): {exc}")
    for kind in (MessageKind.ALERT, MessageKind.REMINDER, MessageKind.BOOKING):
        note = _notification("console:", now, kind)
        try:
            text_body(renderer, note, PhiPolicy.NONE)
            html_body(renderer, note, PhiPolicy.NONE)
        except NotifierError as exc:
            failed += 1
            report.problems.append(f"{kind.value} message templates: {exc}")
    if not failed:
        where = (
            f"site folder {settings.notifications.templates_dir} + packaged"
            if settings.notifications.templates_dir
            else "packaged"
        )
        report.ok.append(
            f"templates ({where}): {len(sheets)} instruction sheet(s) and the message bodies render"
        )


def _notification(address: str, now: datetime, kind: MessageKind = MessageKind.ALERT) -> Notification:
    audience = Audience.TECHNOLOGIST if kind is MessageKind.INSTRUCTIONS else Audience.COORDINATOR
    stamp = now.strftime("%Y%m%dT%H%M%S")
    return Notification(
        address=address,
        audience=audience,
        kind=kind,
        dedupe_key=f"check-config:{address}:{kind.value}:{stamp}",
        content=_sample(now),
    )


def _routing_addresses(trials: Iterable[Trial]) -> list[str]:
    found: dict[str, None] = {}
    for trial in trials:
        routing = trial.routing
        for address in routing.coordinators:
            found[address] = None
        for group in (*routing.technologists.values(), *routing.rooms.values()):
            for address in group:
                found[address] = None
    return list(found)


def _check_channels(settings: Settings, trials: Iterable[Trial], report: Report) -> None:
    addresses = _routing_addresses(trials)
    addresses += [a for a in settings.operations.channels if a not in addresses]  # [operations] channels
    used = set()
    for address in addresses:
        try:
            used.add(parse_address(address)[0])
        except ValueError as exc:
            report.problems.append(f"address {address!r}: {exc}")
    enabled = {"slack": settings.slack.enabled, "email": settings.email.enabled}
    for channel, on in enabled.items():
        if on and channel not in used:
            addresses.append(f"{channel}:check-config" if channel == "slack" else f"{channel}:")
    for name in settings.webhooks:
        if f"webhook:{name}" not in addresses:
            addresses.append(f"webhook:{name}")
    checked: dict[str, str] = {}  # channel (webhooks: address) -> first problem or ""
    for address in addresses:
        try:
            channel, _ = parse_address(address)
        except ValueError:
            continue
        key = address if channel == "webhook" else channel
        if key in checked:
            continue
        checked[key] = ""
        try:
            notifier_for(address, settings, renderer=Renderer.from_settings(settings)).close()
        except NotifierError as exc:
            checked[key] = str(exc)
            report.problems.append(f"channel {key}: {exc}")
    if settings.email.enabled and settings.email.username and not secret("HIRO_SMTP_PASSWORD"):
        report.problems.append(
            f"channel email: user {settings.email.username!r} but HIRO_SMTP_PASSWORD is not set"
        )
    report.addresses = [a for a in addresses if not a.endswith(":check-config") and a != "email:"]
    fine = sorted(k for k, problem in checked.items() if not problem)
    if fine:
        report.ok.append(f"channels with settings and secrets: {', '.join(fine)}")


def _without_password(url: str) -> str:
    """``url`` with the password of its user part (if any) masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _pacs_label(settings: Settings) -> str:
    """``pacs https://pacs/dicom-web (DICOMweb)`` or ``pacs PACS@host:104 (DIMSE, as HIROMONITOR)``."""
    pacs = settings.pacs
    if pacs.protocol == "dimse":
        tls = " over TLS" if pacs.tls else ""
        host = pacs.host or "(no host!)"
        return f"pacs {pacs.called_ae}@{host}:{pacs.port} (DIMSE{tls}, as {pacs.calling_ae})"
    return f"pacs {_without_password(pacs.dicomweb_url) or '(no dicomweb_url!)'} (DICOMweb)"


def _check_pacs(settings: Settings, trials: Iterable[Trial], report: Report) -> None:
    """With ``[pacs] enabled``: its address and secrets are set, and it answers one ping (no
    patient's data asked for; the error names the kind of failure, never a query)."""
    pacs = settings.pacs
    if not pacs.enabled:
        return
    if pacs.protocol == "dimse":
        _check_sequences(trials, report)
    missing = []
    if pacs.protocol == "dimse" and not pacs.host:
        missing.append("pacs: enabled, protocol = dimse, but host is empty")
    if pacs.protocol == "dicomweb":
        if not pacs.dicomweb_url:
            missing.append("pacs: enabled but dicomweb_url is empty")
        if pacs.auth == "basic" and not pacs.username:
            missing.append("pacs: auth = basic but username is empty")
        if pacs.auth == "basic" and not secret("HIRO_PACS_PASSWORD"):
            missing.append("pacs: auth = basic but HIRO_PACS_PASSWORD is not set")
        if pacs.auth == "bearer" and not secret("HIRO_PACS_TOKEN"):
            missing.append("pacs: auth = bearer but HIRO_PACS_TOKEN is not set")
    if missing:  # the PACS is not asked: the answer would only repeat these
        report.problems.extend(missing)
        return
    from monitor.pacs.reader import PacsError  # DICOM libraries only when the PACS is on
    from monitor.pacs.readers import pacs_reader

    label = _pacs_label(settings)
    try:
        pacs_reader(pacs).ping()
    except (PacsError, ConfigError) as exc:
        report.problems.append(f"{label}: {exc}")
        return
    except OSError as exc:  # a TLS file requests cannot use (ca_file), before any request
        report.problems.append(f"{label}: cannot be contacted ({exc})")
        return
    if pacs.protocol == "dimse":
        report.ok.append(f"{label}: accepts our AE titles and answers a C-ECHO")
    else:
        who = "" if pacs.auth == "none" else f" with our {pacs.auth} credentials"
        report.ok.append(f"{label}: answers a QIDO-RS study search{who}")


def _check_sequences(trials: Iterable[Trial], report: Report) -> None:
    """Over DIMSE: the acquisition rules in force that read attributes inside a sequence."""
    from monitor.pacs.reader import SEQUENCE_ATTRIBUTES

    needs: dict[str, set[str]] = {}  # "TRIAL exam" -> attributes
    for trial in trials:
        for version in trial.versions:
            for exam in version.exams.values():
                if exam.acquisition is not None:
                    nested = {a for a in exam.acquisition.attributes() if a in SEQUENCE_ATTRIBUTES}
                    if nested:
                        needs.setdefault(f"{trial.id} {exam.id}", set()).update(nested)
    if needs:
        names = sorted({name for nested in needs.values() for name in nested})
        sequences = sorted({SEQUENCE_ATTRIBUTES[name] for name in names})
        report.warnings.append(
            f"pacs: protocol = dimse, and the acquisition rules of {', '.join(sorted(needs))} read "
            f"{', '.join(names)}, found only inside {', '.join(sequences)}, which many PACS leave "
            "out of C-FIND answers (Orthanc returns it): the rules then fail for want of the value. "
            'Check that this PACS returns it, or use protocol = "dicomweb"'
        )


def _plan(settings: Settings, report: Report) -> None:
    mllp = settings.mllp
    if mllp.enabled:
        tls = "TLS" if mllp.tls_certificate else "plain TCP"
        report.plan.append(
            f"MLLP listener on {mllp.host}:{mllp.port} ({tls}, ACK {mllp.ack_mode}, feed {settings.hl7.feed})"
        )
    else:
        report.plan.append("MLLP listener: off")
    fhir = settings.fhir
    if fhir.enabled:
        report.plan.append(
            f"FHIR poll of {fhir.base_url or '(no base_url!)'}: {fhir.mode}, "
            f"every {fhir.poll_interval_seconds} s, auth {fhir.auth}"
        )
    else:
        report.plan.append("FHIR poll: off")
    pacs = settings.pacs
    if pacs.enabled:
        where = _pacs_label(settings).removeprefix("pacs ")
        report.plan.append(f"PACS poll of {where}: every {pacs.poll_interval_seconds} s")
    else:
        report.plan.append("PACS poll: off")
    channels = [
        name for name, on in (("slack", settings.slack.enabled), ("email", settings.email.enabled)) if on
    ]
    channels += [f"webhook:{name}" for name in settings.webhooks]
    report.plan.append(f"channels: console{''.join(', ' + c for c in channels)}")
    for section in ("scheduler", "dispatch", "web"):  # sections other issues add
        value = getattr(settings, section, None)
        if value is not None and hasattr(value, "enabled"):
            where = f" on {value.host}:{value.port}" if hasattr(value, "port") and value.enabled else ""
            report.plan.append(f"{section}: {'on' if value.enabled else 'off'}{where}")
    report.plan.append(f"logging: {settings.logging.format}, level {settings.logging.level}")


def _check_files(settings: Settings, report: Report) -> None:
    """Files the settings name must be readable by this user (TLS, SMART key, CA bundle)."""
    named = []
    if settings.mllp.enabled and (settings.mllp.tls_certificate or settings.mllp.tls_private_key):
        named += [("mllp.tls_certificate", settings.mllp.tls_certificate)]
        named += [("mllp.tls_private_key", settings.mllp.tls_private_key)]
    if settings.mllp.enabled and settings.mllp.tls_client_ca:
        named.append(("mllp.tls_client_ca", settings.mllp.tls_client_ca))
    if settings.fhir.enabled and settings.fhir.auth == "smart_backend":
        named.append(("fhir.private_key_file", settings.fhir.private_key_file))
    if settings.email.enabled and settings.email.ca_file:
        named.append(("email.ca_file", settings.email.ca_file))
    if settings.pacs.enabled:
        pacs = settings.pacs
        for key in ("ca_file", "certificate_file", "private_key_file"):
            if getattr(pacs, key):
                named.append((f"pacs.{key}", getattr(pacs, key)))
    if settings.notifications.templates_dir:
        folder = Path(settings.notifications.templates_dir)
        if not folder.is_dir():
            report.problems.append(f"notifications.templates_dir: {folder} is not a folder")
    for key, name in named:
        if not name:
            report.problems.append(f"{key}: empty")
            continue
        try:
            Path(name).read_bytes()
        except OSError as exc:
            report.problems.append(f"{key}: cannot read {name} ({exc.strerror})")
    mllp = settings.mllp
    tls = mllp.tls_certificate or mllp.tls_private_key or mllp.tls_client_ca or mllp.tls_allowed_clients
    if mllp.enabled and tls and not report.problems:
        from monitor.feeds.mllp.server import build_tls_context

        try:  # readable is not enough: a certificate and its own key, a CA bundle, and they fit
            build_tls_context(mllp)
        except ConfigError as exc:
            report.problems.append(str(exc))


def check(settings: Settings, engine: Engine, now: datetime) -> Report:
    """Run every check (no message is sent, nothing in the store changes; an enabled PACS is
    pinged); samples are dated from ``now``."""
    report = Report(ok=["settings: valid"])
    if settings.fhir.enabled and not settings.fhir.base_url:
        report.problems.append("fhir: enabled but base_url is empty")
    if settings.fhir.enabled and settings.fhir.auth == "bearer" and not secret("HIRO_FHIR_TOKEN"):
        report.problems.append("fhir: auth = bearer but HIRO_FHIR_TOKEN is not set")
    _check_files(settings, report)
    trials = _check_store(settings, engine, report, now)
    _check_templates(settings, trials, report, now)
    _check_channels(settings, trials, report)
    _check_pacs(settings, trials, report)
    check_core_labs(settings, trials, report)
    _plan(settings, report)
    return report


def send_tests(settings: Settings, addresses: Iterable[str], report: Report, now: datetime) -> None:
    """Send a test message (no patient data) to each address; failures become problems."""
    for address in addresses:
        try:
            with notifier_for(address, settings, renderer=Renderer.from_settings(settings)) as notifier:
                delivery = notifier.send(_notification(address, now))
            report.ok.append(f"test message to {address}: sent ({delivery.destination or delivery.channel})")
        except NotifierError as exc:
            report.problems.append(f"test message to {address}: {exc}")


def cmd_check_config(settings: Settings, args: argparse.Namespace) -> int:
    from monitor.store.database import make_engine

    now = utc_now(args)
    url = make_url(settings.database.url)
    missing_file = (
        url.get_backend_name() == "sqlite"
        and bool(url.database)
        and url.database != ":memory:"
        and not Path(str(url.database)).expanduser().exists()
    )
    # A SQLite file that does not exist yet is not created just to be looked at.
    engine = make_engine("sqlite://" if missing_file else settings.database.url)
    try:
        report = check(settings, engine, now)
    finally:
        engine.dispose()
    if args.send_test:
        send_tests(settings, report.addresses or ["console:"], report, now)
    for line in report.ok:
        print(f"ok       {line}")
    for line in report.notes:
        print(f"note     {line}")
    for line in report.warnings:
        print(f"WARNING  {line}")
    for line in report.problems:
        print(f"PROBLEM  {line}")
    print("hiro-monitor run would start:")
    for line in report.plan:
        print(f"  {line}")
    warned = f", {len(report.warnings)} warning(s)" if report.warnings else ""
    print(f"{len(report.problems)} problem(s){warned}" if report.problems else f"configuration OK{warned}")
    return 1 if report.problems else 0
