"""The dashboard in a real browser: Playwright driving Debian's chromium (no browser download).

Skipped when /usr/bin/chromium or playwright is absent. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from monitor.web import create_app
from tests.monitor.web.conftest import Site
from tests.monitor.web.site import PASSWORD

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium is not installed")


@pytest.fixture(scope="module")
def base_url(site: Site) -> Iterator[str]:
    """The app served by uvicorn on 127.0.0.1, a free port, in a thread."""
    app = create_app(site.settings, site.engine, clock=site.clock)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: object, base_url: str) -> Iterator[object]:
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    yield context.new_page()
    context.close()


def _sign_in(page: object, username: str) -> None:
    page.goto("/login")  # type: ignore[attr-defined]
    page.get_by_label("User name").fill(username)  # type: ignore[attr-defined]
    page.get_by_label("Password").fill(PASSWORD)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Sign in").click()  # type: ignore[attr-defined]


def _shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def test_sign_in_lands_on_the_upcoming_list(page: object) -> None:
    _sign_in(page, "coord")
    page.wait_for_url("**/upcoming")  # type: ignore[attr-defined]
    heading = page.get_by_role("heading", level=1)  # type: ignore[attr-defined]
    assert "Upcoming research exams" in heading.inner_text()
    page.get_by_label("Days").fill("30")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Show").click()  # type: ignore[attr-defined]
    page.wait_for_url("**/upcoming?**")  # type: ignore[attr-defined]
    text = page.inner_text("main")  # type: ignore[attr-defined]
    assert "2101-001" in text and "Week 72 restaging" in text and "4405-001" not in text
    _shot(page, "upcoming")


def test_a_wrong_password_says_so(page: object) -> None:
    page.goto("/login")  # type: ignore[attr-defined]
    page.get_by_label("User name").fill("coord")  # type: ignore[attr-defined]
    page.get_by_label("Password").fill("not the password")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Sign in").click()  # type: ignore[attr-defined]
    assert page.get_by_role("alert").inner_text().startswith("The user name or password is wrong")  # type: ignore[attr-defined]


def test_the_trial_matrix_shows_window_dates_on_hover(page: object) -> None:
    _sign_in(page, "admin")
    page.goto("/trials/ONC-2101")  # type: ignore[attr-defined]
    cell = page.locator('a[title="due 2026-12-07; window 2026-11-30 to 2026-12-14"]')  # type: ignore[attr-defined]
    assert cell.inner_text() == "booked"
    _shot(page, "trial-matrix")
    cell.click()
    assert page.get_by_role("heading", level=1).inner_text().startswith("Exam")  # type: ignore[attr-defined]
    _shot(page, "exam")
    page.get_by_role("link", name="Trials").click()  # type: ignore[attr-defined]
    assert "ONC-2101" in page.inner_text("main")  # type: ignore[attr-defined]
    _shot(page, "trials")


def test_acknowledging_a_finding_records_who_and_the_comment(page: object, site: Site) -> None:
    _sign_in(page, "coord")
    page.goto("/findings")  # type: ignore[attr-defined]
    _shot(page, "findings-queue")
    page.get_by_label("Kind").select_option("wrong_orderable")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Filter").click()  # type: ignore[attr-defined]
    page.wait_for_url("**/findings?*kind=wrong_orderable*")  # type: ignore[attr-defined]
    row = page.locator("tr", has_text="wrong orderable").first  # type: ignore[attr-defined]
    row.get_by_role("checkbox").check()
    page.get_by_label("Comment for the ticked findings").fill("Asked scheduling to change the order")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Acknowledge ticked").click()  # type: ignore[attr-defined]
    page.wait_for_url("**/findings?kind=wrong_orderable")  # type: ignore[attr-defined]
    row = page.locator("tr", has_text="wrong orderable").first  # type: ignore[attr-defined]
    assert "acknowledged by coord" in row.inner_text()
    assert "Asked scheduling to change the order" in row.inner_text()
    _shot(page, "findings-acknowledged")
    assert site.audit_rows(action="finding.acknowledge", username="coord")


def test_an_admin_retries_a_failed_delivery_from_feed_health(page: object, site: Site) -> None:
    from sqlalchemy import select, update

    from monitor.store.schema import notifications

    with site.engine.begin() as conn:
        row_id = (
            conn.execute(
                select(notifications.c.id).where(
                    notifications.c.exam_id == 1, notifications.c.kind == "reminder"
                )
            )
            .scalars()
            .first()
        )
        conn.execute(
            update(notifications)
            .where(notifications.c.id == row_id)
            .values(status="failed", attempts=10, last_error="channel_not_found")
        )
    _sign_in(page, "admin")
    page.goto("/feeds")  # type: ignore[attr-defined]
    page.get_by_role("button", name=f"Retry delivery {row_id}").click()  # type: ignore[attr-defined]
    page.wait_for_url("**/feeds?retried=1*")  # type: ignore[attr-defined]
    assert "Put back to pending: 1." in page.get_by_role("status").inner_text()  # type: ignore[attr-defined]
    _shot(page, "feed-health-retried")
    with site.engine.connect() as conn:
        status = conn.execute(select(notifications.c.status).where(notifications.c.id == row_id)).scalar_one()
    assert status == "pending"
    assert site.audit_rows(action="notification.retry", username="admin", object_id=str(row_id))


def test_the_instruction_sheet_prints(page: object) -> None:
    _sign_in(page, "tech")
    page.goto("/exams/1/sheet")  # type: ignore[attr-defined]
    assert page.get_by_role("button", name="Print this sheet").is_visible()  # type: ignore[attr-defined]
    page.emulate_media(media="print")  # type: ignore[attr-defined]
    assert not page.get_by_role("button", name="Print this sheet").is_visible()  # type: ignore[attr-defined]
    assert "Week 72 restaging" in page.inner_text("body")  # type: ignore[attr-defined]
    _shot(page, "instruction-sheet-print")
    ARTIFACTS.mkdir(exist_ok=True)
    page.pdf(path=str(ARTIFACTS / "instruction-sheet.pdf"))  # type: ignore[attr-defined]
    assert (ARTIFACTS / "instruction-sheet.pdf").stat().st_size > 1000


def test_the_sign_in_form_and_the_skip_link_work_from_the_keyboard(page: object) -> None:
    page.goto("/login")  # type: ignore[attr-defined]
    page.get_by_label("User name").focus()  # type: ignore[attr-defined]
    page.keyboard.type("viewer")  # type: ignore[attr-defined]
    page.keyboard.press("Tab")  # type: ignore[attr-defined]
    page.keyboard.type(PASSWORD)  # type: ignore[attr-defined]
    page.keyboard.press("Enter")  # type: ignore[attr-defined]
    page.wait_for_url("**/upcoming")  # type: ignore[attr-defined]
    page.keyboard.press("Tab")  # type: ignore[attr-defined]
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"  # type: ignore[attr-defined]
    page.keyboard.press("Enter")  # type: ignore[attr-defined]
    assert page.evaluate("document.activeElement.id") == "main"  # type: ignore[attr-defined]


def test_today_is_reached_from_the_menu_by_keyboard(page: object) -> None:
    _sign_in(page, "coord")
    page.wait_for_url("**/upcoming")  # type: ignore[attr-defined]
    page.get_by_role("link", name="Today").focus()  # type: ignore[attr-defined]
    page.keyboard.press("Enter")  # type: ignore[attr-defined]
    page.wait_for_url("**/today")  # type: ignore[attr-defined]
    heading = page.get_by_role("heading", level=1).inner_text()  # type: ignore[attr-defined]
    assert heading.startswith("Today")
    assert page.get_by_role("heading", name="Due, nothing booked").is_visible()  # type: ignore[attr-defined]
    _shot(page, "today")


def test_a_coordinator_enrols_a_subject_from_the_trial_page(page: object, site: Site) -> None:
    _sign_in(page, "coord")
    page.goto("/trials/ONC-2101")  # type: ignore[attr-defined]
    page.get_by_role("link", name="Enrol a subject").click()  # type: ignore[attr-defined]
    page.get_by_label("Study subject id").fill("2101-777")  # type: ignore[attr-defined]
    page.get_by_label("MRNs, one per line").fill("E77777")  # type: ignore[attr-defined]
    page.get_by_label("Arm").select_option("B")  # type: ignore[attr-defined]
    page.get_by_label("consent (required)").fill("2026-10-01")  # type: ignore[attr-defined]
    page.get_by_label("c1d1 (required)").fill("2026-10-20")  # type: ignore[attr-defined]
    _shot(page, "enrolment-form")
    page.get_by_role("button", name="Enrol").click()  # type: ignore[attr-defined]
    heading = page.get_by_role("heading", level=1).inner_text()  # type: ignore[attr-defined]
    assert heading == "Enrolled ONC-2101 2101-777"
    assert "judged again" in page.inner_text("main")  # type: ignore[attr-defined]
    _shot(page, "enrolment-saved")
    assert site.audit_rows(action="enrolment.add", object_id="ONC-2101/2101-777")


def test_an_admin_checks_a_protocol_file_then_loads_it(page: object, site: Site, tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[3] / "examples" / "trials" / "neu-4405-mri-rano.toml"
    amended = tmp_path / "neu-4405-amendment.toml"
    amended.write_text(example.read_text().replace('every = "8w"', 'every = "9w"'))
    _sign_in(page, "admin")
    page.wait_for_url("**/upcoming")  # type: ignore[attr-defined]
    page.get_by_role("link", name="Protocols").click()  # type: ignore[attr-defined]
    page.get_by_label("A trial's protocol file (TOML)").set_input_files(str(amended))  # type: ignore[attr-defined]
    page.get_by_role("button", name="Check").click()  # type: ignore[attr-defined]
    main = page.inner_text("main")  # type: ignore[attr-defined]
    assert "is valid" in main and "timepoint 'on_treatment' changed" in main
    _shot(page, "protocol-preview")
    page.get_by_role("button", name="Load this version of NEU-4405").click()  # type: ignore[attr-defined]
    heading = page.get_by_role("heading", level=1).inner_text()  # type: ignore[attr-defined]
    assert heading.startswith("NEU-4405: version") and "loaded" in heading
    assert site.audit_rows(action="protocol.load", object_id="NEU-4405")


def test_the_subject_page_shows_the_rescheduling_assistant_and_prints_a_schedule(page: object) -> None:
    _sign_in(page, "coord")
    page.wait_for_url("**/upcoming")  # type: ignore[attr-defined]
    page.goto("/trials/ONC-2101/subjects/2101-002")  # type: ignore[attr-defined]
    assert page.get_by_role("heading", name="Visits to book").is_visible()  # type: ignore[attr-defined]
    _shot(page, "rescheduling-assistant")
    page.get_by_role("link", name="Printable schedule for the schedulers").click()  # type: ignore[attr-defined]
    assert "Every visit" in page.inner_text("main")  # type: ignore[attr-defined]
    _shot(page, "subject-schedule")


def test_an_admin_disables_an_account_then_finds_it_in_the_audit_trail(page: object, site: Site) -> None:
    _sign_in(page, "admin")
    page.wait_for_url("**/upcoming")  # type: ignore[attr-defined]
    page.get_by_role("link", name="Accounts").click()  # type: ignore[attr-defined]
    page.get_by_role("button", name="Disable viewer").click()  # type: ignore[attr-defined]
    assert page.get_by_role("status").inner_text() == "Saved: viewer."  # type: ignore[attr-defined]
    assert page.locator("#account-viewer td").first.inner_text() == "no"  # type: ignore[attr-defined]
    _shot(page, "accounts")
    page.get_by_role("link", name="Audit").click()  # type: ignore[attr-defined]
    page.get_by_label("Action").fill("account.disable")  # type: ignore[attr-defined]
    page.get_by_label("Action").press("Enter")  # type: ignore[attr-defined]
    row = page.locator("tbody tr").first  # type: ignore[attr-defined]
    assert "account.disable" in row.inner_text() and "viewer" in row.inner_text()
    _shot(page, "audit")
    page.goto("/accounts")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Enable viewer").click()  # type: ignore[attr-defined]
    assert site.audit_rows(action="account.enable", object_id="viewer")


axe_playwright = pytest.importorskip("axe_playwright_python.sync_playwright")
WCAG_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}


@pytest.mark.parametrize(
    ("account", "path"),
    [
        ("coord", "/upcoming?days=30"),
        ("coord", "/today"),
        ("coord", "/findings"),
        ("coord", "/trials"),
        ("coord", "/trials/ONC-2101"),
        ("coord", "/trials/ONC-2101/subjects/2101-002"),
        ("coord", "/trials/ONC-2101/subjects/2101-002/schedule"),
        ("coord", "/exams/1"),
        ("coord", "/core-lab"),
        ("admin", "/feeds"),
        ("admin", "/audit"),
        ("admin", "/accounts"),
        ("admin", "/protocols"),
        ("admin", "/messages"),
        ("admin", "/feeds/messages/1"),
        ("coord", "/no/such/page"),
    ],
)
def test_every_page_passes_axe_core_wcag_aa(page: object, account: str, path: str) -> None:
    """axe-core (bundled by axe-playwright-python) finds no WCAG 2.1 A/AA violation:
    contrast, labels, names of buttons and links, landmarks, table headers."""
    _sign_in(page, account)
    page.wait_for_url("**/upcoming")  # type: ignore[attr-defined]
    page.goto(path)  # type: ignore[attr-defined]
    results = axe_playwright.Axe().run(page, options=WCAG_AA)
    found = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
    ]
    assert found == [], path
