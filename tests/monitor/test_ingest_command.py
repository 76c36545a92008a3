"""``hiro-monitor ingest`` names every rejected message by file and place, fits the terminal,
and prints no patient data."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.monitor.hl7_messages import BIRTH_DATE, MRN, PATIENT_NAME, siu
from tests.monitor.trial_setup import cli


def test_ingest_names_each_rejected_message_by_file_place_and_control_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    good = tmp_path / "a-good-day-of-bookings-from-the-epic-interface-engine.hl7"
    good.write_bytes(siu(control_id="G1") + b"\n" + siu(control_id="G2", csn="7000000002"))
    bad = tmp_path / "bad.hl7"
    bad.write_bytes(
        siu(control_id="OK3", csn="7000000003") + b"\n" + siu(control_id="B1", start="20261301093000")
    )
    junk = tmp_path / "junk.hl7"
    junk.write_bytes(b"this is not an HL7 message")
    code, out, err = cli(capsys, f"sqlite:///{tmp_path / 's.db'}", "ingest", str(bad), str(junk), str(good))
    assert code == 1, err
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80  # the progress bar with a long file name too
    assert "5 messages: 3 accepted, 0 duplicate, 0 skipped, 2 rejected, 0 not stored" in out
    assert "rejected, by file: bad.hl7 1, junk.hl7 1" in out
    assert any(
        line.startswith("  bad.hl7 #2  B1  message ") and "AIS-4: invalid timestamp" in line for line in lines
    )
    assert any(line.startswith("  junk.hl7 #1  (no MSH-10)  message ") for line in lines)
    for value in (MRN, PATIENT_NAME, PATIENT_NAME.split("^")[0], BIRTH_DATE):
        assert value not in out + err
