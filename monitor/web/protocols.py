"""Protocols in the dashboard (admins): upload a trial's TOML file, see what is wrong with
it (each problem at its key path, with the fix), or see what it would do before loading it.

Checking stores nothing. For a valid file the page previews the schedule it produces for a
sample subject (every required anchor today, the first arm) and, when the trial already
has a version in force, what differs from it and what it changes for the enrolled
subjects: the visits whose window moves, appears or goes away, and the enrolments it no
longer accepts. Loading is a second POST of the same text (CSRF-checked), stored as the
trial's next version, audited with the version before and after, and followed by the
evaluation of the trial's enrolments, whose result the page shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import Response

from monitor.evaluation import Evaluator
from monitor.store.accounts import Role, Session, record_audit
from monitor.store.database import autocommit
from monitor.store.registry.enrolments import check_entry, enrolment_ids_of_trials, list_enrolments
from monitor.store.registry.protocols import describe_changes, protocols_in_force, store_protocol
from monitor.store.registry.records import load_enrolments, load_exams
from monitor.web.context import Web, require, web_of
from monitor.web.security import client_address, require_csrf
from rules import Enrolment, ProtocolError, Trial, evaluate, load_protocol
from rules.model import Occurrence

router = APIRouter(include_in_schema=False)

MAX_BYTES = 1_000_000
SHOWN = 30  # visits of the sample schedule, and moved visits, listed at most


@dataclass(frozen=True, slots=True)
class Moved:
    subject: str
    label: str
    before: str  # "2026-01-05 to 2026-01-19", or "" when the visit is new
    after: str  # or "" when the visit goes away


@router.get("/protocols")
def protocols(request: Request, session: Annotated[Session, Depends(require(Role.ADMIN))]) -> Response:
    web = web_of(request)
    with autocommit(web.engine) as conn:
        in_force = protocols_in_force(conn)
        record_audit(
            conn, web.clock(), session.user.username, "view", "protocols", "", client_address(request)
        )
    return web.page(request, session, "protocols.html", {"in_force": in_force})


async def _text(file: UploadFile) -> str:
    raw = await file.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise HTTPException(status_code=422, detail=f"the file is larger than {MAX_BYTES // 1_000_000} MB")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HTTPException(status_code=422, detail="the file is not UTF-8 text") from None


@router.post("/protocols/check")
async def check(
    request: Request,
    session: Annotated[Session, Depends(require(Role.ADMIN))],
    file: Annotated[UploadFile, File()],
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    require_csrf(session, csrf_token)
    web = web_of(request)
    text = await _text(file)
    name = (file.filename or "protocol.toml")[:200]
    try:
        trial = load_protocol(text, name)
    except ProtocolError as error:
        return _problems(web, request, session, name, error)
    return web.page(request, session, "protocol_preview.html", _preview(web, trial, text, name))


def _problems(web: Web, request: Request, session: Session, name: str, error: ProtocolError) -> Response:
    """Every problem of the file, each at its key path with the fix; nothing was stored."""
    context = {"name": name, "problems": [str(problem) for problem in error.problems]}
    return web.page(request, session, "protocol_problems.html", context, 422)


def _preview(web: Web, trial: Trial, text: str, name: str) -> dict[str, Any]:
    now = web.clock()
    zone = ZoneInfo(web.settings.site.timezone)
    today = web.site_date(now)
    with web.engine.connect() as conn:
        current = web.catalogue.trials(conn, [trial.id]).get(trial.id)
        enrolled = [view.entry() for view in list_enrolments(conn, trial=trial.id)]
        moved: list[Moved] = []
        if current is not None:
            ids = enrolment_ids_of_trials(conn, [trial.id])
            enrolments = load_enrolments(conn, ids)
            exams = load_exams(conn, {mrn for e in enrolments for mrn in e.mrns}) if enrolments else []
            moved = _moved(current, trial, enrolments, exams, now, zone)
    return {
        "trial": trial,
        "text": text,
        "name": name,
        "sample": _sample_schedule(trial, today, now, zone)[:SHOWN],
        "changes": describe_changes(current, trial) if current is not None else [],
        "new_trial": current is None,
        "moved": moved[:SHOWN],
        "moved_count": len(moved),
        "moved_subjects": len({m.subject for m in moved}),
        "unfit": [f"{e.subject}: {'; '.join(p)}" for e in enrolled if (p := check_entry(trial, e))],
    }


def _sample_schedule(trial: Trial, today: date, now: datetime, zone: ZoneInfo) -> list[Occurrence]:
    sample = Enrolment(
        trial=trial.id,
        subject="sample",
        mrns=(),
        anchors=dict.fromkeys(trial.required_anchors, today),
        arm=trial.arms[0] if trial.arms else None,
    )
    return list(evaluate([trial], [sample], [], now, site_zone=zone, horizon_days=730).occurrences)


def _moved(
    old: Trial, new: Trial, enrolments: list[Enrolment], exams: list[Any], now: datetime, zone: ZoneInfo
) -> list[Moved]:
    """Every enrolled subject's visit whose window differs between ``old`` and ``new``. A
    visit is the same visit under both when its timepoint and number are (its label may
    change with it: "Week 8" becoming "Week 9")."""

    def visits(trial: Trial) -> dict[str, Occurrence]:
        return {o.key: o for o in evaluate([trial], enrolments, exams, now, site_zone=zone).occurrences}

    def span(o: Occurrence | None) -> str:
        return f"{o.window_start} to {o.window_end}" if o is not None else ""

    before, after = visits(old), visits(new)
    found = []
    for key in before.keys() | after.keys():
        was, now_ = before.get(key), after.get(key)
        if span(was) != span(now_):
            either = was or now_
            assert either is not None
            label = either.label
            if was is not None and now_ is not None and was.label != now_.label:
                label = f"{was.label} (now {now_.label})"
            order = min(o.window_start for o in (was, now_) if o is not None)
            found.append((either.subject, order, Moved(either.subject, label, span(was), span(now_))))
    return [moved for _, _, moved in sorted(found, key=lambda item: (item[0], item[1]))]


@router.post("/protocols/load")
def load(
    request: Request,
    session: Annotated[Session, Depends(require(Role.ADMIN))],
    text: Annotated[str, Form(max_length=MAX_BYTES)],
    name: Annotated[str, Form(max_length=200)] = "protocol.toml",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    require_csrf(session, csrf_token)
    web = web_of(request)
    try:
        trial = load_protocol(text, name)
    except ProtocolError as error:
        return _problems(web, request, session, name, error)
    now = web.clock()
    with web.engine.begin() as conn:
        stored = store_protocol(conn, trial, text, f"dashboard: {name}", now)
        record_audit(
            conn, now, session.user.username, "protocol.load", "trial", trial.id, client_address(request),
            detail=name, before=f"version {stored.previous}" if stored.previous else "none",
            after=f"version {stored.version}" + ("" if stored.stored else " (unchanged)"),
        )  # fmt: skip
        ids = enrolment_ids_of_trials(conn, [trial.id]) if stored.stored else []
    summary = Evaluator(web.engine, web.settings).evaluate_enrolments(ids, now) if ids else None
    what = (f"{trial.id}: version {stored.version} loaded" if stored.stored else f"{trial.id}: unchanged") + (
        f" (replaces version {stored.previous})" if stored.stored and stored.previous else ""
    )
    context: dict[str, Any] = {
        "trial": trial,
        "what": what,
        "changes": stored.changes,
        "by_kind": summary.by_kind() if summary else {},
        "outbox": summary.outbox if summary else None,
        "judged": summary.enrolments if summary else 0,
    }
    return web.page(request, session, "protocol_loaded.html", context)
