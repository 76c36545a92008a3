"""A real office's first import: no flood of false "missed", and the history it already has.

Through the commands, on a SQLite file and the PostgreSQL server when reachable.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from monitor.store.database import make_engine
from monitor.store.schema import enrolments, exams, findings, occurrences
from tests.monitor.trial_setup import ENROLMENTS_CSV, EXAMPLES, NOW, TRIAL_FILES, cli

VISITS_CSV = EXAMPLES / "visits.csv"  # the example office's history as of NOW's day


def _load(capsys: pytest.CaptureFixture[str], url: str) -> None:
    code, _, err = cli(capsys, url, "trials", "load", *map(str, TRIAL_FILES))
    assert code == 0, err


def _counts(url: str, table: Any, column: str) -> Counter[str]:
    """How many rows have each value of ``column`` (findings: the open ones only)."""
    query = select(table.c[column])
    if table is findings:
        query = query.where(findings.c.status == "open")
    engine = make_engine(url)
    with engine.connect() as conn:
        found = Counter(conn.execute(query).scalars())
    engine.dispose()
    return found


def test_a_first_import_opens_no_missed_for_visits_before_the_office_watched(
    capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    _load(capsys, database_url)
    code, _, err = cli(capsys, database_url, "enroll", "import", str(ENROLMENTS_CSV))
    assert code == 0, err
    open_kinds = _counts(database_url, findings, "kind")
    assert "missed" not in open_kinds, open_kinds  # there were 78 before: windows of 2025
    statuses = _counts(database_url, occurrences, "status")
    assert statuses["before_monitoring"] >= 70 and "missed" not in statuses
    engine = make_engine(database_url)
    with engine.connect() as conn:
        started = set(conn.execute(select(enrolments.c.monitored_from)).scalars())
    engine.dispose()
    assert started == {date(2026, 11, 25)}  # the import's day, in the site's zone


def test_visits_already_done_come_with_the_import_and_the_matrix_shows_the_history(
    capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    _load(capsys, database_url)
    code, out, err = cli(
        capsys, database_url, "enroll", "import", str(ENROLMENTS_CSV), "--visits", str(VISITS_CSV)
    )
    assert code == 0, err
    assert "77 visit(s) recorded" in out
    statuses = _counts(database_url, occurrences, "status")
    assert statuses["done_in_window"] == 76 and statuses["done_out_of_window"] == 1
    assert "before_monitoring" not in statuses and "missed" not in statuses
    # The one deviation on record is a true finding (critical), too old to be alerted.
    assert _counts(database_url, findings, "kind")["late"] == 1
    # Again: nothing changes (a visit is recorded once).
    code, out, _ = cli(capsys, database_url, "enroll", "visits", str(VISITS_CSV))
    assert code == 0 and "0 visit(s) recorded" in out
    assert sum(_counts(database_url, exams, "source").values()) == 77


def test_a_bad_visits_file_names_each_line_and_imports_nothing(
    capsys: pytest.CaptureFixture[str], database_url: str, tmp_path: Path
) -> None:
    _load(capsys, database_url)
    assert cli(capsys, database_url, "enroll", "import", str(ENROLMENTS_CSV))[0] == 0
    bad = tmp_path / "visits.csv"
    bad.write_text(
        "trial,subject,timepoint,date\n"
        "ONC-2101,2101-001,screening,2025-07-10\n"
        "ONC-2101,2101-001,week_99,2025-09-01\n"
        "ONC-2101,9999,screening,2025-07-10\n"
        "ONC-2101,2101-002,screening,soon\n"
    )
    code, _, err = cli(capsys, database_url, "enroll", "visits", str(bad))
    assert code == 1
    assert "line 3: timepoint 'week_99' is not in ONC-2101" in err
    assert "line 4: subject 9999 is not enrolled in ONC-2101" in err
    assert "line 5: date: not a date" in err and "nothing imported (3 problem(s))" in err
    assert "E1000" not in err
    assert sum(_counts(database_url, exams, "source").values()) == 0


def test_the_monitoring_start_is_set_on_add_and_update(
    capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    _load(capsys, database_url)
    c1d1 = NOW.date() - timedelta(weeks=30)
    code, _, err = cli(
        capsys, database_url, "enroll", "add", "--trial", "ONC-2101", "--subject", "2101-090",
        "--mrn", "E10090", "--arm", "A", "--anchor", f"consent={c1d1 - timedelta(days=21)}",
        "--anchor", f"c1d1={c1d1}",
    )  # fmt: skip
    assert code == 0, err
    assert _counts(database_url, findings, "kind")["missed"] == 0  # watched from today: history
    code, _, err = cli(
        capsys, database_url, "enroll", "update", "--trial", "ONC-2101", "--subject", "2101-090",
        "--monitoring-start", str(c1d1 - timedelta(days=30)),
    )  # fmt: skip
    assert code == 0, err
    assert _counts(database_url, findings, "kind")["missed"] >= 3  # watched since screening: they count


def test_evaluate_at_another_moment_shows_what_it_would_find_and_records_nothing(
    capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    _load(capsys, database_url)
    assert (
        cli(capsys, database_url, "enroll", "import", str(ENROLMENTS_CSV), "--visits", str(VISITS_CSV))[0]
        == 0
    )
    before = _counts(database_url, findings, "kind")
    # Three weeks on, nothing booked: the two visits due now will have been missed.
    code, out, err = cli(capsys, database_url, "evaluate", "--at", "2026-12-16")
    assert code == 0, err
    assert "as of 2026-12-16 (nothing recorded)" in out and re.search(r"missed\s+critical\s+2\b", out)
    assert _counts(database_url, findings, "kind") == before
    code, out, _ = cli(capsys, database_url, "evaluate", "--at", "2026-12-16T09:00", "--json")
    assert {f["kind"] for f in json.loads(out)} >= {"missed", "in_window"}
    with pytest.raises(SystemExit) as usage:
        cli(capsys, database_url, "evaluate", "--at", "soon")
    assert usage.value.code == 2 and "write YYYY-MM-DD" in capsys.readouterr().err
