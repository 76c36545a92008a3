"""A simulated Epic outbound scheduling feed: realistic SIU messages with synthetic patients.

Used by the demo, ``hiro-monitor simulate`` and the benchmarks. Messages follow Epic's
habits (SCH-1 "1", SCH-2 the CSN, start in SCH-11.4 and AIS-4 without a zone, PID-3 with an
MRN and an enterprise id, procedure in AIS-3, room in AIL-3). Every patient is invented:
names are drawn from a list of obviously fake ones and MRNs start with "E1".

Built from string templates rather than hl7apy: the ingest benchmark needs 100,000
messages in seconds, and hl7apy takes milliseconds per message.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

PROCEDURES = (
    ("IMG1234", "CT CHEST ABDOMEN PELVIS W CONTRAST", "CT", "CT3"),
    ("IMG1240", "CT CHEST ABD PELVIS W IV CONTRAST RESEARCH", "CT", "CT1"),
    ("IMG2201", "PET CT FDG SKULL BASE TO THIGH", "PT", "PETCT1"),
    ("IMG3301", "MRI BRAIN W WO CONTRAST", "MR", "MR2"),
    ("IMG0101", "XR CHEST 2 VIEWS", "CR", "XR1"),
    ("IMG0550", "US ABDOMEN COMPLETE", "US", "US2"),
)
FAKE_FAMILY = ("TESTPATIENT", "SAMPLE", "DEMO", "SYNTHETIC", "PLACEHOLDER", "EXAMPLE")
FAKE_GIVEN = ("ALPHA", "BRAVO", "CHARLIE", "DELTA", "ECHO", "FOXTROT", "GOLF", "HOTEL")


@dataclass
class _Appointment:
    csn: str
    mrn: str
    family: str
    given: str
    birth: str
    procedure: tuple[str, str, str, str]
    start: datetime


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S")


class SimulatedFeed:
    """Deterministic (by seed) stream of SIU messages: bookings, reschedules, cancels, no-shows."""

    def __init__(
        self,
        *,
        seed: int = 1,
        zone: ZoneInfo | None = None,
        start: datetime | None = None,
        patients: int = 500,
        mrns: tuple[str, ...] = (),
    ) -> None:
        self.random = random.Random(seed)
        self.zone = zone or ZoneInfo("America/New_York")
        self.now = start or datetime(2026, 12, 1, 7, 0, tzinfo=self.zone)
        self.mrns = mrns or tuple(f"E1{n:04d}" for n in range(patients))
        self.counter = 0
        self.bookings = 0
        self.booked: list[_Appointment] = []

    def _header(self, trigger: str) -> str:
        self.counter += 1
        self.now += timedelta(seconds=self.random.randint(1, 90))
        return (
            f"MSH|^~\\&|EPIC|HOSP|HIRO|RIO|{_ts(self.now)}||SIU^{trigger}^SIU_{trigger}|"
            f"SIM{self.counter:09d}|P|2.5.1\r"
        )

    def _message(self, trigger: str, appt: _Appointment, status: str) -> bytes:
        code, text, modality, room = appt.procedure
        start = _ts(appt.start)
        body = (
            self._header(trigger)
            + f"SCH|1|{appt.csn}|||||||30|MIN|^^30^{start}^{_ts(appt.start + timedelta(minutes=30))}"
            f"|||||||||||||{status}^{status}\r"
            f"PID|1||{appt.mrn}^^^EPI^MR~{appt.csn[-6:]}99^^^EPIC^EPI||{appt.family}^{appt.given}||"
            f"{appt.birth}|U\r"
            f"PV1|1|O|{room}^^^HOSP||||||||||||||||{appt.csn}\r"
            f"RGS|1|A\r"
            f"AIS|1|A|{code}^{text}^EAP|{start}|||30|MIN||{status}\r"
            f"AIL|1|A|{room}^^^HOSP|{modality}^{modality} SCANNER ROOM||{start}\r"
            f"NTE|1||Simulated appointment for testing\r"
        )
        return body.encode("ascii")

    def book(self) -> bytes:
        self.bookings += 1
        days = self.random.randint(1, 60)
        start = (self.now + timedelta(days=days)).replace(
            hour=self.random.randint(7, 18),
            minute=self.random.choice((0, 15, 30, 45)),
            second=0,
            microsecond=0,
        )
        appt = _Appointment(
            csn=f"{7000000000 + self.bookings}",
            mrn=self.random.choice(self.mrns),
            family=self.random.choice(FAKE_FAMILY),
            given=self.random.choice(FAKE_GIVEN),
            birth=f"19{self.random.randint(40, 99)}0{self.random.randint(1, 9)}1{self.random.randint(0, 9)}",
            procedure=self.random.choice(PROCEDURES),
            start=start,
        )
        self.booked.append(appt)
        if len(self.booked) > 5_000:  # keep memory flat on long runs
            del self.booked[:1_000]
        return self._message("S12", appt, "Booked")

    def next_message(self) -> bytes:
        """The next message: mostly bookings, then reschedules, cancellations and no-shows."""
        roll = self.random.random()
        if not self.booked or roll < 0.55:
            return self.book()
        appt = self.random.choice(self.booked)
        if roll < 0.75:
            appt.start += timedelta(days=self.random.randint(-3, 7), hours=self.random.randint(-2, 2))
            return self._message("S13", appt, "Booked")
        if roll < 0.85:
            return self._message("S14", appt, "Booked")
        if roll < 0.95:
            self.booked.remove(appt)
            return self._message("S15", appt, "Cancelled")
        self.booked.remove(appt)
        return self._message("S26", appt, "Noshow")

    def messages(self, count: int) -> Iterator[bytes]:
        for _ in range(count):
            yield self.next_message()
