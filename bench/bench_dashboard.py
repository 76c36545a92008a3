"""Benchmark of the dashboard (a script, not a test): prints latencies.

    .venv/bin/python bench/bench_dashboard.py [--exams 200000] [--findings 20000] [--subjects 500]
                                              [--users 20] [--requests 10] [--database URL]

Fills a store (a fresh PostgreSQL database on 127.0.0.1:5432 when reachable, else a
temporary SQLite file; or ``--database``, which must be empty) with one trial of
``--subjects`` subjects x 12 visits (the matrix), ``--exams`` exams spread over two years
(300 research exams booked in the next 14 days) and ``--findings`` findings, serves the app
with uvicorn on 127.0.0.1, signs ``--users`` users in (each a process of its own, as each
person has a browser) and has each request the Upcoming page, the trial's matrix and issue
16's pages (Today, the findings work queue, audit, accounts, an enrolment's form)
``--requests`` times each, all at once, as fast as the answers come (no pause between
clicks). Prints p50/p95/max per page and, with ``--workers`` > 1, the CPU the web workers
and PostgreSQL spent per request. Targets: 1,000,000 exams and 100,000 findings at 20
users, p95 <= 300 ms (issue 6) and <= 150 ms for every page (issue 16).
"""

from __future__ import annotations

import argparse
import html
import http.client
import multiprocessing
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # after the path set-up, so the script runs from a checkout
import uvicorn
from sqlalchemy import Engine, func, insert, select, text, update

from monitor.config import Settings
from monitor.store.accounts import Role, add_user
from monitor.store.database import make_engine, upgrade
from monitor.store.schema import enrolments, exam_events, exams, findings, occurrences, trial_versions
from monitor.web import create_app

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TRIAL = "ONC-2101"
PROTOCOL = Path(__file__).resolve().parents[1] / "examples" / "trials" / "onc-2101-recist-ct.toml"
PASSWORD = "benchmark password"  # noqa: S105  (a throw-away bench account)
_BATCH = 10_000


def _postgres(reuse: bool) -> str | None:
    """A PostgreSQL database for the bench: fresh, or the previous run's with ``reuse``."""
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError:
        return None
    import psycopg

    name = "hiro_bench_dashboard"
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not (reuse and exists):
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def _insert(engine: Engine, table: object, rows: list[dict[str, object]]) -> None:
    with engine.begin() as conn:
        for start in range(0, len(rows), _BATCH):
            conn.execute(insert(table), rows[start : start + _BATCH])  # type: ignore[arg-type]


def fill(engine: Engine, n_exams: int, n_findings: int, n_subjects: int) -> None:
    with engine.begin() as conn:
        content = PROTOCOL.read_text(encoding="utf-8")
        conn.execute(
            insert(trial_versions).values(
                trial=TRIAL, version=1, content=content, sha256="x" * 64, source=PROTOCOL.name, loaded_at=NOW
            )
        )
        add_user(conn, "bench", Role.ADMIN, PASSWORD, NOW)
    _insert(
        engine,
        enrolments,
        [
            {
                "id": i + 1,
                "trial": TRIAL,
                "subject": f"S{i:04d}",
                "arm": "A",
                "status": "on_study",
                "anchors": {"c1d1": "2025-07-21"},
                "created_at": NOW,
                "updated_at": NOW,
            }
            for i in range(n_subjects)
        ],
    )
    upcoming = 300
    rows = []
    for i in range(n_exams):
        start = (
            NOW + timedelta(hours=1 + i * 14 * 24 // upcoming)
            if i < upcoming
            else (NOW - timedelta(days=700) + timedelta(minutes=(i * 1051) % (730 * 24 * 60)))
        )
        rows.append(
            {
                "id": i + 1,
                "source": "epic",
                "external_id": f"X{i}",
                "status": "booked",
                "last_event": "booked",
                "mrn": f"M{i % 200_000}",
                "patient_ids": [],
                "resources": [],
                "comments": [],
                "extra": {},
                "modality": "CT",
                "location": f"CT{i % 4}",
                "procedure_code": "IMG1234",
                "start_at": start,
                "created_at": NOW,
                "updated_at": NOW,
            }
        )
    _insert(engine, exams, rows)
    visits = []
    for s in range(n_subjects):
        for v in range(12):
            due = date(2025, 7, 21) + timedelta(weeks=6 * v)
            exam_id = s + 1 if v == 11 and s < upcoming else None
            visits.append(
                {
                    "key": f"{TRIAL}:S{s:04d}:v#{v}",
                    "enrolment_id": s + 1,
                    "trial": TRIAL,
                    "subject": f"S{s:04d}",
                    "timepoint": f"v{v}",
                    "number": v,
                    "label": f"Week {6 * v} restaging",
                    "due": due,
                    "window_start": due - timedelta(days=7),
                    "window_end": due + timedelta(days=7),
                    "status": "booked" if exam_id else "missed",
                    "exam_id": exam_id,
                    "version": "1",
                    "updated_at": NOW,
                }
            )
    _insert(engine, occurrences, visits)
    _insert(
        engine,
        findings,
        [
            {
                "key": f"f{i}",
                "kind": "missed" if i % 10 else "wrong_orderable",
                "severity": "critical",
                "trial": TRIAL,
                "subject": f"S{i % n_subjects:04d}",
                "enrolment_id": i % n_subjects + 1,
                "exam_id": (i % n_exams) + 1 if i % 10 == 0 else None,
                "detail": "bench",
                "status": "open",
                "opened_at": NOW,
                "updated_at": NOW,
            }
            for i in range(n_findings)
        ],
    )


def feed_changes(engine: Engine, rate: float, stop: threading.Event) -> list[int]:
    """While ``stop`` is clear, record ``rate`` exam changes per second (an exam moved to
    another room and its event), as the feed does: each one changes the pages' data version."""
    done = [0]

    def run() -> None:
        number = 0
        while not stop.wait(1 / rate):
            number += 1
            exam_id = 1 + number % 300  # the upcoming research exams
            with engine.begin() as conn:
                room = f"CT{number % 4}"
                conn.execute(update(exams).where(exams.c.id == exam_id).values(location=room))
                conn.execute(
                    insert(exam_events).values(
                        exam_id=exam_id, kind="updated", location=room, recorded_at=NOW
                    )
                )
            done[0] += 1

    if rate > 0:
        threading.Thread(target=run, daemon=True).start()
    return done


class Served:
    """A running server: its address, how to stop it and its process (None: in this one)."""

    def __init__(self, base: str, close: Callable[[], None], pid: int | None = None) -> None:
        self.base = base
        self.close = close
        self.pid = pid


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` (Linux /proc); 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the web workers), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def _postgres_pids() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def cpu_now(served: Served) -> tuple[float, float]:
    """CPU seconds used so far by the web server's processes and by PostgreSQL's."""
    server = sum(_cpu_seconds(pid) for pid in _tree(served.pid)) if served.pid else 0.0
    return server, sum(_cpu_seconds(pid) for pid in _postgres_pids())


def serve_in_thread(engine: Engine, url: str, cache_seconds: float) -> Served:
    web = {"cookie_secure": False, "page_cache_seconds": cache_seconds}
    settings = Settings.model_validate({"database": {"url": url}, "web": web})
    app = create_app(settings, engine, clock=lambda: NOW)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)

    def close() -> None:
        server.should_exit = True

    return Served(f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}", close)


def serve_workers(url: str, workers: int, folder: str, cache_seconds: float) -> Served:
    """``hiro-monitor web --workers N`` in a subprocess (real clock: the bench's NOW is today's noon)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = Path(folder) / "bench.toml"
    config.write_text(
        f"[web]\ncookie_secure = false\npage_cache_seconds = {cache_seconds}\n", encoding="utf-8"
    )
    command = [
        str(Path(sys.executable).with_name("hiro-monitor")),
        "--config",
        str(config),
        "--database",
        url,
        "web",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    process = subprocess.Popen(command)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise SystemExit("hiro-monitor web did not start")
        time.sleep(0.2)

    def close() -> None:
        process.terminate()
        process.wait(30)

    return Served(base, close, process.pid)


def _request(
    connection: http.client.HTTPConnection, method: str, path: str, cookies: dict[str, str], body: str = ""
) -> tuple[int, bytes]:
    """One request on the user's kept-alive connection, its cookies sent and kept."""
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else {}
    if body:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    connection.request(method, path, body=body or None, headers=headers)
    response = connection.getresponse()
    content = response.read()
    for header in response.headers.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        cookies[name.strip()] = rest.split(";", 1)[0]
    return response.status, content


def _user(base: str, paths: list[str], requests: int, together: Any, answers: Any) -> None:
    """One person at a browser (a process): signs in, then for each page asks once (warm-up:
    each worker process builds its cached parts before the clock starts), waits for the
    others, asks ``requests`` times as fast as answers come, and reports the latencies."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    cookies: dict[str, str] = {}
    _, form = _request(connection, "GET", "/login", cookies)
    token = re.search(rb'name="csrf_token" value="([^"]+)"', form).group(1).decode()  # type: ignore[union-attr]
    body = urlencode({"username": "bench", "password": PASSWORD, "csrf_token": token})
    _request(connection, "POST", "/login", cookies, body)
    cookies.pop("hiro_changed", None)  # signing in changed nothing the pages show
    for path in paths:
        status, _ = _request(connection, "GET", path, cookies)
        assert status == 200, (path, status)
        together.wait(120)
        times = []
        for _ in range(requests):
            begun = time.perf_counter()
            status, _ = _request(connection, "GET", path, cookies)
            times.append((time.perf_counter() - begun) * 1000)
            assert status == 200, (path, status)
        answers.put((path, times))
        together.wait(600)


def _form_fields(page: bytes, action: str) -> dict[str, str]:
    """The fields of the form posting to ``action`` as the page fills them in."""
    text = page.decode()
    form = text[text.index(f'action="{action}"') :]
    form = form[: form.index("</form>")]
    fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', form))
    for name, options in re.findall(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', form, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected', options)
        fields[name] = chosen.group(1) if chosen else ""
    for name, value in re.findall(r'<textarea[^>]*name="([^"]+)"[^>]*>([^<]*)</textarea>', form):
        fields[name] = html.unescape(value)
    return fields


def _writer(base: str, rate: float, stop: Any, answers: Any) -> None:
    """A coordinator at work while the others read (a process): ``rate`` changes a second,
    alternately acknowledging a finding in the work queue and saving an enrolment's form
    with its monitoring start moved (which re-evaluates the subject); reports the latencies."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    cookies: dict[str, str] = {}
    _, form = _request(connection, "GET", "/login", cookies)
    token = re.search(rb'name="csrf_token" value="([^"]+)"', form).group(1).decode()  # type: ignore[union-attr]
    _request(connection, "POST", "/login", cookies, urlencode({"username": "bench", "password": PASSWORD,
                                                                 "csrf_token": token}))  # fmt: skip
    _, queue = _request(connection, "GET", "/findings", cookies)
    finding_ids = re.findall(rb'name="finding" value="(\d+)"', queue)
    subject = f"/trials/{TRIAL}/subjects/S0001"
    _, page = _request(connection, "GET", subject, cookies)
    fields = _form_fields(page, subject)
    # The bench's subjects are stored without an MRN or a consent date; the form asks for both.
    fields["mrns"] = fields["mrns"] or "B0000001"
    fields["anchor_consent"] = fields.get("anchor_consent") or "2025-07-01"
    times: list[float] = []
    number = 0
    while not stop.wait(1 / rate):
        number += 1
        if number % 2:
            path = "/findings/review"
            finding = finding_ids[number % len(finding_ids)].decode()
            body = urlencode({"action": "acknowledge", "finding": finding, "comment": "bench",
                              "csrf_token": fields["csrf_token"]})  # fmt: skip
        else:
            path = subject
            fields["monitoring_start"] = "2025-01-01" if number % 4 else "2025-01-02"
            body = urlencode(fields)
        begun = time.perf_counter()
        status, _ = _request(connection, "POST", path, cookies, body)
        times.append((time.perf_counter() - begun) * 1000)
        assert status in (200, 303), (path, status)
    answers.put(("writes", times))


def _checked(answer: tuple[str, list[float]], path: str) -> list[float]:
    assert answer[0] == path, answer[0]
    return answer[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exams", type=int, default=200_000)
    parser.add_argument("--findings", type=int, default=20_000)
    parser.add_argument("--subjects", type=int, default=500)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--database")
    parser.add_argument(
        "--page-cache-seconds", type=float, default=10, help="[web] page_cache_seconds; 0: off"
    )
    parser.add_argument(
        "--changes",
        type=float,
        default=0,
        help="exam changes per second during the run (each rebuilds the pages)",
    )
    parser.add_argument(
        "--writes",
        type=float,
        default=0,
        help="changes per second by a coordinator in the dashboard during the run (reviews, enrolment saves)",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="keep the last run's PostgreSQL data if it has --exams exams"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="1: uvicorn in a thread; more: hiro-monitor web --workers"
    )
    args = parser.parse_args()
    folder = tempfile.mkdtemp()
    url = args.database or _postgres(args.reuse) or f"sqlite:///{folder}/bench.db"
    engine = make_engine(url, pool_size=args.users + 5) if "postgresql" in url else make_engine(url)
    upgrade(engine)
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(exams)).scalar_one()
    if stored == args.exams and args.reuse:
        print(f"{engine.dialect.name}: reusing {stored} exams")
    else:
        started = time.perf_counter()
        fill(engine, args.exams, args.findings, args.subjects)
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
        print(
            f"{engine.dialect.name}: {args.exams} exams, {args.findings} findings, "
            f"{args.subjects} subjects x 12 visits stored in {time.perf_counter() - started:.1f} s"
        )
    cache = args.page_cache_seconds
    if args.workers == 1:
        stop = serve_in_thread(engine, url, cache)
    else:
        stop = serve_workers(url, args.workers, folder, cache)
    pages = (
        ("/upcoming", "upcoming (14 days)"),
        (f"/trials/{TRIAL}", f"trial matrix ({args.subjects} subjects)"),
        ("/today", "today"),
        ("/findings", "findings work queue (page 1)"),
        ("/findings?severity=critical&status=all", "findings, filtered"),
        ("/audit", "audit trail (100 a page)"),
        ("/accounts", "accounts"),
        (f"/trials/{TRIAL}/subjects/S0001", "an enrolment's form (with the rescheduling assistant)"),
    )
    # Each user is a process of its own, as each person has a browser: twenty client
    # threads under one interpreter lock queued behind each other and counted it as latency.
    context = multiprocessing.get_context("fork")  # before the feed thread starts
    together = context.Barrier(args.users + 1)
    answers: Any = context.Queue()
    paths = [path for path, _ in pages]
    users = [
        context.Process(target=_user, args=(stop.base, paths, args.requests, together, answers))
        for _ in range(args.users)
    ]
    for user in users:
        user.start()
    stop_writer = context.Event()
    writer = context.Process(target=_writer, args=(stop.base, args.writes, stop_writer, answers))
    if args.writes:
        writer.start()
    stop_feed = threading.Event()
    changes = feed_changes(engine, args.changes, stop_feed)
    began = time.perf_counter()
    for path, label in pages:
        together.wait(120)  # every user signed in and has asked once (warm: see _user)
        server_before, database_before = cpu_now(stop)
        together.wait(600)  # every user done
        server_after, database_after = cpu_now(stop)
        samples = sorted(t for _ in users for t in _checked(answers.get(timeout=60), path))
        p95 = samples[int(len(samples) * 0.95) - 1]
        cpu = ""
        if stop.pid:  # CPU per request: what the server's workers and PostgreSQL spent
            cpu = (
                f"; CPU/request: web {(server_after - server_before) * 1000 / len(samples):.1f} ms, "
                f"PostgreSQL {(database_after - database_before) * 1000 / len(samples):.1f} ms"
            )
        print(
            f"{label:<32} {len(samples)} requests at {args.users} users: "
            f"p50 {statistics.median(samples):.0f} ms, p95 {p95:.0f} ms, max {samples[-1]:.0f} ms{cpu}"
        )
    for user in users:
        user.join(30)
    if args.writes:
        stop_writer.set()
        writes = sorted(_checked(answers.get(timeout=60), "writes"))
        writer.join(30)
        print(
            f"{'dashboard changes (POST)':<32} {len(writes)} during the run: "
            f"p50 {statistics.median(writes):.0f} ms, p95 {writes[int(len(writes) * 0.95) - 1]:.0f} ms, "
            f"max {writes[-1]:.0f} ms"
        )
    stop_feed.set()
    if args.changes:
        elapsed = time.perf_counter() - began
        print(f"exam changes during the run: {changes[0]} ({changes[0] / elapsed:.1f}/s)")
    stop.close()
    engine.dispose()


if __name__ == "__main__":
    main()
