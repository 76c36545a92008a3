"""Benchmark of the rules engine (a script, not a test): prints timings and peak memory.

    .venv/bin/python bench/bench_rules.py [--enrolments 10000] [--trials 50] [--exams 300000]

Generates synthetic protocols (loaded through ``load_protocol``), enrolments and exams, then
times:

1. a full evaluation of every enrolment (target <= 5 s);
2. the re-evaluation after one exam event: the exam is rescheduled, its MRN's list in the
   exam index is updated and the enrolments sharing that MRN are evaluated again
   (median over 200 events, target <= 5 ms);

and reports the peak memory of one full evaluation (tracemalloc) and the process's maximum
resident set size. Everything is seeded: two runs build the same data.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import statistics
import sys
import time
import tracemalloc
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rules import (  # after the path set-up, so the script runs from a checkout
    Enrolment,
    ExamRecord,
    ExamStatus,
    Trial,
    evaluate,
    evaluate_enrolments,
    index_exams,
    load_protocol,
    occurrences,
)

ZONE = ZoneInfo("America/New_York")
NOW = datetime(2026, 4, 15, 14, 0, tzinfo=UTC)
SCHEDULES = [  # (modality, every, first, until, window, count_from)
    ("CT", "6w", "6w", "48w", "+-7d", "anchor"),
    ("CT", "8w", "8w", "progression", "+-7d", "anchor"),
    ("MR", "8w", "8w", "progression", "+-7d", "anchor"),
    ("PT", "12w", "12w", "72w", "+-14d", "anchor"),
    ("MR", "12w", "12w", "progression", "+-14d", "previous_exam"),
]


def protocol_text(number: int) -> str:
    modality, every, first, until, window, count_from = SCHEDULES[number % len(SCHEDULES)]
    other = "MR" if modality != "MR" else "CT"
    code = 1000 + number * 10
    return f"""
id = "BENCH-{number:03d}"
title = "Synthetic trial {number}"
anchor_is_day = 1
arms = ["A", "B"]

[anchors]
required = ["consent", "c1d1"]
events = ["progression", "end_of_treatment"]

[exams.main]
modality = "{modality}"
orderables = ["IMG{code}", "IMG{code + 1}"]
parameters = ["Protocol {number} acquisition"]

[exams.alternative]
modality = "{other}"
orderables = ["IMG{code + 5}"]

[[timepoints]]
id = "baseline"
exams = ["main", "alternative"]
anchor = "c1d1"
window = {{ from = "-28d", to = "-1d" }}

[[timepoints]]
id = "safety"
exams = ["main"]
anchor = "c1d1"
day = 22
window = "+-3d"
arms = ["B"]

[[timepoints]]
id = "response"
label = "Week {{week}} response"
exams = ["main", "alternative"]
anchor = "c1d1"
every = "{every}"
first = "{first}"
until = "{until}"
count_from = "{count_from}"
window = "{window}"

[[timepoints]]
id = "eot"
exams = ["main"]
anchor = "end_of_treatment"
offset = "4w"
window = "+-7d"

[routing]
coordinators = ["email:bench-{number}@example.org", "slack:#bench-{number}"]
technologists = {{ {modality} = "slack:#{modality.lower()}-techs", {other} = "slack:#{other.lower()}-techs" }}
lead_times = {{ coordinator = ["72h", "24h"], technologist = ["24h", "2h"] }}
"""


def build(
    enrolment_count: int, trial_count: int, exam_count: int
) -> tuple[list[Trial], list[Enrolment], list[ExamRecord]]:
    rnd = random.Random(20260415)
    trials = [load_protocol(protocol_text(n), f"bench-{n}.toml") for n in range(trial_count)]
    today = NOW.astimezone(ZONE).date()
    enrolments = []
    for n in range(enrolment_count):
        trial = trials[n % trial_count]
        c1d1 = today - timedelta(days=rnd.randint(-20, 700))
        anchors = {"consent": c1d1 - timedelta(days=21), "c1d1": c1d1}
        if rnd.random() < 0.15:
            anchors["progression"] = c1d1 + timedelta(days=rnd.randint(60, 500))
        if rnd.random() < 0.2:
            anchors["end_of_treatment"] = c1d1 + timedelta(days=rnd.randint(60, 400))
        off = c1d1 + timedelta(days=rnd.randint(200, 600)) if rnd.random() < 0.1 else None
        enrolments.append(
            Enrolment(
                trial.id,
                f"{n:05d}",
                (f"E{100000 + n}",),
                anchors,
                rnd.choice(["A", "B"]),
                off_study=off,
                id=n + 1,
            )
        )
    per_subject = exam_count // enrolment_count
    exams: list[ExamRecord] = []
    clinical = {"CT": "IMG0001", "MR": "IMG0002", "PT": "IMG0003"}
    latest = today + timedelta(days=56)

    def add(
        enrolment: Enrolment, day: date, code: str, modality: str, status: ExamStatus | None = None
    ) -> None:
        if status is None:
            status = ExamStatus.COMPLETED if day < today else ExamStatus.SCHEDULED
            if rnd.random() < 0.03:
                status = ExamStatus.NO_SHOW if day < today else ExamStatus.CANCELLED
        start = datetime(
            day.year, day.month, day.day, rnd.randint(7, 19), rnd.choice([0, 15, 30, 45]), tzinfo=ZONE
        )
        exams.append(
            ExamRecord(
                id=len(exams) + 1,
                mrn=enrolment.mrns[0],
                procedure_code=code,
                procedure_text="synthetic",
                modality=modality,
                start=start.astimezone(UTC),
                status=status,
                location=f"{modality}{rnd.randint(1, 4)}",
            )
        )

    for enrolment in enrolments:
        trial = next(t for t in trials if t.id == enrolment.trial)
        visits = occurrences(trial, enrolment, through=today + timedelta(days=120))
        main = trial.versions[0].exams["main"]
        first = len(exams)
        for visit in visits:  # research exams: mostly one per visit, some cancelled and rebooked
            roll = rnd.random()
            if roll < 0.07:
                continue  # never booked: missed or due
            day = visit.due + timedelta(days=round(rnd.gauss(0, 5)))
            if roll < 0.12:
                add(
                    enrolment,
                    day - timedelta(days=2),
                    rnd.choice(main.orderables),
                    main.modality,
                    ExamStatus.CANCELLED,
                )
            if roll > 0.97:
                add(
                    enrolment, day + timedelta(days=1), rnd.choice(main.orderables), main.modality
                )  # a duplicate
            add(enrolment, day, rnd.choice(main.orderables), main.modality)
        c1d1 = enrolment.anchors["c1d1"]
        while len(exams) - first < per_subject:  # the rest: clinical imaging, booked up to 8 weeks ahead
            day = c1d1 + timedelta(days=rnd.randint(-60, max(min(700, (latest - c1d1).days), -60)))
            if rnd.random() < 0.3:
                modality = rnd.choice(["CT", "MR", "PT"])
                add(enrolment, day, clinical[modality], modality)
            else:
                add(enrolment, day, "IMG0009", rnd.choice(["XR", "US", "DX", "MG"]))
    rnd.shuffle(exams)
    return trials, enrolments, exams


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--enrolments", type=int, default=10_000)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--exams", type=int, default=300_000)
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args()

    started = time.perf_counter()
    trials, enrolments, exams = build(args.enrolments, args.trials, args.exams)
    print(
        f"data: {len(trials)} trials, {len(enrolments)} enrolments, {len(exams)} exams "
        f"(built in {time.perf_counter() - started:.1f} s)"
    )

    full_runs = []
    for _ in range(3):
        gc.collect()
        started = time.perf_counter()
        result = evaluate(trials, enrolments, exams, NOW, site_zone=ZONE)
        full_runs.append(time.perf_counter() - started)
    print(
        f"full evaluation: median {statistics.median(full_runs):.2f} s, best {min(full_runs):.2f} s "
        f"(target <= 5 s) -> {len(result.occurrences)} occurrences, {len(result.findings)} findings, "
        f"{len(result.planned_notifications)} planned notifications"
    )

    catalogue = {trial.id: trial for trial in trials}
    index = index_exams(exams)
    by_mrn: dict[str, list[Enrolment]] = {}
    for enrolment in enrolments:
        for mrn in enrolment.mrns:
            by_mrn.setdefault(mrn, []).append(enrolment)
    rnd = random.Random(7)
    timings = []
    for _ in range(args.events):
        changed = rnd.choice(exams)
        moved = replace(changed, start=changed.start + timedelta(days=1) if changed.start else None)
        started = time.perf_counter()
        own = index[moved.mrn]  # the one exam event: update its MRN's list, re-evaluate its enrolments
        own[next(i for i, e in enumerate(own) if e.id == moved.id)] = moved
        evaluate_enrolments(catalogue, by_mrn.get(moved.mrn, []), index, NOW, site_zone=ZONE)
        timings.append(time.perf_counter() - started)
    print(
        f"re-evaluation after one exam event: median {statistics.median(timings) * 1000:.2f} ms, "
        f"p95 {sorted(timings)[int(len(timings) * 0.95)] * 1000:.2f} ms "
        f"over {len(timings)} events (target <= 5 ms)"
    )

    del result
    gc.collect()
    tracemalloc.start()
    evaluate(trials, enrolments, exams, NOW, site_zone=ZONE)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(
        f"peak memory of one full evaluation (tracemalloc): {peak / 2**20:.0f} MiB; "
        f"process max RSS {max_rss:.0f} MiB"
    )


if __name__ == "__main__":
    main()
