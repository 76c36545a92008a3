"""``hiro-monitor notifications``, ``dispatch`` and ``instructions``.

Regenerate the sheet's golden file after a deliberate change with
``HIRO_UPDATE_GOLDEN=1 .venv/bin/pytest tests/monitor/dispatch/test_commands.py`` and review the diff.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.golden import check_golden_difference
from tests.monitor.dispatch.office import ONC, Office, assert_no_phi
from tests.monitor.hl7_messages import siu
from tests.monitor.trial_setup import cli
from tests.notifiers.slack_server import SlackServer

GOLDEN = Path(__file__).parent / "golden"
# The template's golden file (tests/notifiers); this exam's sheet is kept as its difference.
DEFAULT_SHEET = Path(__file__).parents[2] / "notifiers" / "golden" / "instructions_default.html"
REQUIRED_KEYS = {"id", "exam_id", "audience", "channel", "kind", "due_at", "status", "attempts", "dedupe_key"}


def test_notifications_lists_the_outbox_as_json_without_phi(
    office: Office, capsys: pytest.CaptureFixture[str]
) -> None:
    office.feed(siu(mrn="E10001"))
    code, out, _ = cli(capsys, office.settings.database.url, "notifications", "--json")
    assert code == 0
    listed = json.loads(out)
    assert len(listed) == len(office.rows()) and set(listed[0]) >= REQUIRED_KEYS
    booking = [r for r in listed if r["kind"] == "booking" and r["channel"] == "slack"]
    assert booking[0]["status"] == "pending" and booking[0]["exam_id"] == 1
    assert booking[0]["due_at"] == "2026-11-25T12:00:00+00:00"
    assert_no_phi(out)
    code, out, _ = cli(capsys, office.settings.database.url, "notifications", "--status", "sent", "--json")
    assert json.loads(out) == []
    code, out, _ = cli(capsys, office.settings.database.url, "notifications")
    assert code == 0 and "booking" in out and "slack:#onc-2101-imaging" in out


def test_dispatch_once_sends_what_is_due(
    office: Office,
    slack: SlackServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    office.feed(siu(mrn="E10001"))
    office.keep_only(*(row.dedupe_key for row in office.rows(kind="booking")))
    monkeypatch.setenv("HIRO_SLACK_TOKEN", slack.fake.token)
    config = tmp_path / "config.toml"
    config.write_text(f'[slack]\nenabled = true\nbase_url = "{slack.base_url}"\n', encoding="utf-8")
    code, out, _ = cli(capsys, office.settings.database.url, "--config", str(config), "dispatch", "--once")
    assert code == 0
    assert "sent 1," in out and "failed 1" in out  # Slack delivered; email is not enabled in this config
    assert len(slack.fake.posted(ONC)) == 1
    assert {row.status for row in office.rows(kind="booking")} == {"sent", "failed"}


def test_instructions_renders_the_technologist_sheet_of_a_research_exam(
    office: Office, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    office.feed(siu(mrn="E10001"))
    out_file = tmp_path / "sheet.html"
    code, out, _ = cli(capsys, office.settings.database.url, "instructions", "1", "--out", str(out_file))
    assert code == 0 and str(out_file) in out
    sheet = out_file.read_text(encoding="utf-8")
    assert "Week 72 restaging" in sheet and "Slice thickness &lt;= 5 mm" in sheet and "CT3" in sheet
    assert_no_phi(sheet)
    check_golden_difference(GOLDEN / "instructions_exam1_onc2101.diff", DEFAULT_SHEET, sheet)


def test_instructions_for_an_exam_that_serves_no_research_visit_exits_1(
    office: Office, capsys: pytest.CaptureFixture[str]
) -> None:
    office.feed(siu(mrn="E99999", csn="7000000099"))  # nobody enrolled
    code, out, err = cli(capsys, office.settings.database.url, "instructions", "1")
    assert code == 1 and out == ""
    assert "exam 1 serves no research timepoint" in err
    code, _, err = cli(capsys, office.settings.database.url, "instructions", "42")
    assert code == 1 and "exam 42" in err


def test_instructions_on_a_terminal_go_to_a_file_and_text_or_html_are_printed_when_asked(
    office: Office, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    office.feed(siu(mrn="E10001"))
    url = office.settings.database.url
    code, text, _ = cli(capsys, url, "instructions", "1", "--text")
    assert code == 0 and "Week 72 restaging" in text and "<html" not in text.lower()
    assert_no_phi(text)
    code, html, _ = cli(capsys, url, "instructions", "1", "--html")
    assert code == 0 and html.lstrip().lower().startswith("<!doctype html")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, _ = cli(capsys, url, "instructions", "1")
    assert code == 0 and out.startswith("wrote instructions-exam-1.html")
    assert (tmp_path / "instructions-exam-1.html").read_text(encoding="utf-8") == html
