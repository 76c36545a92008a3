"""A simulated Epic outbound scheduling feed: realistic SIU and ORM messages, synthetic patients.

Used by the demo, ``hiro-monitor simulate`` and the benchmarks. Messages follow Epic's
habits (SCH-1 "1", SCH-2 the CSN, start in SCH-11.4 and AIS-4 without a zone, PID-3 with an
MRN and an enterprise id, procedure in AIS-3, room in AIL-3). Every patient is invented:
names are drawn from a list of obviously fake ones and MRNs start with "E1".

Options, all off by default so that a seed keeps giving the stream it always gave:

- ``order_rate``: the share of messages that are ORM^O01 imaging orders (ORC-1 ``NW`` for a
  new order, ``CA`` for a cancelled one; accession in OBR-3, procedure in OBR-4, scheduled
  time in OBR-36; HL7 v2.5 chapter 4).
- ``research``: enrolled subjects' due visits (:class:`ResearchSubject`), each booked once
  (a share ``research_rate`` of the bookings until all are booked); ``problem_rate`` of those carry a
  deliberate problem: a wrong orderable (a code of the right modality that the trial does
  not accept) or a booking outside the window. With ``research_soon``, the first research
  booking (a visit whose window allows it) and that share of the others are booked for the
  next few hours, without a problem, and never moved or cancelled (the demo: the
  technologists' sheets, sent a day ahead, show at once). ``soon_hours`` is how far ahead
  that is (3 to 20 hours; the fast demo books them 30 to 90 hours ahead, so that their
  reminders and day-before sheets fall due while you watch).
- ``clock``: the feed follows that clock (the demo's, which may run faster than real time)
  instead of advancing a minute or so per message: MSH-7 is the clock's time, bookings are
  made for the days after it, and only appointments whose time has passed are no-shows.

Built from string templates rather than hl7apy: the ingest benchmark needs 100,000
messages in seconds, and hl7apy takes milliseconds per message (building an ORM with
hl7apy's ``Message("ORM_O01")`` and validating it costs more than the daemon spends
storing it, so a load tool built on it would measure itself).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
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


@dataclass(frozen=True)
class ResearchSubject:
    """An enrolled subject with a research exam due: what the feed books for it.

    ``orderables`` are the codes the trial accepts for the exam (the first is used);
    ``window`` is the visit's window (local dates, inclusive).
    """

    mrn: str
    orderables: tuple[str, ...]
    modality: str
    window: tuple[date, date]
    room: str = ""


@dataclass
class _Appointment:
    csn: str
    mrn: str
    family: str
    given: str
    birth: str
    procedure: tuple[str, str, str, str]
    start: datetime
    problem: str = ""  # "wrong_orderable" / "out_of_window" for a deliberate problem
    kept: bool = False  # booked "soon" for the demo: never rescheduled, cancelled or no-showed


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
        order_rate: float = 0.0,
        research: Sequence[ResearchSubject] = (),
        research_rate: float = 0.2,
        problem_rate: float = 0.25,
        research_soon: float = 0.0,
        soon_hours: tuple[int, int] = (3, 20),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.random = random.Random(seed)
        self.zone = zone or ZoneInfo("America/New_York")
        self.clock = clock
        if start is None:
            start = clock().astimezone(self.zone) if clock else datetime(2026, 12, 1, 7, 0, tzinfo=self.zone)
        self.now = start
        self.mrns = mrns or tuple(f"E1{n:04d}" for n in range(patients))
        self.counter = 0
        self.bookings = 0
        self.booked: list[_Appointment] = []
        self.order_rate = order_rate
        self.research = tuple(research)
        self.research_rate = research_rate
        self.problem_rate = problem_rate
        self.research_soon = research_soon
        self.soon_hours = soon_hours
        self.orders = 0
        self.ordered: list[_Appointment] = []
        self.problems: dict[str, int] = {}
        # Used only when research or orders are asked for, so the default stream is unchanged.
        self._extra = random.Random(seed * 7919 + 17)
        self._due = list(self.research)  # each due visit is booked once, in a shuffled order
        self._booked_research = 0
        self._extra.shuffle(self._due)

    def add_research(self, subjects: Sequence[ResearchSubject]) -> int:
        """Queue the due visits among ``subjects`` not queued before (the same subject and
        window); returns how many were new. Each is booked once, like those given at start."""
        known = {(subject.mrn, subject.window[1]) for subject in self.research}
        fresh = [subject for subject in subjects if (subject.mrn, subject.window[1]) not in known]
        self.research += tuple(fresh)
        self._due.extend(fresh)
        return len(fresh)

    def _tick(self) -> None:
        """Advance ``now``: to the clock's time, else by a minute or so per message."""
        step = timedelta(seconds=self.random.randint(1, 90))
        self.now = max(self.now, self.clock().astimezone(self.zone)) if self.clock else self.now + step

    def _header(self, trigger: str, kind: str = "SIU") -> str:
        self.counter += 1
        if self.clock is None:
            self._tick()
        structure = "ORM_O01" if kind == "ORM" else f"SIU_{trigger}"
        return (
            f"MSH|^~\\&|EPIC|HOSP|HIRO|RIO|{_ts(self.now)}||{kind}^{trigger}^{structure}|"
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

    def _order(self, control: str, appt: _Appointment) -> bytes:
        """An ORM^O01: ORC-1 ``NW`` (new) or ``CA`` (cancel); accession in ORC-3/OBR-3."""
        code, text, modality, _room = appt.procedure
        start = _ts(appt.start)
        status = "SC" if control == "NW" else "CA"
        accession = f"A{appt.csn}"
        body = (
            self._header("O01", "ORM")
            + f"PID|1||{appt.mrn}^^^EPI^MR||{appt.family}^{appt.given}||{appt.birth}|U\r"
            f"PV1|1|O|||||||||||||||||{appt.csn}\r"
            f"ORC|{control}|P{appt.csn}|{accession}||{status}||^^^{start}\r"
            f"OBR|1|P{appt.csn}|{accession}|{code}^{text}^EAP||||||||||||||||||||{modality}"
            f"||||||||||||{start}\r"
        )
        return body.encode("ascii")

    def order(self) -> bytes:
        """A new imaging order (most) or the cancellation of one already sent."""
        self.orders += 1
        if self.ordered and self._extra.random() < 0.2:
            return self._order("CA", self.ordered.pop(self._extra.randrange(len(self.ordered))))
        days = self._extra.randint(1, 60)
        start = (self.now + timedelta(days=days)).replace(hour=self._extra.randint(7, 18), minute=0, second=0)
        appt = _Appointment(
            csn=f"{8000000000 + self.orders}",
            mrn=self._extra.choice(self.mrns),
            family=self._extra.choice(FAKE_FAMILY),
            given=self._extra.choice(FAKE_GIVEN),
            birth=f"19{self._extra.randint(40, 99)}0{self._extra.randint(1, 9)}1{self._extra.randint(0, 9)}",
            procedure=self._extra.choice(PROCEDURES),
            start=start,
        )
        self.ordered.append(appt)
        if len(self.ordered) > 5_000:  # keep memory flat on long runs
            del self.ordered[:1_000]
        return self._order("NW", appt)

    def _soon(self) -> datetime:
        return (self.now + timedelta(hours=self._extra.randint(*self.soon_hours))).replace(
            minute=30, second=0
        )

    def _research_booking(self) -> _Appointment:
        soon: datetime | None = None
        if self.research_soon and (not self._booked_research or self._extra.random() < self.research_soon):
            soon = self._soon()
            fits = [s for s in self._due if s.window[0] <= soon.date() <= s.window[1]]
            if fits:
                self._due.remove(fits[-1])
                self._due.append(fits[-1])
            else:
                soon = None
        self._booked_research += 1
        subject = self._due.pop()
        first, last = subject.window
        day = first + timedelta(days=self._extra.randint(0, max((last - first).days, 0)))
        code = subject.orderables[0]
        text = next((p[1] for p in PROCEDURES if p[0] == code), f"{subject.modality} RESEARCH EXAM")
        room = subject.room or next((p[3] for p in PROCEDURES if p[2] == subject.modality), "IMG1")
        problem = ""
        if soon is None and self._extra.random() < self.problem_rate:
            if sum(self.problems.values()) % 2 == 0:  # alternate: both kinds show in a short run
                problem = "wrong_orderable"
                wrong = [p for p in PROCEDURES if p[0] not in subject.orderables and p[2] == subject.modality]
                code, text = (wrong[0][0], wrong[0][1]) if wrong else ("IMG9999", "UNRELATED ORDERABLE")
            else:
                problem = "out_of_window"
                day = last + timedelta(days=self._extra.randint(3, 14))
            self.problems[problem] = self.problems.get(problem, 0) + 1
        start = soon or datetime.combine(day, time(self._extra.randint(7, 17), 30), tzinfo=self.zone)
        return _Appointment(
            kept=soon is not None,
            csn="",
            mrn=subject.mrn,
            family=self._extra.choice(FAKE_FAMILY),
            given=self._extra.choice(FAKE_GIVEN),
            birth="19600101",
            procedure=(code, text, subject.modality, room),
            start=start,
            problem=problem,
        )

    def book(self) -> bytes:
        if self._due and self._extra.random() < self.research_rate:
            self.bookings += 1
            appt = self._research_booking()
            appt.csn = f"{7000000000 + self.bookings}"
            self.booked.append(appt)
            return self._message("S12", appt, "Booked")
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
        if self.clock is not None:
            self._tick()
        if self.order_rate and self._extra.random() < self.order_rate:
            return self.order()
        roll = self.random.random()
        changeable = [a for a in self.booked if not a.kept] if self.research_soon else self.booked
        if not changeable or roll < 0.55:
            return self.book()
        appt = self.random.choice(changeable)
        if self.clock is not None and roll >= 0.95:  # a no-show is of an appointment already past
            past = [booked for booked in changeable if booked.start <= self.now]
            if not past:
                return self.book()
            appt = self.random.choice(past)
        if roll < 0.75:
            appt.start += timedelta(days=self.random.randint(-3, 7), hours=self.random.randint(-2, 2))
            if self.clock is not None and appt.start <= self.now:  # moved, but not into the past
                appt.start = self.now + timedelta(days=1, hours=self.random.randint(0, 8))
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
