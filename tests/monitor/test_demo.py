"""The README's first command: the demo runs end to end with no configuration and no network,
and its console shows coordinator alerts and technologist sheets without PHI."""

from __future__ import annotations

import asyncio
import io
import re
import signal
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select

from monitor.cli import main
from monitor.clock import FixedClock, ScaledClock
from monitor.config import Settings
from monitor.daemon import Daemon
from monitor.demo import demo_dispatcher, demo_settings, load_examples
from monitor.dispatch.dispatcher import Dispatcher
from monitor.feeds.hl7.simulated import FAKE_FAMILY, FAKE_GIVEN
from monitor.pacs.orthanc import orthanc_available
from monitor.store.database import make_engine, upgrade
from monitor.store.exams import exam_status_counts
from monitor.store.schema import notifications
from tests.monitor.dispatch.office import enrol_due_in
from tests.monitor.hl7_messages import BIRTH_DATE, PATIENT_NAME, siu
from tests.monitor.trial_setup import NOW

# The simulated feed's patients: MRNs E10000-E10099 and names drawn from these lists.
SIMULATED_MRN = re.compile(r"\bE1\d{4}\b")
SIMULATED_NAME = re.compile(rf"\b({'|'.join(FAKE_FAMILY + FAKE_GIVEN)})\b")  # upper case, as sent


def test_demo_prints_the_alerts_and_a_summary_in_80_columns_and_removes_its_database(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the demo makes its folder
    assert (
        main(
            ["--log-level", "WARNING", "demo", "--duration", "3", "--messages", "40", "--rate", "500"],
            clock=FixedClock(NOW),
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "3 example trials loaded" in out
    assert "HL7 messages sent: 40 (ACKs: AA 40)" in out
    # The console: one block per message, saying what it is, for whom and where it would go.
    alerts = re.findall(r"^===== COORDINATOR ALERT for coordinators -> (\S+)$", out, re.MULTILINE)
    sheets = re.findall(r"^===== TECHNOLOGIST SHEET for technologists -> (\S+)$", out, re.MULTILINE)
    assert alerts and sheets
    technologists = {"slack:#ct-techs", "slack:#ct3-console", "slack:#mr-techs", "slack:#pet-techs"}
    assert set(sheets) <= technologists | {
        "slack:#pet1-console",
        "slack:#pet2-console",
        "email:nucmed-leads@example.org",
    }
    sheet = " ".join(out.split("===== TECHNOLOGIST SHEET")[1].split("\n=====")[0].split())
    assert re.search(r"\[[A-Z]+-\d+\] Scan instructions · .+ · \w{3} \d+ \w{3} \d{4} \d\d:\d\d E[SD]T", sheet)
    assert "Subject " in sheet and "Do: " in sheet
    # Tens of blocks, not hundreds: a fresh store and a 40-message backlog.
    assert len(re.findall(r"^===== ", out, re.MULTILINE)) < 60
    # Then the summary: counts, not a table of every exam and finding; the dashboard and its login.
    summary = out.split("\n===== SUMMARY at ")[1]
    assert "=====" not in summary.split("\n===== STOPPED at ")[0]  # the backlog's messages came first
    assert re.search(r"^Exams received: (\d+) \(.*\b(\d+) scheduled", summary, re.MULTILINE)
    found = re.search(r"^Open findings: (\d+) \(", summary, re.MULTILINE)
    rows = re.findall(
        r"^ +(\d+)  (\S.*?) +(critical|warning|info)$", summary.split("\n===== STOPPED")[0], re.M
    )
    assert found and rows and sum(int(count) for count, _, _ in rows) == int(found.group(1))
    titles = {title for _, title, _ in rows}
    # A true story: the example history is on record, so no past visit is a false "missed";
    # the simulated feed's deliberate problem is there.
    assert "Wrong orderable" in titles and "Visit missed" not in titles
    assert "Visit missed" not in out
    assert re.search(r"^Dashboard: http://127\.0\.0\.1:\d+/  \(user demo, password \S+\)$", summary, re.M)
    assert "Findings (" not in out and "┃" not in out and "│" not in out
    assert max(len(line) for line in out.splitlines() if str(tmp_path) not in line) <= 80
    # No PHI under the console's policy "none": no MRN, no name of the simulated patients.
    assert not SIMULATED_MRN.findall(out), SIMULATED_MRN.findall(out)[:3]
    assert not SIMULATED_NAME.findall(out), SIMULATED_NAME.findall(out)[:3]
    # With Orthanc installed, the imaging story: the wrong slices reach the CT console, and
    # the repeat resolves the finding, each within a poll or two.
    if orthanc_available() is None:
        assert "Imaging: parameter deviation found" in out and "Imaging: the 2.5 mm repeat resolved it" in out
        consoles = re.findall(r"^===== TECHNOLOGIST ALERT for technologists -> (\S+)$", out, re.MULTILINE)
        assert consoles == ["slack:#ct3-console"]
        assert "SliceThickness 7.5 (protocol: <= 5)" in " ".join(out.split())
    # The demo's database (and its PACS's storage) went with it.
    assert out.rstrip().endswith("Temporary database removed.")
    assert list(tmp_path.iterdir()) == []


def test_demo_with_keep_keeps_its_database_and_says_where(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    argv = ["--log-level", "WARNING", "demo", "--duration", "0", "--messages", "5", "--keep", "--no-images"]
    assert main(argv, clock=FixedClock(NOW)) == 0
    [database] = tmp_path.glob("hiro-demo-*/demo.db")
    assert capsys.readouterr().out.rstrip().endswith(f"Database kept: {database}")
    engine = make_engine(f"sqlite:///{database}")
    with engine.connect() as conn:
        assert exam_status_counts(conn)  # the backlog is in it
    engine.dispose()


class _Interrupting(io.StringIO):
    """Standard output that sends ``signum`` to this process once the demo is listening."""

    def __init__(self, signum: signal.Signals) -> None:
        super().__init__()
        self.signum = signum

    def write(self, text: str) -> int:
        written = super().write(text)
        if "Listening: " in text:
            # SIGTERM without the demo's handler would end the test run: refuse instead.
            assert signal.getsignal(self.signum) not in (signal.SIG_DFL, None)
            signal.raise_signal(self.signum)
        return written


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_demo_stopped_by_ctrl_c_or_sigterm_stops_the_daemon_and_removes_its_database(
    signum: signal.Signals, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    out = _Interrupting(signum)
    monkeypatch.setattr(sys, "stdout", out)
    # No --duration: the demo runs until it is told to stop.
    argv = ["--log-level", "WARNING", "demo", "--messages", "5", "--no-images"]
    assert main(argv, clock=FixedClock(NOW)) == 0
    printed = out.getvalue()
    assert "\n===== STOPPED at " in printed and printed.rstrip().endswith("Temporary database removed.")
    assert list(tmp_path.iterdir()) == []


def test_demo_refuses_a_speed_that_is_not_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--speed", "0"])
    assert "a speed above 0" in capsys.readouterr().err


async def _send(port: int, message: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x0b" + message + b"\x1c\r")
    await writer.drain()
    ack = await reader.readuntil(b"\x1c\r")
    writer.close()
    return ack


def _reminders(engine: Engine, lead: str) -> list[str]:
    query = select(notifications.c.status, notifications.c.dedupe_key).where(
        notifications.c.kind == "reminder"
    )
    with engine.connect() as conn:
        return [row.status for row in conn.execute(query) if f"|{lead}|" in row.dedupe_key]


def _local(text: str) -> datetime:
    """``Wed 25 Nov 2026 13:00 EST`` as a naive local time (the console's times share a zone)."""
    return datetime.strptime(text.rsplit(" ", 1)[0], "%a %d %b %Y %H:%M")


def test_with_a_scaled_clock_a_reminder_due_hours_ahead_is_sent_while_the_daemon_runs(tmp_path: Path) -> None:
    """Speed 7200: the 24 h reminder of an exam booked 30 simulated hours ahead falls due
    six simulated hours later (three real seconds) and goes out on the console."""
    clock = ScaledClock(7200, start=NOW)
    url = f"sqlite:///{tmp_path / 'fast.db'}"
    engine = make_engine(url)
    upgrade(engine)
    load_examples(engine, clock())
    zone = ZoneInfo("America/New_York")
    start = (clock() + timedelta(hours=30)).astimezone(zone)
    enrol_due_in(engine, "E55501", "2101-901", (start.date() - clock().astimezone(zone).date()).days, clock())
    settings = demo_settings(url, clock.speed)
    settings = settings.model_copy(
        update={
            "web": settings.web.model_copy(update={"enabled": False}),
            "mllp": settings.mllp.model_copy(update={"port": 0}),
        }
    )
    console = io.StringIO()
    dispatcher, printed = demo_dispatcher(engine, settings, clock, console)
    assert "slack" in printed and "email" in printed

    async def scenario() -> tuple[list[str], list[str]]:
        daemon = Daemon(settings, engine, clock=clock, dispatcher=dispatcher)
        await daemon.start()
        try:
            ack = await _send(daemon.server.port, siu(mrn="E55501", start=f"{start:%Y%m%d%H%M00}"))
            assert b"MSA|AA" in ack
            await asyncio.sleep(daemon.writer.observe_every + 0.2)
            booked = _reminders(engine, "24h")
            deadline = time.monotonic() + 30  # a bound on a hang, not a speed claim
            while _reminders(engine, "24h") != ["sent", "sent"] and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            return booked, _reminders(engine, "24h")
        finally:
            await daemon.stop()
            engine.dispose()

    booked, later = asyncio.run(scenario())
    assert booked == ["pending", "pending"]  # due six simulated hours after the booking
    assert later == ["sent", "sent"]  # the coordinators' email and Slack channel
    out = console.getvalue()
    reminders = re.findall(
        r"^===== COORDINATOR REMINDER for coordinators -> (\S+)\n  at (.+) \(simulated\), due (.+)$",
        out,
        re.M,
    )
    assert len(reminders) == 2  # the 72 h one at once (already passed), the 24 h one later
    # Each block says when it was printed on the demo's clock: the 24 h one once it fell due.
    (first_at, first_due), (then_at, then_due) = [(_local(at), _local(due)) for _, at, due in reminders]
    assert first_at >= first_due and then_at >= then_due > first_at
    assert "[ONC-2101] Upcoming research scan · subject 2101-901" in out
    for value in ("E55501", "99887766", PATIENT_NAME, BIRTH_DATE, "TESTPATIENT"):
        assert value not in out


def test_demo_takes_only_the_channel_sections_of_a_site_config(tmp_path: Path) -> None:
    site = Settings.model_validate(
        {
            "database": {"url": "postgresql+psycopg://site/db"},
            "email": {"enabled": True, "host": "smtp.example.org", "from_address": "hiro@example.org"},
            "notifications": {"dashboard_base_url": "https://hiro.example.org"},
            "mllp": {"port": 2575},
        }
    )
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    settings = demo_settings(url, 1.0, site)
    assert settings.email == site.email and settings.notifications == site.notifications
    assert settings.database.url == url and settings.mllp.port == 0 and settings.dispatch.enabled
    engine = make_engine(url)
    dispatcher, printed = demo_dispatcher(engine, settings, ScaledClock(1, start=NOW))
    # The console standing in for Slack is not held to Slack's one message per second (at
    # --speed 2016 that second is half a simulated hour); a real Slack channel still is.
    real = Dispatcher(engine, settings)
    paces = dispatcher.interval("slack:#onc-2101-imaging"), real.interval("slack:#onc-2101-imaging")
    dispatcher.close()
    real.close()
    engine.dispose()
    assert "email" not in printed and {"slack", "console"} <= set(printed)
    assert paces == (0.0, 1.0)


def test_demo_with_a_missing_config_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--config", str(tmp_path / "absent.toml"), "--duration", "0"]) == 2
    assert "configuration file not found" in capsys.readouterr().err


def test_the_examples_move_to_today_every_date_and_nothing_else() -> None:
    from monitor.demo import shift_dates

    text = "trial,subject,mrn,c1d1,date\nONC-2101,2101-001,E10001,2025-07-21,2026-12-31\n"
    moved = "trial,subject,mrn,c1d1,date\nONC-2101,2101-001,E10001,2025-07-29,2027-01-08\n"
    assert shift_dates(text, 8) == moved
