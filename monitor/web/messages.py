"""The message browser: search stored messages, read one field by field, reprocess rejected
ones. Admins and the integration role only (``User.reads_messages``): a message is PHI,
so every message read and every search by MRN is audited, and reprocessing is a CSRF-checked
POST audited in its own transaction (:meth:`monitor.feeds.hl7.intake.Intake.reprocess`).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response

from monitor.evaluation import evaluate_for_exams
from monitor.feeds.hl7.intake import Intake, Reprocessed
from monitor.feeds.hl7.mapping import MappingSettings
from monitor.feeds.hl7.structure import ack_sent, lay_out, validate_structure
from monitor.store.accounts import Role, Session, record_audit
from monitor.store.database import autocommit
from monitor.store.message_browser import (
    OUTCOMES,
    MessageFilter,
    PageMark,
    exams_touched,
    rejected_since,
    reprocessing_of,
    search_messages,
)
from monitor.store.messages import raw_message
from monitor.web.context import Web, require, web_of
from monitor.web.security import ObjectId, client_address, require_csrf

__all__ = ["READERS", "router"]

router = APIRouter(include_in_schema=False)
READERS = (Role.ADMIN, Role.INTEGRATION)
Text = Annotated[str, Query(max_length=200)]


def _day(value: str, zone: ZoneInfo, days_after: int = 0) -> datetime | None:
    if not value:
        return None
    try:
        day = date.fromisoformat(value) + timedelta(days=days_after)
    except ValueError:
        raise HTTPException(status_code=400, detail="a day is written YYYY-MM-DD") from None
    return datetime.combine(day, time(), tzinfo=zone)


_FIELDS = ("control_id", "accession", "appointment", "mrn", "type", "outcome", "feed", "from", "to")


@router.get("/messages")
def messages_page(
    request: Request,
    session: Annotated[Session, Depends(require(*READERS))],
    control_id: Text = "",
    accession: Text = "",
    appointment: Text = "",
    mrn: Text = "",
    type: Text = "",
    outcome: Annotated[str, Query(max_length=20)] = "",
    feed: Text = "",
    since: Annotated[str, Query(alias="from", max_length=10)] = "",
    until: Annotated[str, Query(alias="to", max_length=10)] = "",
    after: Annotated[str, Query(max_length=80)] = "",
    reprocessed: Annotated[int, Query(ge=-1)] = -1,
) -> Response:
    """The browser; links from elsewhere (Feed health's rejected messages) land here."""
    if mrn:  # a URL ends up in proxy logs and browser history
        raise HTTPException(status_code=400, detail="an MRN is never sent in a URL: search with the form")
    form = {"control_id": control_id, "accession": accession, "appointment": appointment, "mrn": "",
            "type": type, "outcome": outcome, "feed": feed, "from": since, "to": until}  # fmt: skip
    return _search(request, session, form, after, reprocessed)


@router.post("/messages")
async def messages_search(
    request: Request, session: Annotated[Session, Depends(require(*READERS))]
) -> Response:
    """The search form (POST: an MRN stays out of URLs, proxy logs and browser history)."""
    data = await request.form()
    require_csrf(session, str(data.get("csrf_token", "")))
    form = {name: str(data.get(name, ""))[:200] for name in _FIELDS}
    return _search(request, session, form, str(data.get("after", ""))[:80], -1)


def _search(
    request: Request, session: Session, form: dict[str, str], after: str, reprocessed: int
) -> Response:
    web = web_of(request)
    zone = ZoneInfo(web.settings.site.timezone)
    feed = form["feed"].strip()
    if feed and feed not in web.settings.feed_names():
        raise HTTPException(status_code=400, detail=f"no feed {feed!r} here")
    try:
        wanted = MessageFilter(
            control_id=form["control_id"].strip(), accession=form["accession"].strip(),
            appointment=form["appointment"].strip(), mrn=form["mrn"].strip(),
            message_type=form["type"].strip(), outcome=form["outcome"], feed=feed,
            since=_day(form["from"], zone), until=_day(form["to"], zone, days_after=1),
        )  # fmt: skip
        mark = PageMark.parse(after) if after else None
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    with autocommit(web.engine) as conn:
        page = search_messages(conn, wanted, mark)
        if wanted.by_patient:
            record_audit(
                conn, web.clock(), session.user.username, "view", "messages", "", client_address(request),
                f"search by MRN: {len(page.rows)} message(s)",
            )  # fmt: skip
    # The next page is asked for with the same form (POST), the mark added.
    older = None if page.next is None else {**form, "after": page.next.text()}
    context = {
        "page": page, "form": form, "outcomes": OUTCOMES, "older": older, "first_page": mark is None,
        "reprocessed": reprocessed, "feed_name": web.settings.hl7.feed, "feeds": web.settings.feed_names(),
    }  # fmt: skip
    return web.page(request, session, "messages.html", context)


@router.get("/feeds/messages/{message_id}")
def message(
    request: Request,
    message_id: ObjectId,
    session: Annotated[Session, Depends(require(*READERS))],
    validate: bool = False,
    note: Annotated[str, Query(max_length=300)] = "",
) -> Response:
    """A stored message (PHI), one segment per line with its fields named; audited."""
    web = web_of(request)
    with autocommit(web.engine) as conn:
        found = raw_message(conn, message_id)
        if found is None:
            raise HTTPException(status_code=404)
        record_audit(
            conn, web.clock(), session.user.username, "view", "message", message_id, client_address(request)
        )
        touched = exams_touched(conn, message_id)
        chain = reprocessing_of(conn, message_id)
    payload = bytes(found.payload) if found.payload is not None else None
    version, segments = lay_out(payload) if payload is not None else ("", [])
    context: dict[str, Any] = {
        "message": found, "version": version, "segments": segments, "touched": touched, "chain": chain,
        "problems": validate_structure(payload) if validate and payload is not None else None,
        "reprocessable": found.outcome == "rejected" and chain.settled is None and payload is not None
        and found.feed == web.settings.hl7.feed,
        "note": note,
        "ack": ack_sent(payload, found.ack_code, found.error_code, found.error, found.received_at)
        if payload is not None else "",
    }  # fmt: skip
    return web.page(request, session, "message.html", context)


def _intake(web: Web) -> Intake:
    return Intake(web.engine, MappingSettings.from_settings(web.settings.hl7), clock=web.clock)


def _after(web: Web, results: list[Reprocessed]) -> None:
    """Re-evaluate the exams the attempts touched (as the feed's writer does after a batch)."""
    touched = sorted({exam_id for result in results for exam_id in result.exam_ids})
    if touched:
        evaluate_for_exams(web.engine, web.settings, touched, web.clock())


@router.post("/feeds/messages/{message_id}/reprocess")
def reprocess_one(
    request: Request,
    message_id: ObjectId,
    session: Annotated[Session, Depends(require(*READERS))],
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    require_csrf(session, csrf_token)
    web = web_of(request)
    result = _intake(web).reprocess(message_id, by=session.user.username, client=client_address(request))
    _after(web, [result])
    if result.done:
        note = f"Reprocessed as message {result.attempt}: {result.outcome}"
        note += f" ({result.reason})." if result.reason else "."
        target = result.attempt
    else:
        note, target = f"Not reprocessed: {result.reason}.", result.original
    return RedirectResponse(f"/feeds/messages/{target}?" + urlencode({"note": note[:300]}), status_code=303)


@router.post("/messages/reprocess")
def reprocess_since(
    request: Request,
    session: Annotated[Session, Depends(require(*READERS))],
    since: Annotated[str, Form(max_length=10)],
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Every rejected message of the HL7 feed received since a day that no attempt settled."""
    require_csrf(session, csrf_token)
    web = web_of(request)
    start = _day(since, ZoneInfo(web.settings.site.timezone))
    assert start is not None  # the form requires it
    intake = _intake(web)
    with web.engine.connect() as conn:
        ids = rejected_since(conn, intake.feed, start)
    by, client = session.user.username, client_address(request)
    results = [intake.reprocess(message_id, by=by, client=client) for message_id in ids]
    _after(web, results)
    accepted = sum(result.done and result.outcome != "rejected" for result in results)
    query = urlencode({"outcome": "reprocessed", "from": since, "reprocessed": accepted})
    return RedirectResponse(f"/messages?{query}", status_code=303)
