"""``hiro-monitor trials ...`` and ``enroll ...`` run in-process against a real store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.monitor.trial_setup import ENROLMENTS_CSV, EXAMPLE_MRNS, TRIAL_FILES, cli

BAD_PROTOCOL = """
id = "BAD-1"
title = "A protocol with four mistakes"
anchor_is_day = 1

[anchors]
required = ["c1d1"]

[exams.ct]
modality = "CT"
orderables = ["CT1"]

[[timepoints]]
id = "screening"
exams = ["ct"]
anchor = "c1d1"
window = { from = "-1d", to = "-28d" }

[[timepoints]]
id = "restaging"
exams = ["ct", "pet"]
anchor = "consent"
every = "6 weeks"
window = "+-7d"

[routing]
coordinators = ["email:bad-team@example.org"]
"""


@pytest.fixture
def trials_dir(tmp_path: Path) -> Path:
    """A writable copy of the example protocols."""
    folder = tmp_path / "trials"
    folder.mkdir()
    for path in TRIAL_FILES:
        shutil.copy(path, folder / path.name)
    return folder


def _load_all(capsys: pytest.CaptureFixture[str], url: str) -> None:
    code, _, err = cli(capsys, url, "trials", "load", *map(str, TRIAL_FILES))
    assert code == 0, err


def test_validate_reports_every_problem_with_file_key_path_and_fix_and_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad-1.toml"
    bad.write_text(BAD_PROTOCOL, encoding="utf-8")
    code, out, err = cli(capsys, "sqlite://", "trials", "validate", str(bad), str(TRIAL_FILES[0]))
    assert code == 1
    lines = [line.strip() for line in err.splitlines() if line.startswith("  ")]
    expected_paths = (
        "timepoints[1].window",
        "timepoints[2].every",
        "timepoints[2].exams[2]",
        "timepoints[2].anchor",
    )
    assert len(lines) == len(expected_paths)
    for path in expected_paths:
        assert any(line.startswith(f"{bad}: {path}: ") and "Fix: " in line for line in lines), path
    assert f"{TRIAL_FILES[0]}: ok" in out


def test_validate_accepts_the_example_protocols_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "sqlite://", "trials", "validate", *map(str, TRIAL_FILES))
    assert (code, err) == (0, "")
    assert out.count(": ok: ") == len(TRIAL_FILES)


def test_validate_reports_two_files_defining_one_trial(
    capsys: pytest.CaptureFixture[str], trials_dir: Path
) -> None:
    original = trials_dir / "onc-2101-recist-ct.toml"
    copy = trials_dir / "onc-2101-copy.toml"
    shutil.copy(original, copy)
    code, _, err = cli(capsys, "sqlite://", "trials", "validate", str(original), str(copy))
    assert code == 1
    assert f"{copy}: id: trial ONC-2101 is also defined in {original}" in err


def test_load_is_idempotent_and_a_changed_file_becomes_version_2(
    capsys: pytest.CaptureFixture[str], database_url: str, trials_dir: Path
) -> None:
    protocol = trials_dir / "onc-2101-recist-ct.toml"
    code, out, _ = cli(capsys, database_url, "trials", "load", str(protocol))
    assert code == 0 and "ONC-2101: version 1 stored (new trial)" in out
    code, out, _ = cli(capsys, database_url, "trials", "load", str(protocol))
    assert code == 0 and "ONC-2101: unchanged (version 1 is in force)" in out

    original = protocol.read_text(encoding="utf-8")
    protocol.write_text(original.replace('until = "48w"', 'until = "42w"'), encoding="utf-8")
    code, out, _ = cli(capsys, database_url, "trials", "load", str(protocol))
    assert code == 0
    assert "ONC-2101: version 2 stored (replaces 1)" in out
    assert "timepoint 'restaging' changed" in out

    code, out, _ = cli(capsys, database_url, "trials", "list", "--json")
    [listed] = json.loads(out)
    assert (listed["id"], listed["version"], listed["versions"]) == ("ONC-2101", 2, 2)
    assert listed["amendments"] == ["Original protocol v1.0", "Amendment 1"]

    protocol.write_text(original, encoding="utf-8")  # a revert is history too: version 3
    code, out, _ = cli(capsys, database_url, "trials", "load", str(protocol))
    assert "ONC-2101: version 3 stored (replaces 2, same text as version 1)" in out


def test_trials_list_fits_an_80_column_terminal_with_its_headers_whole(
    capsys: pytest.CaptureFixture[str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert cli(capsys, database_url, "trials", "load", *map(str, TRIAL_FILES))[0] == 0
    code, out, _ = cli(capsys, database_url, "trials", "list")
    assert code == 0
    assert max(len(line) for line in out.splitlines()) <= 80, out
    header = next(line for line in out.splitlines() if line.lstrip().startswith("trial"))
    assert header.split() == ["trial", "title", "version", "amendments", "enrolled", "loaded"]
    assert all(trial in out for trial in ("LYM-3302", "NEU-4405", "ONC-2101"))


def test_load_stores_nothing_when_any_file_has_a_problem(
    capsys: pytest.CaptureFixture[str], database_url: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad-1.toml"
    bad.write_text(BAD_PROTOCOL, encoding="utf-8")
    code, _, err = cli(capsys, database_url, "trials", "load", str(TRIAL_FILES[0]), str(bad))
    assert code == 1 and "nothing stored" in err
    code, out, _ = cli(capsys, database_url, "trials", "list", "--json")
    assert json.loads(out) == []


def test_csv_import_with_bad_rows_names_each_line_and_imports_nothing(
    capsys: pytest.CaptureFixture[str], database_url: str, tmp_path: Path
) -> None:
    _load_all(capsys, database_url)
    lines = ENROLMENTS_CSV.read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3].replace("2026-01-05", "2026-01-32")  # line 4: consent is not a date
    lines[6] = lines[6].replace("LYM-3302,3302-001,E10006,", "LYM-3302,3302-001,E10006,B")  # line 7: no arms
    lines[9] = lines[9].replace(",2026-01-19,", ",,")  # line 10: required randomisation missing
    broken = tmp_path / "enrolments.csv"
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")

    code, out, err = cli(capsys, database_url, "enroll", "import", str(broken))

    assert code == 1
    assert f"{broken}: line 4: consent: not a date (write YYYY-MM-DD)" in err
    assert f"{broken}: line 7: LYM-3302 has no arm 'B'" in err
    assert f"{broken}: line 10: the anchor date 'randomisation' is required by NEU-4405" in err
    assert "nothing imported (3 problem(s))" in err
    assert not [mrn for mrn in EXAMPLE_MRNS if mrn in err]
    code, out, _ = cli(capsys, database_url, "enroll", "list", "--json")
    assert json.loads(out) == []


def test_csv_import_of_the_examples_enrols_everyone_and_a_second_import_changes_nothing(
    capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    _load_all(capsys, database_url)
    code, out, err = cli(capsys, database_url, "enroll", "import", str(ENROLMENTS_CSV))
    assert code == 0, err
    assert "12 added, 0 updated, 0 unchanged" in out
    code, out, _ = cli(capsys, database_url, "enroll", "import", str(ENROLMENTS_CSV))
    assert "0 added, 0 updated, 12 unchanged" in out

    code, out, _ = cli(capsys, database_url, "enroll", "list", "--json", "--trial", "ONC-2101")
    listed = {row["subject"]: row for row in json.loads(out)}
    assert len(listed) == 5
    assert listed["2101-003"]["mrns"] == ["E10003", "E90003"]
    assert listed["2101-004"]["off_study"] == "2026-02-20"
    assert listed["2101-001"]["anchors"] == {"c1d1": "2025-07-21", "consent": "2025-07-01"}


def test_a_row_repeating_a_subject_is_refused_with_both_lines(
    capsys: pytest.CaptureFixture[str], database_url: str, tmp_path: Path
) -> None:
    _load_all(capsys, database_url)
    lines = ENROLMENTS_CSV.read_text(encoding="utf-8").splitlines()
    repeated = tmp_path / "repeated.csv"
    repeated.write_text("\n".join([*lines[:3], lines[1]]) + "\n", encoding="utf-8")
    code, _, err = cli(capsys, database_url, "enroll", "import", str(repeated))
    assert code == 1
    assert "line 4: subject 2101-001 of ONC-2101 is also on line 2" in err


def test_enroll_add_checks_the_protocol_then_enrols(
    capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    _load_all(capsys, database_url)
    base = ["enroll", "add", "--trial", "ONC-2101", "--subject", "2101-006", "--mrn", "E10012"]
    code, _, err = cli(capsys, database_url, *base, "--arm", "C", "--anchor", "consent=2026-02-02")
    assert code == 1
    assert "ONC-2101 2101-006: the anchor date 'c1d1' is required by ONC-2101" in err
    assert "ONC-2101 has no arm 'C' (arms: A, B)" in err
    assert "E10012" not in err

    good = [*base, "--arm", "A", "--anchor", "consent=2026-02-02", "--anchor", "c1d1=2026-02-23"]
    code, out, err = cli(capsys, database_url, *good)
    assert code == 0, err
    assert "enrolled ONC-2101 2101-006" in out
    code, _, err = cli(capsys, database_url, *good)
    assert code == 1 and "already enrolled (use enroll update)" in err


def test_an_mrn_already_held_by_another_subject_of_the_trial_is_refused(
    capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    _load_all(capsys, database_url)
    assert cli(capsys, database_url, "enroll", "import", str(ENROLMENTS_CSV))[0] == 0
    code, _, err = cli(
        capsys,
        database_url,
        *("enroll", "add", "--trial", "ONC-2101", "--subject", "2101-099", "--mrn", "E10002"),
        *("--anchor", "consent=2026-02-02", "--anchor", "c1d1=2026-02-23"),
    )
    assert code == 1
    assert "an MRN given is already that of subject 2101-002 of ONC-2101" in err
    assert "E10002" not in err


def test_enroll_update_changes_only_what_is_given(
    capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    _load_all(capsys, database_url)
    assert cli(capsys, database_url, "enroll", "import", str(ENROLMENTS_CSV))[0] == 0
    code, out, err = cli(
        capsys,
        database_url,
        *("enroll", "update", "--trial", "ONC-2101", "--subject", "2101-005"),
        *("--arm", "B", "--status", "on study", "--anchor", "c1d1=2026-04-27"),
    )
    assert code == 0, err
    code, out, _ = cli(capsys, database_url, "enroll", "list", "--json", "--trial", "ONC-2101")
    updated = next(row for row in json.loads(out) if row["subject"] == "2101-005")
    assert (updated["arm"], updated["status"]) == ("B", "on_study")
    assert updated["anchors"] == {"c1d1": "2026-04-27", "consent": "2026-03-30"}
    assert updated["mrns"] == ["E10005"]

    code, _, err = cli(
        capsys,
        database_url,
        "enroll",
        "update",
        "--trial",
        "ONC-2101",
        "--subject",
        "2101-005",
        "--anchor",
        "c1d1=",
    )
    assert code == 1 and "the anchor date 'c1d1' is required by ONC-2101" in err
    code, _, err = cli(capsys, database_url, "enroll", "update", "--trial", "ONC-2101", "--subject", "nobody")
    assert code == 1 and "not enrolled" in err
