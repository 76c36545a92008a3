"""Soak test (issue 8): the simulator drives a daemon subprocess for a long time.

    .venv/bin/python bench/soak.py [--minutes 30] [--rate 50] [--sample-seconds 30] [--patients 3000]
                                   [--seed S] [--keep]

The daemon (``hiro-monitor run``, its own process) starts on a store holding the example
trials and enrolments of ``examples/``; the simulator sends its realistic SIU/ORM feed at
``--rate`` messages per second over MLLP, waiting for each ACK, with research bookings for
the enrolled subjects (some with deliberate problems). Every ``--sample-seconds`` the
daemon's RSS is read from /proc. At the end the daemon gets SIGTERM and must exit 0; then:

- every ACK must have been AA, and the daemon must have logged no ERROR;
- the open findings must equal those of a from-scratch re-evaluation: a copy of the store
  with findings, occurrences and the outbox emptied, then ``hiro-monitor evaluate``;
  compared by finding key, kind and status;
- the outbox (``notifications``, when that table exists) must hold every notification the
  from-scratch evaluation plans (rows planned and later withdrawn are counted, not failed).

Prints the figures and exits 1 if a check failed. A script, not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import Engine, inspect, select, text  # noqa: E402

from monitor.commands.simulate import research_subjects, send_feed  # noqa: E402
from monitor.config import Settings  # noqa: E402
from monitor.demo import load_examples  # noqa: E402
from monitor.evaluation import evaluate_all  # noqa: E402
from monitor.feeds.hl7.simulated import SimulatedFeed  # noqa: E402
from monitor.store.database import make_engine, upgrade  # noqa: E402
from monitor.store.schema import findings  # noqa: E402

PYTHON = sys.executable


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while True:
            try:
                self.samples.append((time.monotonic() - started, _rss_mib(self.pid)))
            except OSError:
                return
            if self.stop.wait(self.every):
                return


def _slope_per_10_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares RSS growth in MiB per 10 minutes (after the first third: warm-up)."""
    tail = samples[len(samples) // 3 :]
    if len(tail) < 2:
        return 0.0
    n = len(tail)
    mean_t = sum(t for t, _ in tail) / n
    mean_r = sum(r for _, r in tail) / n
    var = sum((t - mean_t) ** 2 for t, _ in tail)
    cov = sum((t - mean_t) * (r - mean_r) for t, r in tail)
    return cov / var * 600 if var else 0.0


def _prepare(url: str) -> Settings:
    settings = Settings.model_validate({"database": {"url": url}})
    engine = make_engine(url)
    upgrade(engine)
    now = datetime.now(UTC)
    load_examples(engine, now)
    evaluate_all(engine, settings, now)
    engine.dispose()
    return settings


def _start_daemon(url: str, log_path: Path) -> tuple[subprocess.Popen[str], int]:
    log = log_path.open("w")
    process = subprocess.Popen(
        [PYTHON, "-m", "monitor.cli", "--log-level", "WARNING", "--database", url, "run", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        cwd=REPO,
    )
    assert process.stdout is not None
    for line in process.stdout:
        found = re.search(r"MLLP listening on .*:(\d+)", line)
        if found:
            return process, int(found.group(1))
    raise RuntimeError(f"the daemon did not start; see {log_path}")


def _open_findings(engine: Engine) -> dict[str, tuple[str, str]]:
    query = select(findings.c.key, findings.c.kind, findings.c.status).where(findings.c.status == "open")
    with engine.connect() as conn:
        return {row.key: (row.kind, row.status) for row in conn.execute(query)}


def _outbox(engine: Engine) -> dict[str, str] | None:
    if "notifications" not in inspect(engine).get_table_names():
        return None
    with engine.connect() as conn:
        return {row[0]: row[1] for row in conn.execute(text("SELECT dedupe_key, status FROM notifications"))}


def _fresh_copy(source: Path, target: Path) -> str:
    """A copy of the store (SQLite backup API) with findings and outbox emptied, re-evaluated."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    url = f"sqlite:///{target}"
    engine = make_engine(url)
    tables = set(inspect(engine).get_table_names())
    with engine.begin() as conn:
        for table in ("notifications", "findings", "occurrences"):
            if table in tables:
                conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608 (fixed table names)
    engine.dispose()
    subprocess.run(
        [PYTHON, "-m", "monitor.cli", "--log-level", "WARNING", "--database", url, "evaluate"],
        check=True,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    return url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=50.0, help="messages per second (default 50)")
    parser.add_argument("--sample-seconds", type=float, default=30.0, help="RSS sampling period (default 30)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--patients",
        type=int,
        default=3000,
        help="simulated patients, MRNs E10000... (the example enrolments are among them; default 3000). "
        "Few patients (e.g. 100) give each hundreds of exams within minutes: a stress test of the "
        "engine whose working set, and RSS, grows with each patient's history",
    )
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="hiro-soak-"))
    db_path = workdir / "soak.db"
    url = f"sqlite:///{db_path}"
    settings = _prepare(url)
    zone = ZoneInfo(settings.hl7.timezone)
    engine = make_engine(url)
    due = research_subjects(engine, datetime.now(zone).date())
    engine.dispose()
    count = int(args.minutes * 60 * args.rate)
    print(f"soak: {args.minutes:g} min at {args.rate:g} msg/s = {count} messages; store {db_path}")
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; {len(due)} research visits due")

    process, port = _start_daemon(url, workdir / "daemon.log")
    sampler = RssSampler(process.pid, args.sample_seconds)
    sampler.start()
    feed = SimulatedFeed(
        seed=args.seed,
        zone=zone,
        start=datetime.now(zone),
        patients=args.patients,  # E10000-...: the example enrolments (E10001 ...) are among them
        order_rate=0.1,
        research=due,
        research_rate=0.2,
        problem_rate=0.25,
    )
    result = asyncio.run(send_feed("127.0.0.1", port, feed, count, args.rate))
    sampler.samples.append((sampler.samples[-1][0] + 0.1 if sampler.samples else 0.0, _rss_mib(process.pid)))
    sampler.stop.set()
    stop_started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    exit_code = process.wait(60)
    stop_seconds = time.monotonic() - stop_started
    log_text = (workdir / "daemon.log").read_text()
    errors = len(re.findall(r" (ERROR|CRITICAL) |Traceback", log_text))

    engine = make_engine(url)
    live, outbox = _open_findings(engine), _outbox(engine)
    engine.dispose()
    fresh_engine = make_engine(_fresh_copy(db_path, workdir / "fresh.db"))
    fresh, fresh_outbox = _open_findings(fresh_engine), _outbox(fresh_engine)
    fresh_engine.dispose()

    rss = [r for _, r in sampler.samples]
    print(
        f"sent {result.sent} in {result.seconds:.1f} s ({result.rate:.1f} msg/s); ACKs {dict(result.acks)}; "
        f"{feed.orders} orders, deliberate problems {feed.problems}"
    )
    print(
        f"RSS MiB: start {rss[0]:.1f}, end {rss[-1]:.1f}, min {min(rss):.1f}, max {max(rss):.1f} "
        f"({len(rss)} samples); slope after warm-up {_slope_per_10_min(sampler.samples):+.2f} MiB/10 min"
    )
    print("RSS samples MiB: " + " ".join(f"{r:.0f}" for r in rss))
    print(f"shutdown: exit {exit_code} in {stop_seconds:.2f} s; ERROR lines in the daemon log: {errors}")
    missing = {k: v for k, v in fresh.items() if live.get(k) != v}
    extra = {k: v for k, v in live.items() if k not in fresh}
    kinds: dict[str, int] = {}
    for kind, _ in live.values():
        kinds[kind] = kinds.get(kind, 0) + 1
    by_kind = dict(sorted(kinds.items()))
    print(f"open findings: live {len(live)}, from scratch {len(fresh)}; by kind {by_kind}")
    print(f"  differing: {len(missing)} missing or different live, {len(extra)} only live")
    outbox_ok = True
    if outbox is None or fresh_outbox is None:
        print("outbox: no notifications table in this schema")
    else:
        absent = set(fresh_outbox) - set(outbox)
        outbox_ok = not absent
        statuses: dict[str, int] = {}
        for status in outbox.values():
            statuses[status] = statuses.get(status, 0) + 1
        print(
            f"outbox: live {len(outbox)} rows {statuses}, from scratch {len(fresh_outbox)}; "
            f"planned from scratch but absent live: {len(absent)}; "
            f"live rows not planned from scratch: {len(set(outbox) - set(fresh_outbox))}"
        )
    for key in list(missing)[:5] + list(extra)[:5]:
        print(f"  e.g. {key}: live {live.get(key)} / from scratch {fresh.get(key)}")
    ok = (
        result.acks.get("AA", 0) == count
        and exit_code == 0
        and errors == 0
        and not missing
        and not extra
        and outbox_ok
    )
    print("SOAK OK" if ok else "SOAK FAILED")
    if not args.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"kept {workdir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
