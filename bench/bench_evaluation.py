"""Benchmark of evaluation over the store (a script, not a test): prints timings.

    .venv/bin/python bench/bench_evaluation.py [--enrolments 10000] [--trials 50] [--exams 300000]
                                               [--database URL] [--events 200]

Fills a fresh store (a temporary SQLite file unless ``--database`` names an empty one) with
the synthetic protocols, enrolments and exams of ``bench_rules.py``, then times:

1. ``evaluate_all`` on the empty findings table (opens everything), then with nothing
   changed: by the same evaluator 15 minutes later (the daemon's scheduled sweep, which
   judges only what changed: ``monitor.evaluation``), by a fresh one (``hiro-monitor
   evaluate`` or a restarted daemon: it starts from the judgements the sweeps stored) and by
   one judging everyone (``evaluate --full``: judges, compares, writes nothing); issue 15's
   targets: first run <= 4 s, nothing changed <= 2 s, RSS <= 300 MiB (the peak of a process
   of its own that only evaluates: the one that fills the store holds its 300,000 records);
2. the feed's re-evaluation after one exam event: an exam is moved by a day in the store,
   then ``Evaluator.evaluate_for_exams([exam])`` runs as the feed writer's hook does (one
   long-lived evaluator) — median and 95th percentile over ``--events`` events — and the
   same through the module-level ``evaluate_for_exams`` (a fresh evaluator, protocol parsed).
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine, select, update  # after the path set-up, so the script runs from a checkout

from bench.bench_rules import NOW, build, protocol_text
from monitor.config import Settings
from monitor.evaluation import Evaluator, evaluate_for_exams
from monitor.store.database import make_engine, upgrade
from monitor.store.registry import store_protocol
from monitor.store.schema import enrolment_mrns, enrolments, exams
from rules import Enrolment, ExamRecord, Trial

_BATCH = 5_000


def fill(engine: Engine, trials: list[Trial], subjects: list[Enrolment], records: list[ExamRecord]) -> None:
    with engine.begin() as conn:
        for number, trial in enumerate(trials):
            store_protocol(conn, trial, protocol_text(number), f"bench-{number}.toml", NOW)
        conn.execute(
            enrolments.insert(),
            [
                {
                    "id": e.id,
                    "trial": e.trial,
                    "subject": e.subject,
                    "arm": e.arm,
                    "status": e.status.value,
                    "off_study": e.off_study,
                    "anchors": {name: value.isoformat() for name, value in e.anchors.items()},
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for e in subjects
            ],
        )
        conn.execute(
            enrolment_mrns.insert(), [{"enrolment_id": e.id, "mrn": mrn} for e in subjects for mrn in e.mrns]
        )
        ordered = sorted(records, key=lambda record: record.id)
        for start in range(0, len(ordered), _BATCH):
            conn.execute(
                exams.insert(),
                [
                    {
                        "id": r.id,
                        "source": "bench",
                        "external_id": str(r.id),
                        "status": r.status.value,
                        "last_event": "booked",
                        "mrn": r.mrn,
                        "procedure_code": r.procedure_code,
                        "procedure_text": r.procedure_text,
                        "modality": r.modality,
                        "location": r.location,
                        "start_at": r.start,
                        "created_at": NOW,
                        "updated_at": NOW,
                    }
                    for r in ordered[start : start + _BATCH]
                ],
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--enrolments", type=int, default=10_000)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--exams", type=int, default=300_000)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--database", help="an EMPTY database URL (default: a temporary SQLite file)")
    parser.add_argument("--measure", metavar="URL", help=argparse.SUPPRESS)  # the child's part
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.events)
        return

    folder = tempfile.TemporaryDirectory()
    url = args.database or f"sqlite:///{folder.name}/bench.db"
    engine = make_engine(url)
    upgrade(engine)
    started = time.perf_counter()
    trials, subjects, records = build(args.enrolments, args.trials, args.exams)
    fill(engine, trials, subjects, records)
    print(
        f"store: {url.split(':', 1)[0]}, {len(trials)} trials, {len(subjects)} enrolments, "
        f"{len(records)} exams (filled in {time.perf_counter() - started:.1f} s)",
        flush=True,
    )
    engine.dispose()
    # The evaluation runs in a process of its own, so that its peak RSS is the evaluation's,
    # not that of the 300,000 synthetic records this one built to fill the store.
    subprocess.run([sys.executable, __file__, "--measure", url, "--events", str(args.events)], check=True)
    folder.cleanup()


def measure(url: str, events: int) -> None:
    engine = make_engine(url)
    settings = Settings.model_validate({"database": {"url": url}})

    evaluator = Evaluator(engine, settings)
    first = evaluator.evaluate_all(NOW)
    opened = sum(first.changes.opened.values())
    print(f"evaluate_all, first run:   {first.seconds:6.2f} s  ({opened} findings opened)")
    again = evaluator.evaluate_all(NOW + timedelta(minutes=15))
    print(
        f"evaluate_all, no change, the same evaluator 15 min later (the daemon's sweep): "
        f"{again.seconds:6.2f} s  ({again.enrolments} judged, {again.up_to_date} up to date)"
    )
    fresh = Evaluator(engine, settings).evaluate_all(NOW + timedelta(minutes=20))
    print(
        f"evaluate_all, no change, a fresh evaluator (hiro-monitor evaluate, a restart): "
        f"{fresh.seconds:6.2f} s  ({fresh.enrolments} judged, {fresh.up_to_date} up to date)"
    )
    full = Evaluator(engine, settings).evaluate_all(NOW + timedelta(minutes=20), full=True)
    print(
        f"evaluate_all, no change, judging everyone (hiro-monitor evaluate --full): "
        f"{full.seconds:6.2f} s  ({full.changes.unchanged} unchanged)"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the evaluating process: {peak:.0f} MiB (target <= 300)")

    rnd = random.Random(7)
    with engine.connect() as conn:
        query = select(exams.c.id, exams.c.start_at).where(
            exams.c.procedure_code != "IMG0009", exams.c.start_at.is_not(None)
        )
        research = [(int(row.id), row.start_at) for row in conn.execute(query.order_by(exams.c.id))]
    hook_ms: list[float] = []
    fresh_ms: list[float] = []
    scopes: list[int] = []
    for number in range(events):
        exam_id, start = rnd.choice(research)
        moved = start + timedelta(days=1 if number % 2 == 0 else -1)
        with engine.begin() as conn:
            conn.execute(update(exams).where(exams.c.id == exam_id).values(start_at=moved, updated_at=NOW))
        if number % 2 == 0:
            summary = evaluator.evaluate_for_exams([exam_id], NOW)
            hook_ms.append(summary.seconds * 1000)
        else:
            began = time.perf_counter()
            summary = evaluate_for_exams(engine, settings, [exam_id], NOW)
            fresh_ms.append((time.perf_counter() - began) * 1000)
        scopes.append(summary.enrolments)

    def spread(values: list[float]) -> str:
        ranked = sorted(values)
        p95 = ranked[min(len(ranked) - 1, int(len(ranked) * 0.95))]
        return f"median {statistics.median(ranked):6.2f} ms, p95 {p95:6.2f} ms"

    print(f"evaluate_for_exams, one exam, long-lived evaluator (the writer's hook): {spread(hook_ms)}")
    print(f"evaluate_for_exams, one exam, fresh evaluator (module function):        {spread(fresh_ms)}")
    print(f"  enrolments judged per event: {statistics.mean(scopes):.1f} on average")
    engine.dispose()


if __name__ == "__main__":
    main()
