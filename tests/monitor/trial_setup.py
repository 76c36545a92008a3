"""Shared set-up for the registry and evaluation tests: the example trials and enrolments in a store."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from monitor.cli import main
from monitor.clock import Clock, FixedClock
from monitor.store.registry import import_enrolments, store_protocol
from monitor.store.schema import enrolments, findings, occurrences
from rules import load_protocol

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
TRIAL_FILES = sorted((EXAMPLES / "trials").glob("*.toml"))
ENROLMENTS_CSV = EXAMPLES / "enrolments.csv"
# The Week 72 restaging CT of ONC-2101 subject 2101-001 (C1D1 2025-07-21) is due 2026-12-07,
# window 2026-11-30..2026-12-14: the default SIU booking (2026-12-01 09:30) falls inside it.
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
# Every MRN in the example registry, and the second PID-3 identifier of tests.monitor.hl7_messages.siu.
EXAMPLE_MRNS = ("E10001", "E10002", "E10003", "E90003", "E10004", "E10005", "E10006", "E10007", "E10008",
                "E10009", "E10010", "E10011", "99887766")  # fmt: skip


def cli(
    capsys: pytest.CaptureFixture[str], url: str, *args: str, clock: Clock | None = None
) -> tuple[int, str, str]:
    """Run ``hiro-monitor --database url ARGS`` in-process, its ``now`` from ``clock`` (default:
    fixed at :data:`NOW`); returns (exit code, stdout, stderr)."""
    code = main(["--database", url, "--log-level", "WARNING", *args], clock=clock or FixedClock(NOW))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# The example office has watched its subjects since before the first of them consented:
# every visit of the example schedule is the office's business (a fresh import would make
# the older ones history: tests/monitor/test_monitoring_start.py).
WATCHED_SINCE = date(2025, 1, 1)


def load_examples(engine: Engine, now: datetime = NOW) -> None:
    """The three example protocols and the example enrolments, stored as the commands would."""
    with engine.begin() as conn:
        for path in TRIAL_FILES:
            text = path.read_text(encoding="utf-8")
            store_protocol(conn, load_protocol(text, path.name), text, path.name, now)
        import_enrolments(conn, ENROLMENTS_CSV.read_text(encoding="utf-8"), now, today=WATCHED_SINCE)


def enrolment_id(engine: Engine, trial: str, subject: str) -> int:
    with engine.connect() as conn:
        found = conn.execute(
            select(enrolments.c.id).where(enrolments.c.trial == trial, enrolments.c.subject == subject)
        ).scalar_one()
    return int(found)


def finding_rows(engine: Engine, **where: Any) -> list[Any]:
    """Findings as rows (all columns), ordered by id, filtered by column equality."""
    query = select(findings).order_by(findings.c.id)
    for name, value in where.items():
        query = query.where(findings.c[name] == value)
    with engine.connect() as conn:
        return list(conn.execute(query))


def occurrence_row(engine: Engine, key: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(occurrences).where(occurrences.c.key == key)).one()
