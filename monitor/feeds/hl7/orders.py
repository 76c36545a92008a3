"""Imaging orders (ORM^O01, OMI^O23, OML^O21, OMG^O19; HL7 v2.5 chapter 4) to events.

Each ORC starts an order group; the OBR, TQ1, IPC, NTE and CTI after it belong to it (an
OBR arriving when the group already has one starts a new group under the same ORC). Each
group gives one event, so an ORM with two orders gives two. Choices:

* Kind from ORC-1 (order control, table 0119): NW/OK/SN/NA -> ordered; CA/CR/OC/DC/OD/DR
  -> cancelled; XO/XR/XX/SC -> modified. The brief suggested "ordered" for XO and SC, but
  ORDERED would move a booked exam back to "ordered" (events.STATUS_AFTER), while MODIFIED
  keeps its status. An order is "ordered", not "booked", even with a time: booking is what
  the scheduling feed (SIU) reports. ORC-5 (order status, table 0038) looked up in the
  site's status table overrides ORC-1 when it says completed/cancelled (``CM``, ``CA``,
  ``DC``). Any other ORC-1 (RE results, AF refills, HD holds ...) is not an order lifecycle
  event: the group is skipped (stored and AA'd when no group is left).
* Identity: IPC-1 accession, else the filler order number OBR-3.1/ORC-3.1, else the placer
  order number ORC-2.1/OBR-2.1. ``accession`` is IPC-1 or the filler number and
  ``order_number`` the placer number, so the intake can still link an order whose filler
  number arrived later.
* Procedure: OBR-4 (code^text^system), else IPC-6 (protocol code). Modality: IPC-5, else
  OBR-24 where it names one.
* Start: OBR-36 (scheduled date/time), else TQ1-7, else OBR-27.4, else ORC-7.4 (TQ start).
  Duration: TQ1-13/TQ1-6, else OBR-27.3/ORC-7.3. Location: none (PV1-3 is where the
  patient is, not where the exam is).
* Comments: NTEs before the first ORC (message and patient notes), then the group's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING

from monitor.events import EventKind, ScheduleEvent
from monitor.feeds.hl7 import common
from monitor.feeds.hl7.message import Message, Segment, Unprocessable

if TYPE_CHECKING:
    from monitor.feeds.hl7.mapping import MappingSettings

ORDER_MESSAGE_TYPES = frozenset({"ORM", "OMI", "OML", "OMG"})

K = EventKind
ORDER_CONTROL: Mapping[str, EventKind] = {
    **dict.fromkeys(("NW", "OK", "SN", "NA"), K.ORDERED),
    **dict.fromkeys(("CA", "CR", "OC", "DC", "OD", "DR"), K.CANCELLED),
    **dict.fromkeys(("XO", "XR", "XX", "SC"), K.MODIFIED),
}
STATUS_OVERRIDES = frozenset({K.COMPLETED, K.CANCELLED, K.NO_SHOW, K.ARRIVED, K.DELETED})


@dataclass(slots=True)
class _Group:
    orc: Segment | None
    obr: Segment | None = None
    tq1: Segment | None = None
    ipc: Segment | None = None
    notes: list[Segment] = field(default_factory=list)
    trials: list[Segment] = field(default_factory=list)


def map_orders(msg: Message, settings: MappingSettings, trigger: str) -> list[ScheduleEvent]:
    """One event per order group. Raises :class:`Unprocessable`: 100 without PID or without
    any ORC/OBR, 101 when an order has no number, 0 (skipped) when no group is an order
    lifecycle event."""
    pid = msg.first("PID")
    if pid is None:
        raise Unprocessable(f"{trigger} without a PID segment (required segment missing)", "100")
    shared_notes, groups = _groups(msg)
    if not groups:
        raise Unprocessable(f"{trigger} without ORC/OBR segments (required segment missing)", "100")
    patient_ids = common.patient_identifiers(pid)
    mrn = common.choose_mrn(patient_ids, settings.mrn_authorities, settings.mrn_type_codes)
    recorded = common.message_time(msg, settings.zone)
    events: list[ScheduleEvent] = []
    skipped: list[str] = []
    for group in groups:
        kind = _kind(group, settings)
        control = group.orc.get(1).upper() if group.orc else ""
        if kind is None:
            skipped.append(f"ORC-1 {control[:4] or '(empty)'} is not an order lifecycle event")
            continue
        extra: dict[str, str] = {"order_control": control} if control else {}
        if len(groups) > 1:
            extra["orders_in_message"] = str(len(groups))
        if msg.z_segments:
            extra["z_segments"] = "\r".join(msg.z_segments)
        study = common.cti_studies(iter(group.trials))
        if study:
            extra["cti_study"] = study
        if group.obr is not None and group.obr.get(24):
            extra["diagnostic_service"] = group.obr.get(24)
        placer, filler = _placer(group), _filler(group)
        accession = (group.ipc.get(1) if group.ipc else "") or filler
        external_id = accession or placer
        if not external_id:
            raise Unprocessable("ORC-2/ORC-3/OBR-2/OBR-3/IPC-1: no usable order number", "101")
        code, text, system = _procedure(group)
        events.append(
            ScheduleEvent(
                source=settings.source,
                external_id=external_id,
                kind=kind,
                trigger=trigger,
                status_code=group.orc.raw(5) if group.orc else "",
                patient_ids=patient_ids,
                mrn=mrn,
                accession=accession or None,
                order_number=placer or None,
                procedure_code=code or None,
                procedure_text=text or None,
                procedure_system=system or None,
                modality=common.modality(group.ipc, group.obr),
                start=_start(group, settings.zone),
                duration_minutes=_duration(group),
                comments=common.comments(iter([*shared_notes, *group.notes])),
                extra=extra,
                event_time=recorded,
            )
        )
    if not events:
        raise Unprocessable(skipped[0], "0", skipped=True)
    return events


def _groups(msg: Message) -> tuple[list[Segment], list[_Group]]:
    shared: list[Segment] = []
    groups: list[_Group] = []
    for seg in msg.segments:
        name = seg.name
        if name == "ORC":
            groups.append(_Group(seg))
        elif name == "OBR":
            if not groups or groups[-1].obr is not None:
                groups.append(_Group(groups[-1].orc if groups else None))
            groups[-1].obr = seg
        elif not groups:
            if name == "NTE":
                shared.append(seg)
        elif name == "NTE":
            groups[-1].notes.append(seg)
        elif name == "CTI":
            groups[-1].trials.append(seg)
        elif name == "TQ1" and groups[-1].tq1 is None:
            groups[-1].tq1 = seg
        elif name == "IPC" and groups[-1].ipc is None:
            groups[-1].ipc = seg
    return shared, groups


# OBR-25 result status (HL7 table 0123): a result exists, so the exam was performed.
# P preliminary, C corrected, F final, R results stored not verified, A some results.
_RESULTED = frozenset({"P", "C", "F", "R", "A"})


def _kind(group: _Group, settings: MappingSettings) -> EventKind | None:
    if group.orc is None:
        return None
    status = common.status_kind(settings.status_codes, group.orc, 5)
    if status in STATUS_OVERRIDES:
        return status
    control = ORDER_CONTROL.get(group.orc.get(1).upper())
    if control is not None and control not in STATUS_OVERRIDES and _resulted(group):
        return K.COMPLETED  # done means done: a result is evidence the scan happened
    return control


def _resulted(group: _Group) -> bool:
    return group.obr is not None and group.obr.get(25).upper() in _RESULTED


def _first(*values: str) -> str:
    return next((v for v in values if v), "")


def _placer(group: _Group) -> str:
    return _first(group.orc.get(2) if group.orc else "", group.obr.get(2) if group.obr else "")


def _filler(group: _Group) -> str:
    return _first(group.obr.get(3) if group.obr else "", group.orc.get(3) if group.orc else "")


def _procedure(group: _Group) -> tuple[str, str, str]:
    obr, ipc = group.obr, group.ipc
    if obr is not None and (obr.get(4, 1) or obr.get(4, 2)):
        return obr.get(4, 1), obr.get(4, 2), obr.get(4, 3)
    if ipc is not None and (ipc.get(6, 1) or ipc.get(6, 2)):
        return ipc.get(6, 1), ipc.get(6, 2), ipc.get(6, 3)
    return "", "", ""


def _start(group: _Group, zone: tzinfo) -> datetime | None:
    obr, orc, tq1 = group.obr, group.orc, group.tq1
    candidates = ((obr, 36, 1), (tq1, 7, 1), (obr, 27, 4), (orc, 7, 4))
    for seg, field_no, component in candidates:
        if seg is not None and seg.get(field_no, component):
            return common.timestamp(seg, field_no, component, zone)
    return None


def _duration(group: _Group) -> int | None:
    if group.tq1 is not None:
        for field_no in (13, 6):
            found = common.minutes_from(
                group.tq1.get(field_no, 1), group.tq1.get(field_no, 2), f"TQ1-{field_no}"
            )
            if found:
                return found
    for seg in (group.obr, group.orc):
        if seg is not None:
            found = common.tq_duration(seg.get(27 if seg.name == "OBR" else 7, 3))
            if found:
                return found
    return None
