"""iCalendar feeds: a secret address per trial or coordinator, read without signing in, with
the research exams (UTC, cancelled ones struck out) and the due windows, and no patient
identifiers anywhere in them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from icalendar import Calendar, Event
from sqlalchemy import select

from monitor.commands.ingest import ingest_files
from monitor.config import NotificationSettings
from monitor.evaluation import evaluate_all
from monitor.store.schema import calendar_tokens, exams
from monitor.web import create_app
from tests.monitor.hl7_messages import BIRTH_DATE, MRN, PATIENT_NAME, siu
from tests.monitor.trial_setup import EXAMPLE_MRNS, NOW, cli
from tests.monitor.web.conftest import Site

# Booked on top of the dashboard's fixture store (tests.monitor.web.site):
# - NEU-4405 4405-001 Week 40 MRI on 2026-10-28 10:00 New York time, still daylight saving
#   time (EDT, UTC-4): 14:00 UTC. The fixture's own NEU exam, 2026-11-30 10:00, is EST
#   (UTC-5): 15:00 UTC. The clocks went back on 2026-11-01, between the two.
# - ONC-2101 2101-003 Week 48 restaging CT on 2026-12-22, then cancelled (S15).
DST_CSN = "7200000001"
CANCELLED_CSN = "7200000002"
NEU_FIXTURE_CSN = "7100000003"  # the fixture's NEU-4405 exam, 2026-11-30 10:00 EST
ONC_BOOKED_CSN = "7100000001"  # the fixture's ONC-2101 2101-001 exam, in window
CANCELLED = {
    "csn": CANCELLED_CSN,
    "start": "20261222090000",
    "mrn": "E10003",
    "code": "IMG1234",
    "room": "CT3",
}
MORE_BOOKINGS = (
    siu(control_id="CAL1", csn=DST_CSN, start="20261028100000", mrn="E10009", code="IMG3301", room="MR2",
        modality="MR"),
    siu(control_id="CAL2", **CANCELLED),
    siu("S15", control_id="CAL3", status="Cancelled", **CANCELLED),
)  # fmt: skip
# Every patient identifier the store holds for the fixture patients: the registry's MRNs,
# the HL7 messages' name, birth date and default MRN.
PATIENT_STRINGS = (
    *EXAMPLE_MRNS,
    MRN,
    *PATIENT_NAME.split("^"),
    BIRTH_DATE,
    f"{BIRTH_DATE[:4]}-{BIRTH_DATE[4:6]}-{BIRTH_DATE[6:]}",
)


@pytest.fixture(scope="module")
def store(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The dashboard's fixture store plus the bookings above, evaluated at ``NOW``."""
    feed: Path = tmp_path_factory.mktemp("calendar") / "more.hl7"
    feed.write_bytes(b"\n".join(MORE_BOOKINGS))
    ingest_files(site.engine, site.settings, [feed], progress=False, clock=lambda: NOW)
    evaluate_all(site.engine, site.settings, NOW)
    yield site


def exam_id(store: Site, csn: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(exams.c.id).where(exams.c.external_id == csn)).scalar_one())


def add_feed(capsys: pytest.CaptureFixture[str], store: Site, *args: str) -> tuple[int, str]:
    """``hiro-monitor calendar add ARGS``: (token id, the printed address's path)."""
    code, out, err = cli(capsys, store.url, "calendar", "add", *args)
    assert code == 0, err
    address = next(line for line in out.splitlines() if "/calendar/" in line)
    token_id = int(out.split(":", 1)[0].rsplit(" ", 1)[1])
    return token_id, address[address.index("/calendar/") :]


def client(store: Site, dashboard_url: str = "") -> TestClient:
    """A client with no session cookie: calendar apps never sign in."""
    settings = store.settings.model_copy(
        update={"notifications": NotificationSettings(dashboard_base_url=dashboard_url)}
    )
    app = create_app(settings, store.engine, clock=store.clock)
    return TestClient(app, base_url="https://testserver", follow_redirects=False)


def read(store: Site, path: str, dashboard_url: str = "") -> tuple[str, dict[str, Event]]:
    """The feed at ``path``: its unfolded text and its events by UID."""
    answer = client(store, dashboard_url).get(path)
    assert answer.status_code == 200, answer.text
    parsed = Calendar.from_ical(answer.content)
    events = {str(event["UID"]): event for event in parsed.walk("VEVENT") if isinstance(event, Event)}
    return answer.text.replace("\r\n ", ""), events


def last_used(store: Site, token_id: int) -> datetime | None:
    with store.engine.connect() as conn:
        query = select(calendar_tokens.c.last_used_at).where(calendar_tokens.c.id == token_id)
        found: datetime | None = conn.execute(query).scalar()
    return found


def exam_event(events: dict[str, Event], exam: int) -> Event:
    found = [event for uid, event in events.items() if uid.startswith(f"exam-{exam}-")]
    assert len(found) == 1, sorted(events)
    return found[0]


def test_a_booked_exam_starts_at_its_utc_time_on_both_sides_of_the_dst_change(
    store: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    _, path = add_feed(capsys, store, "--trial", "NEU-4405", "--label", "MR desk")
    text, events = read(store, path)
    summer = exam_event(events, exam_id(store, DST_CSN))
    winter = exam_event(events, exam_id(store, NEU_FIXTURE_CSN))
    assert summer.decoded("DTSTART") == datetime(2026, 10, 28, 14, 0, tzinfo=UTC)
    assert winter.decoded("DTSTART") == datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
    assert "DTSTART:20261028T140000Z" in text and "DTSTART:20261130T150000Z" in text
    assert winter.decoded("DTEND") == datetime(2026, 11, 30, 15, 30, tzinfo=UTC)  # SCH: 30 minutes
    assert str(summer["SUMMARY"]) == "NEU-4405 4405-001 Week 40 MRI MR"
    assert str(summer["LOCATION"]) == "MR2 / HOSP"
    assert "Window 2026-10-19 to 2026-11-02: in window, unconfirmed." in str(summer["DESCRIPTION"])
    assert str(summer["STATUS"]) == "CONFIRMED"


def test_a_cancelled_exam_stays_in_the_feed_as_cancelled(
    store: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    _, path = add_feed(capsys, store, "--trial", "ONC-2101")
    _, events = read(store, path)
    cancelled = exam_event(events, exam_id(store, CANCELLED_CSN))
    assert str(cancelled["STATUS"]) == "CANCELLED"
    assert str(cancelled["SUMMARY"]).startswith("Cancelled: ONC-2101 2101-003 Week 48 restaging")
    assert cancelled.decoded("DTSTART") == datetime(2026, 12, 22, 14, 0, tzinfo=UTC)
    assert str(exam_event(events, exam_id(store, ONC_BOOKED_CSN))["STATUS"]) == "CONFIRMED"


def test_a_timepoint_due_with_nothing_booked_is_an_all_day_window(
    store: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    _, path = add_feed(capsys, store, "--trial", "ONC-2101")
    _, events = read(store, path)
    due = {uid: event for uid, event in events.items() if uid.startswith("due-")}
    # 2101-002's Week 60 restaging (window 2026-11-16..11-30) has only a wrong-orderable exam near it.
    by_summary = {str(event["SUMMARY"]): (uid, event) for uid, event in due.items()}
    uid, week60 = by_summary["Due, not booked: ONC-2101 2101-002 Week 60 restaging"]
    assert uid.startswith("due-ONC-2101:2101-002:")  # the occurrence's key: stable across reads
    assert week60.decoded("DTSTART") == date(2026, 11, 16)
    assert week60.decoded("DTEND") == date(2026, 12, 1)  # the day after the window's last day
    assert str(week60["TRANSP"]) == "TRANSPARENT"
    # Booked (2101-001 Week 72) and planned (windows opening after the due-soon horizon) are not "due".
    summaries = " | ".join(str(event["SUMMARY"]) for event in due.values())
    assert "2101-001" not in summaries and "Week 84" not in summaries


def test_a_coordinator_feed_lists_only_the_trials_assigned_to_them(
    store: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    _, onc_path = add_feed(capsys, store, "--coordinator", "coord", "--label", "Dana's phone")
    _, neu_path = add_feed(capsys, store, "--coordinator", "neuro")
    for path, trial, mine, other in (
        (onc_path, "ONC-2101", ONC_BOOKED_CSN, NEU_FIXTURE_CSN),
        (neu_path, "NEU-4405", NEU_FIXTURE_CSN, ONC_BOOKED_CSN),
    ):
        _, events = read(store, path)
        assert events, path
        assert {event.categories[0] for event in events.values()} == {trial}
        assert any(uid.startswith(f"exam-{exam_id(store, mine)}-") for uid in events)
        assert not any(uid.startswith(f"exam-{exam_id(store, other)}-") for uid in events)


def test_no_feed_and_no_audit_row_carries_a_patient_identifier(
    store: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = []
    for args in (("--trial", "ONC-2101"), ("--trial", "NEU-4405"), ("--trial", "LYM-3302"),
                 ("--coordinator", "coord")):  # fmt: skip
        _, path = add_feed(capsys, store, *args)
        text, events = read(store, path, dashboard_url="https://hiro.example.org")
        assert events  # an empty feed would pass the check below for the wrong reason
        texts.append(text)
    audit = [" ".join(map(str, row)) for row in store.audit_rows(action="calendar.read")]  # type: ignore[call-overload]
    with store.engine.connect() as conn:  # the fixture patients really are in the store
        assert "E10001" in conn.execute(select(exams.c.mrn)).scalars().all()
    for needle in PATIENT_STRINGS:
        for text in (*texts, *audit):
            assert needle not in text, needle


def test_the_exam_links_to_its_dashboard_page_when_the_dashboard_url_is_set(
    store: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    _, path = add_feed(capsys, store, "--trial", "ONC-2101")
    exam = exam_id(store, ONC_BOOKED_CSN)
    _, linked = read(store, path, dashboard_url="https://hiro.example.org/")
    assert str(exam_event(linked, exam)["URL"]) == f"https://hiro.example.org/exams/{exam}"
    assert f"Dashboard: https://hiro.example.org/exams/{exam}" in str(exam_event(linked, exam)["DESCRIPTION"])
    _, plain = read(store, path)
    assert "URL" not in exam_event(plain, exam)
    assert "Dashboard" not in str(exam_event(plain, exam)["DESCRIPTION"])


def test_the_feed_is_text_calendar_never_cached_and_needs_no_sign_in(
    store: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    _, path = add_feed(capsys, store, "--trial", "ONC-2101")
    answer = client(store).get(path)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/calendar")
    assert answer.headers["cache-control"] == "no-store"
    assert "set-cookie" not in answer.headers
    checked = client(store).head(path)  # a client checking the address before subscribing
    assert checked.status_code == 200 and checked.headers["content-type"].startswith("text/calendar")


def test_unknown_and_revoked_addresses_are_404_without_detail_or_redirect(
    store: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    token_id, path = add_feed(capsys, store, "--trial", "ONC-2101")
    anonymous = client(store)
    assert anonymous.get(path).status_code == 200
    code, out, _ = cli(capsys, store.url, "calendar", "revoke", str(token_id))
    assert code == 0, out
    unknown = "/calendar/" + "A" * 43 + ".ics"
    for address in (path, unknown, "/calendar/short.ics", "/calendar/" + "x" * 300 + ".ics"):
        answer = anonymous.get(address)
        assert answer.status_code == 404, address
        assert answer.content == b"" and "location" not in answer.headers, address
    assert cli(capsys, store.url, "calendar", "revoke", str(token_id))[0] == 1  # already revoked


def test_a_read_records_its_use_and_an_audit_row_naming_the_label(
    store: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    token_id, path = add_feed(capsys, store, "--coordinator", "coord", "--label", "Dana's phone")
    assert last_used(store, token_id) is None
    read(store, path)
    used = last_used(store, token_id)
    assert used == NOW
    rows = store.audit_rows(action="calendar.read", object_id=str(token_id))
    assert len(rows) == 1
    assert rows[0].username == "calendar:Dana's phone"  # type: ignore[attr-defined]
    assert rows[0].object_type == "calendar_token"  # type: ignore[attr-defined]


def test_the_token_is_stored_only_as_its_hash(store: Site, capsys: pytest.CaptureFixture[str]) -> None:
    token_id, path = add_feed(capsys, store, "--trial", "NEU-4405", "--label", "MR desk")
    token = path.removeprefix("/calendar/").removesuffix(".ics")
    assert len(token) >= 43
    with store.engine.connect() as conn:
        row = conn.execute(select(calendar_tokens).where(calendar_tokens.c.id == token_id)).one()
        everything = [str(value) for stored in conn.execute(select(calendar_tokens)) for value in stored]
    assert row.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert not any(token in value for value in everything)
    code, out, _ = cli(capsys, store.url, "calendar", "list", "--json")
    assert code == 0 and token not in out
    listed = {entry["id"]: entry for entry in json.loads(out)}
    assert listed[token_id]["label"] == "MR desk" and listed[token_id]["value"] == "NEU-4405"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("--trial", "ONC-9999"), "no trial 'ONC-9999'", id="unknown-trial"),
        pytest.param(("--coordinator", "nobody"), "no active account 'nobody'", id="unknown-user"),
        pytest.param(
            ("--coordinator", "tech"), "'tech' is a technologist, not a coordinator", id="not-coordinator"
        ),
    ],
)
def test_calendar_add_refuses_a_feed_for_nothing(
    store: Site, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    with store.engine.connect() as conn:
        before = len(conn.execute(select(calendar_tokens.c.id)).all())
    code, out, err = cli(capsys, store.url, "calendar", "add", *args)
    assert code == 2
    assert message in err and "/calendar/" not in out
    with store.engine.connect() as conn:
        assert len(conn.execute(select(calendar_tokens.c.id)).all()) == before
