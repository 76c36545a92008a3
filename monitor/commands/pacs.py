"""``hiro-monitor pacs poll [--once]`` and ``hiro-monitor pacs unmatched``: the images' side.

``poll`` reads the PACS's recent studies of research exams and checks their images against
the acquisition rules (the daemon runs the same poll as a scheduled job); without
``--once`` it polls every ``pacs.poll_interval_seconds`` until Ctrl-C. It prints counts
only: no identifiers, no names. Exit code 1 when the (last) poll failed.

``unmatched`` lists the stored studies of enrolled patients that matched no exam (or
several): study date, modalities, series and accession, for the office to sort out in the
EHR (patient ids only with ``--show-mrn``: the listing is then PHI).
"""

from __future__ import annotations

import argparse
import contextlib
import time

from monitor.commands import command_clock, open_engine, print_json
from monitor.config import Settings
from monitor.evaluation import Evaluator

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pacs = commands.add_parser("pacs", help="the PACS: check the images of research exams")
    actions = pacs.add_subparsers(dest="pacs_command", required=True, metavar="ACTION")
    poll = actions.add_parser("poll", help="read new studies now (and keep polling unless --once)")
    poll.add_argument("--once", action="store_true", help="one poll, then exit")
    poll.set_defaults(handler=cmd_poll)
    unmatched = actions.add_parser("unmatched", help="studies of enrolled patients that matched no exam")
    unmatched.add_argument("--show-mrn", action="store_true", help="also print the patient id (PHI)")
    unmatched.add_argument("--json", action="store_true", help="the studies as JSON")
    unmatched.set_defaults(handler=cmd_unmatched)


def cmd_poll(settings: Settings, args: argparse.Namespace) -> int:
    from monitor.dispatch.pacs_poll import poll_and_evaluate  # DICOM libraries only when asked

    where = "host" if settings.pacs.protocol == "dimse" else "dicomweb_url"  # the PACS's address
    if not getattr(settings.pacs, where):
        print(f"pacs.{where} is not set: nothing to poll", flush=True)
        return 2
    clock = command_clock(args)
    engine = open_engine(settings)
    evaluator = Evaluator(engine, settings)
    ok = True
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            result = poll_and_evaluate(engine, settings, evaluator, clock=clock)
            ok = result.ok
            state = "ok" if ok else f"FAILED: {result.error}"
            print(
                f"{clock():%Y-%m-%d %H:%M:%S}Z PACS poll {state}: {result.listed} studies listed, "
                f"{result.read} read, {result.matched} matched to exams, {result.waiting} waiting, "
                f"{result.requests} requests",
                flush=True,
            )
            if args.once:
                break
            time.sleep(settings.pacs.poll_interval_seconds)
    engine.dispose()
    return 0 if ok else 1


def cmd_unmatched(settings: Settings, args: argparse.Namespace) -> int:
    from monitor.store.images import unmatched_studies

    engine = open_engine(settings)
    with engine.connect() as conn:
        studies = unmatched_studies(conn)
    engine.dispose()
    if args.json:
        print_json([
            {
                "study_date": study.study_date and study.study_date.isoformat(),
                "modalities": list(study.modalities),
                "series": len(study.series), "instances": study.instances, "accession": study.accession,
                **({"patient_id": study.patient_id} if args.show_mrn else {}),
            }
            for study in studies
        ])  # fmt: skip
        return 0
    if not studies:
        print("every stored study is matched to an exam")
    for study in studies:
        who = f"  patient {study.patient_id}" if args.show_mrn else ""
        accession = study.accession or "(no accession)"
        print(
            f"{study.study_date or '????-??-??'}  {'/'.join(study.modalities) or '?':<6} "
            f"{len(study.series):>3} series  accession {accession}{who}"
        )
    return 0
