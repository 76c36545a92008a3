"""The README's first command: the demo runs end to end with no configuration and no network."""

from __future__ import annotations

import re

import pytest

from monitor.cli import main


def test_demo_feeds_the_example_trials_and_prints_exams_findings_and_a_dashboard_login(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert (
        main(["--log-level", "WARNING", "demo", "--duration", "0", "--messages", "40", "--rate", "500"]) == 0
    )
    out = capsys.readouterr().out
    assert "3 example trials loaded" in out
    assert re.search(r"Dashboard: http://127\.0\.0\.1:\d+/  \(user demo, password \S+\)", out)
    assert "ACKs received: {'AA': 40}" in out
    assert re.search(r"Exams \(\d+", out) and re.search(r"Findings \(\d+\)", out)
    assert "E10001" not in out.split("Findings (")[1]  # findings name subjects, never MRNs
