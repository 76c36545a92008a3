"""SIU (HL7 v2.5 chapter 10, scheduling) to one :class:`ScheduleEvent`.

One SIU is one appointment, however many RGS/AIS/AIG/AIL/AIP groups it carries. Choices
(each has a named row in the corpus tests):

* No PID: a hold or block (skipped, AA) when it reserves something (AIS/AIG/AIL/AIP);
  with no resource either it is neither, and is rejected (100).
* Identity: SCH-2.1 (filler id; Epic's CSN, equal to PV1-19), else SCH-1.1 (placer id),
  else SCH-27.1 / SCH-26.1 (filler / placer order number), else PV1-19.1 (visit number).
  Epic's placeholder placer id ``1`` is never used: merging every such appointment into
  one exam would be worse than the AE that a missing id gets (code 101).
* Kind: from the trigger (S12 booked, S13 rescheduled, S14 and S18-S22 modified, S15/S16
  cancelled, S17 deleted, S26 no-show); the SCH-25 status, looked up in the site table,
  overrides it only where it says more: see :data:`STATUS_OVERRIDES` (an S14 whose SCH-25
  says ARRIVED is an arrival, an S15 whose SCH-25 says NOSHOW is a no-show).
* Start: the first AIS-4; else TQ1-7; else SCH-11.4; else AIL-6, AIG-8, AIP-6. TQ1 comes
  before SCH-11 because SCH-11 is kept only for backward compatibility from v2.5 on, and
  the msft samples carry a stale SCH-11 next to a correct TQ1.
* Duration: AIS-7/AIS-8; else SCH-9/SCH-10; else TQ1-13/TQ1-6; else SCH-11.3; else the end
  minus the start of the same TQ1 or SCH-11.
* Procedure: AIS-3 of the first AIS (code^text^system); every AIS code goes into
  ``extra["services"]`` when there are several. Without AIS: SCH-7, else SCH-8.
* Location: the first AIL-3 (else PV1-3), rendered ``point of care / room / bed /
  facility / building / floor``. Resources: AIG-3.1 and AIP-3.1 ids (text when no id).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING

from monitor.events import EventKind, ScheduleEvent
from monitor.feeds.hl7 import common
from monitor.feeds.hl7.message import Message, Segment, Unprocessable

if TYPE_CHECKING:
    from monitor.feeds.hl7.mapping import MappingSettings

K = EventKind
TRIGGERS: Mapping[str, EventKind] = {
    "S12": K.BOOKED,
    "S13": K.RESCHEDULED,
    "S14": K.MODIFIED,
    "S15": K.CANCELLED,
    "S16": K.CANCELLED,  # discontinuation
    "S17": K.DELETED,
    **dict.fromkeys(("S18", "S19", "S20", "S21", "S22"), K.MODIFIED),  # a service/resource changed
    "S26": K.NO_SHOW,
}
SLOT_NOTICES = frozenset({"S23", "S24"})  # blocked / opened time slots: no appointment

# Which SCH-25 status kinds may replace the trigger's kind.
STATUS_OVERRIDES: Mapping[EventKind, frozenset[EventKind]] = {
    K.BOOKED: frozenset({K.ARRIVED, K.COMPLETED, K.NO_SHOW}),
    K.RESCHEDULED: frozenset({K.ARRIVED, K.COMPLETED, K.NO_SHOW}),
    K.MODIFIED: frozenset({K.ARRIVED, K.COMPLETED, K.NO_SHOW, K.CANCELLED, K.DELETED}),
    K.CANCELLED: frozenset({K.NO_SHOW}),
}

_PLACEHOLDER_IDS = frozenset({"1"})
_SHORT = 64  # resource ids/texts are kept short


def map_siu(msg: Message, settings: MappingSettings, trigger: str, extra: dict[str, str]) -> ScheduleEvent:
    """Map a SIU (MSH-9 says so) whose body has SCH. ``trigger`` is the MSH-9 event (``S12``).
    Raises :class:`Unprocessable` (see mapping's table)."""
    sch = msg.first("SCH")
    if sch is None:
        raise Unprocessable("SIU without an SCH segment (required segment missing)", "100")
    pid = msg.first("PID")
    if pid is None:  # a hold or block reserves a service or resource; nothing at all is an error
        if any(msg.has(name) for name in ("AIS", "AIG", "AIL", "AIP")):
            raise Unprocessable("no patient: hold or block", "0", skipped=True)
        raise Unprocessable("SIU without PID or AIS/AIG/AIL/AIP: neither appointment nor hold", "100")
    if trigger in SLOT_NOTICES:
        raise Unprocessable(f"SIU^{trigger} is a slot notice, not an appointment", "0", skipped=True)
    if trigger not in TRIGGERS:
        raise Unprocessable(f"SIU^{trigger[:8]}: unsupported trigger event", "201")

    services = list(msg.all("AIS"))
    kind = _kind(settings, sch, trigger)
    patient_ids = common.patient_identifiers(pid)
    zone = settings.zone
    start = _start(msg, sch, services, zone)
    procedure = _procedure(sch, services)
    if len(services) > 1:
        extra["services"] = "~".join(s.get(3) for s in services)
    if msg.z_segments:
        extra["z_segments"] = "\r".join(msg.z_segments)
    study = common.cti_studies(msg.all("CTI"))
    if study:
        extra["cti_study"] = study
    ipc, obr = msg.first("IPC"), msg.first("OBR")
    return ScheduleEvent(
        source=settings.source,
        external_id=_appointment_id(sch, msg.first("PV1")),
        kind=kind,
        trigger=f"SIU^{trigger}",
        status_code=sch.raw(25),
        patient_ids=patient_ids,
        mrn=common.choose_mrn(patient_ids, settings.mrn_authorities, settings.mrn_type_codes),
        accession=(ipc.get(1) if ipc else "") or sch.get(27) or None,
        order_number=sch.get(26) or None,
        procedure_code=procedure[0] or None,
        procedure_text=procedure[1] or None,
        procedure_system=procedure[2] or None,
        modality=common.modality(ipc, obr, [*msg.all("AIG"), *msg.all("AIL")]),
        start=start,
        duration_minutes=_duration(sch, services, msg.first("TQ1"), zone),
        location=_location(msg),
        resources=_resources(msg),
        comments=common.comments(msg.all("NTE")),
        extra=extra,
        event_time=common.message_time(msg, zone),
    )


def _appointment_id(sch: Segment, pv1: Segment | None) -> str:
    placer = sch.get(1)
    for value in (
        sch.get(2),
        "" if placer in _PLACEHOLDER_IDS else placer,
        sch.get(27),
        sch.get(26),
        pv1.get(19) if pv1 else "",
    ):
        if value:
            return value
    raise Unprocessable("SCH-1/SCH-2/SCH-26/SCH-27/PV1-19: no usable appointment id", "101")


def _kind(settings: MappingSettings, sch: Segment, trigger: str) -> EventKind:
    status = common.status_kind(settings.status_codes, sch, 25)
    kind = TRIGGERS[trigger]
    if status is not None and status in STATUS_OVERRIDES.get(kind, frozenset()):
        return status
    return kind


def _start(msg: Message, sch: Segment, services: list[Segment], zone: tzinfo) -> datetime | None:
    for ais in services:
        if ais.get(4):
            return common.timestamp(ais, 4, 1, zone)
    tq1 = msg.first("TQ1")
    if tq1 is not None and tq1.get(7):
        return common.timestamp(tq1, 7, 1, zone)
    if sch.get(11, 4):
        return common.timestamp(sch, 11, 4, zone)
    for name, field in (("AIL", 6), ("AIG", 8), ("AIP", 6)):
        for seg in msg.all(name):
            if seg.get(field):
                return common.timestamp(seg, field, 1, zone)
    return None


def _duration(sch: Segment, services: list[Segment], tq1: Segment | None, zone: tzinfo) -> int | None:
    timed = next((ais for ais in services if ais.get(7)), None)
    if timed is not None:  # the first AIS with a duration; unknown units fall through to SCH-9
        found = common.minutes_from(timed.get(7), timed.get(8), "AIS-7")
        if found:
            return found
    found = common.minutes_from(sch.get(9), sch.get(10), "SCH-9")
    if found:
        return found
    if tq1 is not None:
        for field in (13, 6):  # occurrence duration, service duration (CQ: quantity^units)
            found = common.minutes_from(tq1.get(field, 1), tq1.get(field, 2), f"TQ1-{field}")
            if found:
                return found
    found = common.tq_duration(sch.get(11, 3))
    if found:
        return found
    pairs = [(tq1, 7, 1, 8, 1)] if tq1 is not None else []
    pairs.append((sch, 11, 4, 11, 5))
    for seg, start_field, start_comp, end_field, end_comp in pairs:
        if seg is not None and seg.get(start_field, start_comp) and seg.get(end_field, end_comp):
            begin = common.timestamp(seg, start_field, start_comp, zone)
            end = common.timestamp(seg, end_field, end_comp, zone)
            if begin and end and end > begin:
                return int((end - begin).total_seconds() // 60)
    return None


def _procedure(sch: Segment, services: list[Segment]) -> tuple[str, str, str]:
    if services:
        ais = services[0]
        return ais.get(3, 1), ais.get(3, 2), ais.get(3, 3)
    for field in (7, 8):  # appointment reason, appointment type
        if sch.get(field, 1) or sch.get(field, 2):
            return sch.get(field, 1), sch.get(field, 2), sch.get(field, 3)
    return "", "", ""


def render_location(seg: Segment, field: int) -> str | None:
    """A PL field as ``point of care / room / bed / facility / building / floor``.

    Quirk (corpus msft SIU-S12_1): a sender that packs ``code&text&system`` into PL.1 with
    nothing in the other components gets ``code text``.
    """
    if seg.get(field, 1, 2) and not any(seg.get(field, c) for c in (2, 3, 4, 7, 8)):
        return f"{seg.get(field, 1, 1)} {seg.get(field, 1, 2)}".strip()
    parts: list[str] = []
    for component in (1, 2, 3, 4, 7, 8):
        value = seg.get(field, component)
        if value and (not parts or parts[-1] != value):
            parts.append(value)
    return " / ".join(parts) or None


def _location(msg: Message) -> str | None:
    for ail in msg.all("AIL"):
        found = render_location(ail, 3)
        if found:
            return found
    pv1 = msg.first("PV1")
    return render_location(pv1, 3) if pv1 is not None else None


def _resources(msg: Message) -> tuple[str, ...]:
    found: list[str] = []
    for seg in msg.segments:
        if seg.name in ("AIG", "AIP"):
            value = (seg.get(3, 1) or seg.get(3, 2))[:_SHORT]
            if value and value not in found:
                found.append(value)
    return tuple(found)
