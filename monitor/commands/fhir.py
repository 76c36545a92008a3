"""``hiro-monitor fhir poll [--once]``: watch the schedule through the EHR's FHIR API.

Without ``--once`` it polls every ``fhir.poll_interval_seconds`` until Ctrl-C (the daemon
runs the same poll as a scheduled job). Prints counts only: no identifiers, no names.
Exit code 1 when the (last) poll reported an error.
"""

from __future__ import annotations

import argparse
import contextlib
import time

from monitor.commands import command_clock, open_engine
from monitor.config import Settings
from monitor.dispatch.fhir_poll import poll_and_evaluate
from monitor.evaluation import Evaluator
from monitor.feeds.fhir.poller import PollResult

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fhir = commands.add_parser("fhir", help="the FHIR R4 feed")
    actions = fhir.add_subparsers(dest="fhir_command", required=True, metavar="ACTION")
    poll = actions.add_parser("poll", help="poll Appointments now (and keep polling unless --once)")
    poll.add_argument("--once", action="store_true", help="one poll, then exit")
    poll.set_defaults(handler=cmd_poll)


def _report(result: PollResult) -> None:
    state = "ok" if result.ok else "FAILED"
    print(
        f"{result.finished_at:%Y-%m-%d %H:%M:%S}Z poll {state}: {result.resources} resources, "
        f"{result.applied} applied, {result.unchanged} unchanged, {result.rejected} rejected, "
        f"{result.skipped} skipped"
    )
    for line in (result.error, *result.warnings):
        if line:
            print(f"  {line}")
    for problem in result.problems:
        print(f"  {problem}")


def cmd_poll(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.fhir.base_url:
        print("fhir.base_url is not set: nothing to poll", flush=True)
        return 2
    clock = command_clock(args)
    engine = open_engine(settings)
    evaluator = Evaluator(engine, settings)
    result = poll_and_evaluate(engine, settings, evaluator, clock=clock)
    _report(result)
    with contextlib.suppress(KeyboardInterrupt):
        while not args.once:
            time.sleep(settings.fhir.poll_interval_seconds)
            result = poll_and_evaluate(engine, settings, evaluator, clock=clock)
            _report(result)
    engine.dispose()
    return 0 if result.ok else 1
