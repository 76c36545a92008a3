"""The demo's imaging story, against a live Orthanc: booking -> scan -> wrong images -> alert ->
repeat -> resolved.

When Debian's Orthanc is installed, ``hiro-monitor demo`` starts one in its folder (free
loopback ports) and points ``[pacs]`` at it, polled every ``POLL_SECONDS``. After the
backlog, :func:`imaging_story` enrols one more ONC-2101 subject whose Week 6 restaging CT is
due today, and books it (over MLLP, as Epic would, with its accession number) for a quarter
of an hour ago in the research CT room; the scanner sends a study whose portal venous
series is 7.5 mm thick, against the protocol's 5 mm. The next poll
finds it: the technologists' console and the coordinators get the alert (printed on the
console). The technologist repeats the series at 2.5 mm; the next poll resolves the finding.
Images are synthetic (:mod:`monitor.pacs.synthetic`), of the simulated feed's demo patient.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from monitor.feeds.mllp.framing import frame
from monitor.pacs.orthanc import OrthancServer
from monitor.pacs.synthetic import StudySpec, ct_study, datasets, with_repeat
from monitor.store.findings import findings_of_kind
from monitor.store.registry import import_enrolments

__all__ = ["IMAGING_MRN", "IMAGING_SUBJECT", "POLL_SECONDS", "imaging_story"]

POLL_SECONDS = 10  # the demo's PACS poll: the alert comes within about this long
_END = b"\x1c\r"


IMAGING_SUBJECT, IMAGING_MRN = "2101-D02", "E20002"  # outside the simulated feed's patients


def enrol_imaging_subject(engine: Engine, now: datetime, zone: ZoneInfo) -> None:
    """Enrol the story's ONC-2101 subject, its Week 6 restaging CT due today (+-7 days)."""
    today = now.astimezone(zone).date()
    c1d1 = today - timedelta(weeks=6)
    csv = (
        "trial,subject,mrn,arm,status,consent,c1d1\n"
        f"ONC-2101,{IMAGING_SUBJECT},{IMAGING_MRN},A,on_study,{c1d1 - timedelta(days=21)},{c1d1}\n"
    )
    with engine.begin() as conn:
        import_enrolments(conn, csv, now, today=today)


def booking(mrn: str, start: datetime, zone: ZoneInfo, accession: str) -> bytes:
    """An Epic-style SIU^S12 booking the research CT (IMG1234) for ``mrn`` in room CT3, with
    its accession number (SCH-27)."""
    when = start.astimezone(zone).strftime("%Y%m%d%H%M%S")
    sent = (start - timedelta(days=2)).astimezone(zone).strftime("%Y%m%d%H%M%S")
    segments = [
        f"MSH|^~\\&|EPIC|HOSP|HIRO|RIO|{sent}||SIU^S12^SIU_S12|DEMOIMG{when}|P|2.5.1",
        f"SCH|1|7999{when[4:12]}|||||||30|MIN|^^30^{when}|||||||||||||Booked^Booked|||{accession}",
        f"PID|1||{mrn}^^^EPI^MR||DEMO^IMAGING||19610203|F",
        "PV1|1|O|CT3^^^HOSP",
        "RGS|1|A",
        f"AIS|1|A|IMG1234^CT CHEST ABDOMEN PELVIS W CONTRAST^EAP|{when}|||30|MIN||Booked",
        f"AIL|1|A|CT3^^^HOSP|CT||{when}",
    ]
    return ("\r".join(segments) + "\r").encode()


async def _send(port: int, message: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(frame(message))
        await writer.drain()
        await asyncio.wait_for(reader.readuntil(_END), 30)
    finally:
        writer.close()


def _scan(mrn: str, start: datetime, zone: ZoneInfo, thickness: float, accession: str) -> StudySpec:
    local = start.astimezone(zone)
    return ct_study(
        patient_id=mrn,
        accession=accession,
        study_date=local.date(),
        study_time=local.strftime("%H%M%S"),
        slice_thickness=thickness,
    )


async def _until(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await asyncio.to_thread(check):
            return True
        await asyncio.sleep(0.5)
    return False


async def imaging_story(
    engine: Engine, pacs: OrthancServer, port: int, now: datetime, zone: ZoneInfo
) -> list[str]:
    """Play the story (module doc); the lines to print about it as it went."""
    start = now - timedelta(minutes=15)
    accession = f"DEMO{start.astimezone(zone):%y%m%d%H%M}"
    await asyncio.to_thread(enrol_imaging_subject, engine, now, zone)
    await _send(port, booking(IMAGING_MRN, start, zone, accession))
    wrong = _scan(IMAGING_MRN, start, zone, 7.5, accession)
    await asyncio.to_thread(pacs.store, datasets(wrong))
    began = time.monotonic()

    def status() -> str:
        with engine.connect() as conn:
            found = findings_of_kind(conn, "parameter_deviation")
        return found[-1].status if found else ""

    lines = [f"Imaging: the research CT at {start.astimezone(zone):%H:%M} sent a 7.5 mm portal venous series"]
    if not await _until(lambda: status() == "open", 6 * POLL_SECONDS):
        return [*lines, "Imaging: no finding came from the PACS poll (see the feed health page)"]
    lines.append(
        f"Imaging: parameter deviation found {time.monotonic() - began:.0f} s after the study arrived"
    )
    again = (start + timedelta(minutes=10)).astimezone(zone).strftime("%H%M%S")
    await asyncio.to_thread(pacs.store, datasets(with_repeat(wrong, 2.5, again)))
    began = time.monotonic()
    if await _until(lambda: status() == "resolved", 6 * POLL_SECONDS):
        lines.append(f"Imaging: the 2.5 mm repeat resolved it {time.monotonic() - began:.0f} s later")
    return lines
