"""Benchmark of the HL7 feed (issues 3 and 15): throughput, ACK latency, ingest, baselines.

    .venv/bin/python bench/bench_mllp.py [--messages 20000] [--ingest 100000] [--skip-baseline]

Runs the daemon as ``hiro-monitor run`` with the shipped configuration and prints, for
SQLite (and PostgreSQL when reachable at 127.0.0.1:5432):
- sustained throughput with 4 connections, each waiting for its ACK (issue 15 target:
  SQLite >= 5,000 msg/s, PostgreSQL >= 2,500; a first landing >= 2,500 on SQLite);
- p50/p99 ACK latency at an offered 1,000 msg/s (target p99 <= 20 ms), measured from the
  intended send time so that queueing counts;
- the same closed-loop run against a python-hl7 group-commit server (``bench/hl7_peer.py``,
  the honest baseline) and the ratio (target >= 4x; a first landing >= 2x);
- the same against hl7apy's MLLPServer, and the ratio (issue 3 target >= 15x);
- ``hiro-monitor ingest`` of a file (target >= 10,000 msg/s) and its peak RSS next to a
  file a fifth of its size (memory must stay flat).

The daemon, the baseline and the clients each run in their own process. Not a test: the
machines are shared and noisy; run it a few times and read the spread.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.mllp_client import LoadResult, run_load  # noqa: E402
from monitor.feeds.hl7.simulated import SimulatedFeed  # noqa: E402

PYTHON = sys.executable
CONNECTIONS = 4
OFFERED = 1_000  # msg/s, for the latency figure


def _messages(count: int, seed: int, feed: SimulatedFeed | None = None) -> list[list[bytes]]:
    """``count`` messages dealt over the connections; from ``feed`` when given (a run that
    goes on where the last one stopped), else from a new feed of ``seed``."""
    feed = feed or SimulatedFeed(seed=seed)
    per_connection: list[list[bytes]] = [[] for _ in range(CONNECTIONS)]
    for index, message in enumerate(feed.messages(count)):
        per_connection[index % CONNECTIONS].append(message)
    return per_connection


def _load(port: int, per_connection: list[list[bytes]], rate: float | None = None) -> LoadResult:
    # The client runs in another process so it does not share the server's CPU budget unfairly.
    with concurrent.futures.ProcessPoolExecutor(1) as pool:
        return pool.submit(run_load, "127.0.0.1", port, per_connection, rate).result()


def _start(
    command: list[str], pattern: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO
    )
    assert process.stdout is not None
    for line in process.stdout:
        found = re.search(pattern, line)
        if found:
            return process, int(found.group(1))
    raise RuntimeError(f"server did not start: {command}")


def _daemon(database_url: str) -> tuple[subprocess.Popen[str], int]:
    return _start(
        [
            PYTHON,
            "-m",
            "monitor.cli",
            "--log-level",
            "WARNING",
            "--database",
            database_url,
            "run",
            "--port",
            "0",
        ],
        r"MLLP listening on .*:(\d+)",
    )


def _report(name: str, result: LoadResult) -> float:
    rate = result.sent / result.elapsed
    lat = sorted(result.latencies)
    p50 = lat[len(lat) // 2] * 1000
    p99 = lat[int(len(lat) * 0.99) - 1] * 1000
    print(
        f"{name:<44} {result.sent:>7} msgs {result.elapsed:7.2f} s {rate:8.0f} msg/s "
        f"p50 {p50:6.1f} ms p99 {p99:6.1f} ms acks {result.acks}"
    )
    return rate


def bench_daemon(database_url: str, label: str, count: int) -> float:
    process, port = _daemon(database_url)
    # One feed for the whole run, as a sender's would be: a second feed of another seed
    # would repeat the first one's control ids and appointments with other content, and
    # measure the reused-key and out-of-order paths instead of the feed's usual one.
    feed = SimulatedFeed(seed=1)
    try:
        _load(port, _messages(500, 0, feed))  # warm-up
        rate = _report(f"{label}: sustained, 4 conns closed loop", _load(port, _messages(count, 0, feed)))
        seconds = 10
        paced = _load(port, _messages(OFFERED * seconds, 0, feed), rate=OFFERED / CONNECTIONS)
        _report(f"{label}: offered {OFFERED} msg/s", paced)
        return rate
    finally:
        process.terminate()
        process.wait(30)


def bench_peer(count: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        process, port = _start([PYTHON, str(REPO / "bench" / "hl7_peer.py"), f"{tmp}/peer.db"], r"port (\d+)")
        try:
            _load(port, _messages(500, seed=99))  # warm-up
            return _report("python-hl7 group-commit peer: 4 conns", _load(port, _messages(count, seed=1)))
        finally:
            process.kill()
            process.wait(10)


def bench_baseline(count: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        process, port = _start(
            [PYTHON, str(REPO / "bench" / "hl7apy_baseline.py"), f"{tmp}/base.db"], r"port (\d+)"
        )
        try:
            return _report("hl7apy MLLPServer baseline: 4 conns", _load(port, _messages(count, seed=1)))
        finally:
            process.kill()
            process.wait(10)


def _peak_rss_kib(command: list[str]) -> tuple[float, int]:
    """Run ``command`` in a fresh helper process; return (seconds, the command's peak RSS in KiB)."""
    probe = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run(
        [PYTHON, "-c", probe, *command], capture_output=True, text=True, check=True, cwd=REPO
    )
    seconds, rss = out.stdout.split()
    return float(seconds), int(rss)


def bench_ingest(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for n in (count // 5, count):
            path = Path(tmp) / f"feed-{n}.hl7"
            with path.open("wb") as out:
                for message in SimulatedFeed(seed=7).messages(n):
                    out.write(message + b"\n")
            url = f"sqlite:///{tmp}/ingest-{n}.db"
            seconds, rss = _peak_rss_kib(
                [
                    PYTHON,
                    "-m",
                    "monitor.cli",
                    "--log-level",
                    "WARNING",
                    "--database",
                    url,
                    "ingest",
                    "--quiet",
                    str(path),
                ]
            )
            print(
                f"ingest {n:>7} messages: {seconds:7.2f} s {n / seconds:8.0f} msg/s "
                f"peak RSS {rss / 1024:6.1f} MiB"
            )


def _postgres_url() -> str | None:
    try:
        import psycopg

        with psycopg.connect(
            "host=127.0.0.1 user=postgres dbname=test", connect_timeout=2, autocommit=True
        ) as c:
            c.execute("DROP DATABASE IF EXISTS hiro_bench WITH (FORCE)")
            c.execute("CREATE DATABASE hiro_bench")
        return "postgresql+psycopg://postgres@127.0.0.1:5432/hiro_bench"
    except Exception:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--baseline-messages", type=int, default=1_000)
    parser.add_argument("--ingest", type=int, default=100_000)
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        ours = bench_daemon(f"sqlite:///{tmp}/bench.db", "hiro-monitor SQLite", args.messages)
    peer = bench_peer(args.messages)
    print(f"ratio hiro-monitor / python-hl7 peer: {ours / peer:.2f}x (target >= 4x, first landing >= 2x)")
    if not args.skip_baseline:
        base = bench_baseline(args.baseline_messages)
        print(f"ratio hiro-monitor / hl7apy MLLPServer: {ours / base:.1f}x (target >= 15x)")
    pg = _postgres_url()
    if pg:
        bench_daemon(pg, "hiro-monitor PostgreSQL", args.messages)
    else:
        print("PostgreSQL not reachable: skipped")
    if args.ingest:
        bench_ingest(args.ingest)


if __name__ == "__main__":
    main()
