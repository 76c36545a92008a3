"""Templates: golden files for the instruction sheet and alert email, and strictness.

Regenerate the golden files after a deliberate template change with
``HIRO_UPDATE_GOLDEN=1 .venv/bin/pytest tests/notifiers/test_render.py`` and review the diff.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import jinja2
import pytest

from monitor.config import Settings
from monitor.render import Renderer
from notifiers import MessageKind, NotifierError, PhiPolicy
from notifiers.compose import headline, html_body, render_sheet, sheet_template, text_body
from tests import golden
from tests.notifiers.conftest import MRN, MakeNotification, alert_content, assert_no_phi, digest_content

GOLDEN = Path(__file__).parent / "golden"


DEFAULT_SHEET = GOLDEN / "instructions_default.html"


def check_golden(name: str, actual: str) -> None:
    golden.check_golden(GOLDEN / name, actual)


def test_default_instruction_sheet_matches_its_golden_file(renderer: Renderer) -> None:
    sheet = render_sheet(renderer, alert_content(), PhiPolicy.NONE)
    check_golden("instructions_default.html", sheet)
    assert_no_phi(sheet)


def test_trial_sheet_extends_the_default_with_the_imaging_manual(renderer: Renderer) -> None:
    content = alert_content(instructions_template="onc-2101-ct.html")
    assert sheet_template(content) == "instructions/onc-2101-ct.html"
    sheet = render_sheet(renderer, content, PhiPolicy.LIMITED)
    golden.check_golden_difference(GOLDEN / "instructions_onc-2101-ct.diff", DEFAULT_SHEET, sheet)
    assert "RECIST 1.1" in sheet and "Slice thickness &lt;= 5 mm" in sheet


def test_sheet_is_one_printable_page_with_every_section(renderer: Renderer) -> None:
    sheet = render_sheet(renderer, alert_content(), PhiPolicy.NONE)
    assert "@page" in sheet and "break-inside: avoid" in sheet
    for section in ("Required parameters", "Must match baseline", "Preparation", "Paperwork", "Whom to call"):
        assert f"<h2>{section}</h2>" in sheet
    assert "Tue 3 Mar 2026 09:30 EST" in sheet and "ACC20260303-0042" in sheet
    assert "same scanner as the Screening scan: CT3" in sheet


def test_instruction_text_matches_its_golden_file(
    renderer: Renderer, make_notification: MakeNotification
) -> None:
    notification = make_notification("email:ct@hospital.example.org", MessageKind.INSTRUCTIONS)
    check_golden("instructions_default.txt", text_body(renderer, notification, PhiPolicy.NONE))


def test_alert_email_matches_its_golden_files(
    renderer: Renderer, make_notification: MakeNotification
) -> None:
    notification = make_notification("email:onc2101-team@hospital.example.org")
    check_golden("alert_email_full.html", html_body(renderer, notification, PhiPolicy.FULL))
    check_golden("alert_email_full.txt", text_body(renderer, notification, PhiPolicy.FULL))
    check_golden("alert_email_none.txt", text_body(renderer, notification, PhiPolicy.NONE))


def test_digest_email_matches_its_golden_file(
    renderer: Renderer, make_notification: MakeNotification
) -> None:
    notification = make_notification(
        "email:team@hospital.example.org", MessageKind.DIGEST, content=digest_content()
    )
    check_golden("digest_email.html", html_body(renderer, notification, PhiPolicy.LIMITED))


def test_headline_is_one_line_in_the_site_zone(
    renderer: Renderer, make_notification: MakeNotification
) -> None:
    line = headline(renderer, make_notification("slack:#x"), PhiPolicy.NONE)
    assert (
        line
        == "[ONC-2101] Wrong orderable · subject 014 · Week 12 restaging · Tue 3 Mar 2026 09:30 EST · CT3"
    )
    summer = alert_content(exam_start=datetime(2026, 7, 7, 13, 30, tzinfo=UTC))
    assert "Tue 7 Jul 2026 09:30 EDT" in headline(
        renderer, make_notification("slack:#x", content=summer), PhiPolicy.NONE
    )


def test_a_missing_field_raises_instead_of_printing_blank(tmp_path: Path) -> None:
    (tmp_path / "instructions").mkdir()
    (tmp_path / "instructions" / "default.html").write_text("<p>{{ contrast_phase }}</p>")
    renderer = Renderer(site_dir=tmp_path)
    with pytest.raises(jinja2.UndefinedError, match="contrast_phase"):
        renderer.render("instructions/default.html", {"trial": "ONC-2101"})
    with pytest.raises(NotifierError, match="contrast_phase") as caught:
        render_sheet(renderer, alert_content(), PhiPolicy.NONE)
    assert caught.value.permanent


def test_a_template_naming_a_forbidden_field_fails_rather_than_leaks(tmp_path: Path) -> None:
    (tmp_path / "instructions").mkdir()
    (tmp_path / "instructions" / "default.html").write_text("<p>{{ mrn }}</p>")
    renderer = Renderer(site_dir=tmp_path)
    with pytest.raises(NotifierError) as caught:
        render_sheet(renderer, alert_content(), PhiPolicy.LIMITED)
    assert MRN not in str(caught.value)
    assert render_sheet(renderer, alert_content(), PhiPolicy.FULL) == f"<p>{MRN}</p>"


def test_site_templates_come_before_the_packaged_ones(tmp_path: Path) -> None:
    (tmp_path / "alerts").mkdir()
    (tmp_path / "alerts" / "email.txt").write_text("site: {{ trial }}\n")
    settings = Settings.model_validate({"notifications": {"templates_dir": str(tmp_path)}})
    renderer = Renderer.from_settings(settings)
    assert renderer.render("alerts/email.txt", {"trial": "ONC-2101"}) == "site: ONC-2101\n"
    assert renderer.has_template("instructions/default.html")  # still falls back to the package


def test_html_is_autoescaped_and_text_is_not(renderer: Renderer) -> None:
    html = renderer.env.from_string("{{ v }}").render(v="<b>&")  # strings default to escaped
    assert html == "&lt;b&gt;&amp;"
    sheet = render_sheet(renderer, alert_content(parameters=("kV <120> & mAs",)), PhiPolicy.NONE)
    assert "kV &lt;120&gt; &amp; mAs" in sheet
    assert renderer.render(
        "common/headline.txt", {"kind": "digest", "trial": "A&B", "day": date(2026, 3, 3), "entries": []}
    )


def test_a_naive_time_given_to_a_template_is_an_error(renderer: Renderer) -> None:
    with pytest.raises(ValueError, match="naive"):
        renderer.format_datetime(datetime(2026, 3, 3, 9, 30))


def test_a_protocol_sheet_that_does_not_exist_fails_loudly(renderer: Renderer) -> None:
    with pytest.raises(NotifierError, match="not found"):
        render_sheet(renderer, alert_content(instructions_template="neu-4405-mr.html"), PhiPolicy.NONE)
    with pytest.raises(NotifierError, match="plain file name"):
        sheet_template(alert_content(instructions_template="../../etc/passwd.html"))


def test_packaged_templates_are_package_data() -> None:
    import importlib.resources

    root = importlib.resources.files("templates")
    for name in ("instructions/default.html", "alerts/email.html", "alerts/email.txt", "digest/email.html"):
        assert root.joinpath(name).is_file(), name
