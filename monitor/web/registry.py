"""The registry in the dashboard: enrol a subject, change anchors, arm, status or MRNs, set
off-study, import a CSV; then see at once what the change did to the schedule.

Admins and the trial's coordinators may change it (viewers read the trial page only).
Every change is a POST with the CSRF token, checked as ``hiro-monitor enroll`` checks it
(the protocol's anchors and arms, MRNs held by another subject; a CSV is all or nothing,
each bad line named), audited with the enrolment before and after (without MRNs: the trail
says how many), and followed by the evaluation of the subjects it touched, whose result
the page shows before the coordinator leaves: findings opened and resolved by kind, alerts
planned and withdrawn.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import Response
from sqlalchemy import Connection

from monitor.evaluation import EvaluationSummary, Evaluator
from monitor.store.accounts import Role, Session, record_audit
from monitor.store.dashboard import visible_trial
from monitor.store.database import autocommit
from monitor.store.registry.enrolments import (
    EnrolmentEntry,
    EnrolmentView,
    check_entries,
    find_entry,
    parse_mrns,
    save_entries,
)
from monitor.store.registry.importing import ImportRejected, import_enrolments, read_enrolment_csv
from monitor.web.context import Web, require, web_of
from monitor.web.formats import parse_day
from monitor.web.rescheduling import SubjectSchedule, subject_schedule
from monitor.web.security import client_address, require_csrf
from rules.model import EnrolmentStatus
from rules.protocol import Trial

router = APIRouter(include_in_schema=False)

EDITORS = (Role.ADMIN, Role.COORDINATOR)
READERS = (*EDITORS, Role.VIEWER)  # a viewer sees the form read-only, without MRNs
MAX_CSV_BYTES = 2_000_000


def _trial(web: Web, session: Session, trial_id: str) -> Trial:
    """The trial's protocol, or 404 when it is not the account's or has none loaded."""
    if not visible_trial(session.user, trial_id):
        raise HTTPException(status_code=404)
    with autocommit(web.engine) as conn:
        found = web.catalogue.trials(conn, [trial_id]).get(trial_id)
    if found is None:
        raise HTTPException(status_code=404)
    return found


def _form(web: Web, request: Request, session: Session, trial: Trial, entry: EnrolmentEntry | None,
          problems: list[str], status: int = 200, *, new: bool,
          schedule: SubjectSchedule | None = None) -> Response:  # fmt: skip
    context = {
        "schedule": schedule,
        "trial": trial,
        "entry": entry,
        "new": new,
        "problems": problems,
        "statuses": [s.value for s in EnrolmentStatus],
        "anchor_names": [*trial.required_anchors, *trial.event_anchors],
        "mrn_pools": web.settings.hl7.mrn_authorities,  # the pools the HL7 feed takes MRNs from
    }
    return web.page(request, session, "enrolment.html", context, status)


@router.get("/trials/{trial_id}/enrol")
def new_subject(
    request: Request, trial_id: str, session: Annotated[Session, Depends(require(*EDITORS))]
) -> Response:
    web = web_of(request)
    return _form(web, request, session, _trial(web, session, trial_id), None, [], new=True)


@router.get("/trials/{trial_id}/subjects/{subject}")
def subject_form(
    request: Request, trial_id: str, subject: str, session: Annotated[Session, Depends(require(*READERS))]
) -> Response:
    web = web_of(request)
    trial = _trial(web, session, trial_id)
    found, schedule = _subject_viewed(web, request, session, trial, subject, "enrolment")
    return _form(web, request, session, trial, found.entry(), [], new=False, schedule=schedule)


def _subject_viewed(
    web: Web, request: Request, session: Session, trial: Trial, subject: str, seen_as: str
) -> tuple[EnrolmentView, SubjectSchedule]:
    """The enrolment (404 when absent) and its schedule, the view audited as ``seen_as``."""

    def build(conn: Connection) -> tuple[EnrolmentView, SubjectSchedule] | None:
        found = find_entry(conn, trial.id, subject)
        return (
            None
            if found is None
            else (found, subject_schedule(conn, web.settings, trial, found.id, web.clock()))
        )

    with autocommit(web.engine) as conn:
        # The same for every account that may open the trial (checked by the caller): kept
        # while no exam, finding, enrolment or protocol changed, at most page_cache_seconds.
        built = web.cache.part(conn, ("subject", trial.id, subject, web.site_date()), build)
        if built is None:
            raise HTTPException(status_code=404)
        record_audit(conn, web.clock(), session.user.username, "view", seen_as,
                     f"{trial.id}/{subject}", client_address(request))  # fmt: skip
    return built


@router.get("/trials/{trial_id}/subjects/{subject}/schedule")
def printable_schedule(
    request: Request, trial_id: str, subject: str, session: Annotated[Session, Depends(require(*READERS))]
) -> Response:
    """The subject's visits for the schedulers: windows, the days still open for booking and
    the latest safe day (REDCap's and OnCore's projected dates, with the site's closures)."""
    web = web_of(request)
    trial = _trial(web, session, trial_id)
    found, schedule = _subject_viewed(web, request, session, trial, subject, "schedule")
    site = web.settings.site
    closed = ", ".join([day.title() for day in site.closed_weekdays] + [str(day) for day in site.closed_days])
    context = {"trial": trial, "entry": found.entry(), "schedule": schedule, "closed": closed}
    context["today"] = web.site_date()
    return web.page(request, session, "subject_schedule.html", context)


async def _entry_from(request: Request, trial: Trial, subject: str) -> tuple[EnrolmentEntry, list[str]]:
    """The entry the form describes, and what could not be read of it."""
    form = await request.form()

    def text(name: str, limit: int = 200) -> str:
        value = form.get(name, "")
        return value.strip()[:limit] if isinstance(value, str) else ""

    problems: list[str] = []

    def day(name: str, label: str) -> date | None:
        raw = text(name, 20)
        found = parse_day(raw)
        if raw and found is None:
            problems.append(f"{label}: {raw!r} is not a date (YYYY-MM-DD)")
        return found

    anchors = {name: found for name in trial.anchors if (found := day(f"anchor_{name}", name)) is not None}
    try:
        status = EnrolmentStatus(text("status", 20) or EnrolmentStatus.ON_STUDY.value)
    except ValueError:
        problems.append("choose a status")
        status = EnrolmentStatus.ON_STUDY
    try:
        mrns, pools = parse_mrns(text("mrns", 2000).splitlines())
    except ValueError as error:
        problems.append(f"MRNs: {error}")
        mrns, pools = (), {}
    entry = EnrolmentEntry(
        trial=trial.id,
        subject=subject.strip(),
        mrns=mrns,
        pools=pools,
        anchors=anchors,
        arm=text("arm", 64) or None,
        status=status,
        off_study=day("off_study", "off-study date"),
        monitored_from=day("monitoring_start", "monitoring start"),
    )
    return entry, problems


def _described(entry: EnrolmentEntry | None) -> str:
    """An enrolment for the audit trail: everything but the MRNs, which it only counts."""
    if entry is None:
        return "none"
    anchors = ", ".join(f"{name} {day}" for name, day in sorted(entry.anchors.items()))
    return (
        f"arm {entry.arm or '-'}; {entry.status.value}; off study {entry.off_study or '-'}; "
        f"anchors {anchors or '-'}; monitored from {entry.monitored_from or '-'}; {len(entry.mrns)} MRN(s)"
    )


def _save_one(request: Request, session: Session, web: Web, trial: Trial, entry: EnrolmentEntry,
              problems: list[str], *, new: bool) -> Response:  # fmt: skip
    now = web.clock()
    today = web.site_date(now)
    with web.engine.begin() as conn:
        existing = find_entry(conn, trial.id, entry.subject)
        if new and existing is not None:
            problems.append(f"{entry.subject} is already enrolled in {trial.id}: change it from its own page")
        if not new and existing is None:
            raise HTTPException(status_code=404)
        problems += check_entries(conn, {trial.id: trial}, [entry])[0]
        if problems:
            return _form(web, request, session, trial, entry, problems, 422, new=new)
        before = existing.entry() if existing is not None else None
        if before is not None and entry.monitored_from is None:
            entry = replace(entry, monitored_from=before.monitored_from)
        saved = save_entries(conn, [entry], now, today=today)
        stored = find_entry(conn, trial.id, entry.subject)
        record_audit(
            conn, now, session.user.username, "enrolment.add" if new else "enrolment.update", "enrolment",
            f"{trial.id}/{entry.subject}", client_address(request),
            before=_described(before), after=_described(stored.entry() if stored else None),
        )  # fmt: skip
    summary = Evaluator(web.engine, web.settings).evaluate_enrolments(saved.changed_ids, now)
    what = f"{'Enrolled' if new else 'Saved'} {trial.id} {entry.subject}"
    return _changes(
        web, request, session, trial, what if saved.changed_ids else what + " (no change)", summary
    )


def _changes(web: Web, request: Request, session: Session, trial: Trial, what: str,
             summary: EvaluationSummary) -> Response:  # fmt: skip
    context = {"trial": trial, "what": what, "by_kind": summary.by_kind(), "outbox": summary.outbox,
               "judged": summary.enrolments}  # fmt: skip
    return web.page(request, session, "enrolment_saved.html", context)


async def _checked_form(request: Request, session: Session) -> Any:
    """The posted form, once its CSRF token is the session's (else 403)."""
    form = await request.form()
    token = form.get("csrf_token", "")
    require_csrf(session, token if isinstance(token, str) else "")
    return form


@router.post("/trials/{trial_id}/subjects")
async def add_subject(
    request: Request, trial_id: str, session: Annotated[Session, Depends(require(*EDITORS))]
) -> Response:
    form = await _checked_form(request, session)
    web = web_of(request)
    trial = _trial(web, session, trial_id)
    subject = form.get("subject", "")
    entry, problems = await _entry_from(request, trial, subject[:64] if isinstance(subject, str) else "")
    return _save_one(request, session, web, trial, entry, problems, new=True)


@router.post("/trials/{trial_id}/subjects/{subject}")
async def update_subject(
    request: Request, trial_id: str, subject: str, session: Annotated[Session, Depends(require(*EDITORS))]
) -> Response:
    await _checked_form(request, session)
    web = web_of(request)
    trial = _trial(web, session, trial_id)
    entry, problems = await _entry_from(request, trial, subject)
    return _save_one(request, session, web, trial, entry, problems, new=False)


@router.post("/trials/{trial_id}/import")
async def import_csv(
    request: Request,
    trial_id: str,
    session: Annotated[Session, Depends(require(*EDITORS))],
    file: Annotated[UploadFile, File()],
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """The subjects of a CSV file (``enroll import``'s columns), every row of this trial;
    all or nothing, each problem with its line."""
    require_csrf(session, csrf_token)
    web = web_of(request)
    trial = _trial(web, session, trial_id)
    raw = await file.read(MAX_CSV_BYTES + 1)
    problems: list[str] = []
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text, problems = "", ["the file is not UTF-8 text (save it as CSV UTF-8)"]
    if len(raw) > MAX_CSV_BYTES:
        problems = [f"the file is larger than {MAX_CSV_BYTES // 1_000_000} MB"]
    if not problems:
        rows, _ = read_enrolment_csv(text)
        problems = [f"line {line}: trial {entry.trial!r} is not {trial.id}" for line, entry in rows
                    if entry.trial and entry.trial != trial.id]  # fmt: skip
    now = web.clock()
    if not problems:
        today = web.site_date(now)
        try:
            with web.engine.begin() as conn:
                saved = import_enrolments(conn, text, now, web.catalogue, today=today)
                record_audit(
                    conn, now, session.user.username, "enrolment.import", "trial", trial.id,
                    client_address(request), detail=file.filename or "",
                    after=f"{saved.added} added, {saved.updated} updated, {saved.unchanged} unchanged",
                )  # fmt: skip
        except ImportRejected as rejected:
            problems = [str(problem) for problem in rejected.problems]
    if problems:
        context: dict[str, Any] = {
            "trial": trial,
            "problems": problems,
            "filename": file.filename or "the file",
        }
        return web.page(request, session, "enrolment_import_rejected.html", context, 422)
    summary = Evaluator(web.engine, web.settings).evaluate_enrolments(saved.changed_ids, now)
    counts = f"{saved.added} added, {saved.updated} updated, {saved.unchanged} unchanged"
    what = f"Imported {file.filename or 'the file'}: {counts}"
    return _changes(web, request, session, trial, what, summary)
