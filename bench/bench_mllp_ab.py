"""Two versions of the daemon side by side (issue 15): alternating rounds, medians.

    .venv/bin/python bench/bench_mllp_ab.py BEFORE AFTER [--rounds 4] [--messages 6000] [--rate R]

Each tree is a checkout of the project (``git worktree add /tmp/before HEAD~1``). Every round
starts each tree's ``hiro-monitor run`` on a fresh SQLite database in turn, warms it up with
500 messages, sends ``--messages`` over 4 connections each waiting for its ACK, and reads the
server's CPU time from /proc. With ``--rate`` each connection paces itself so that R msg/s
are offered in all, and the p99 ACK latency counts from each message's intended send time.
Alternating rounds is what makes a difference readable on a shared machine, where single
runs of the same code vary by a factor of two; read the medians.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_mllp import CONNECTIONS, PYTHON, _load, _messages
from monitor.feeds.hl7.simulated import SimulatedFeed


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _daemon(tree: str, url: str) -> tuple[subprocess.Popen[str], int]:
    command = [PYTHON, "-m", "monitor.cli", "--log-level", "WARNING", "--database", url, "run", "--port", "0"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tree,
        env={**os.environ, "PYTHONPATH": tree},
    )  # fmt: skip
    assert process.stdout is not None
    for line in process.stdout:
        found = re.search(r"MLLP listening on .*:(\d+)", line)
        if found:
            return process, int(found.group(1))
    raise RuntimeError(f"the daemon of {tree} did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--messages", type=int, default=6000)
    parser.add_argument("--rate", type=float, default=0.0, help="offered msg/s (0: closed loop)")
    args = parser.parse_args()
    rate = args.rate / CONNECTIONS if args.rate else None
    feed = SimulatedFeed(seed=1)  # one stream: warm-up and load share no control id
    warm, load = _messages(500, 0, feed), _messages(args.messages, 0, feed)
    results: dict[str, list[tuple[float, float]]] = {tree: [] for tree in args.trees}
    for _ in range(args.rounds):
        for tree in args.trees:
            with tempfile.TemporaryDirectory() as tmp:
                process, port = _daemon(tree, f"sqlite:///{tmp}/ab.db")
                try:
                    _load(port, warm)
                    before = _cpu_seconds(process.pid)
                    result = _load(port, load, rate)
                    cpu = _cpu_seconds(process.pid) - before
                finally:
                    process.terminate()
                    process.wait(30)
            latencies = sorted(result.latencies)
            p99 = 1000 * latencies[int(len(latencies) * 0.99) - 1]
            row = (result.sent / result.elapsed, 1000 * cpu / result.sent, p99)
            results[tree].append(row)
            print(f"{tree:<30} {_figures(row)}", flush=True)
    for tree, rows in results.items():
        medians = [statistics.median(row[i] for row in rows) for i in range(3)]
        print(f"median {tree:<23} {_figures(medians)}")


def _figures(row: tuple[float, ...] | list[float]) -> str:
    return f"{row[0]:7.0f} msg/s  server CPU {row[1]:.3f} ms/msg  p99 {row[2]:6.1f} ms"


if __name__ == "__main__":
    main()
