"""HL7 v2 scheduling and order messages to :class:`ScheduleEvent` (the feeds' one contract).

Entry points: :func:`to_events` (the API the intake uses) and :func:`to_event` (one event).
Both are pure and never raise for bad input: every problem becomes a :class:`Rejection`
with a plain, PHI-free reason and an HL7 table 0357 error code:

=====  ===========================================================================  =======
code   when                                                                         skipped
=====  ===========================================================================  =======
0      valid but not ours: an SIU hold/block without PID, S23/S24 slot notices,     yes
       an order whose ORC-1 is not a lifecycle event (RE, AF ...)
100    no MSH at the start; a SIU without SCH, or without both PID and resources;    no
       an order without PID/ORC/OBR
101    no usable appointment or order id                                            no
102    unusable MSH-1/MSH-2 encoding characters; an invalid timestamp or number     no
200    a message type we do not take (QRY, ADT ... without SCH): answer AR          no
201    a SIU trigger event we do not know                                           no
207    anything unexpected while mapping (the reason names the exception type)      no
=====  ===========================================================================  =======

Why a list: a SIU is one appointment however many RGS/AIS groups it carries, so it gives
one event; an ORM/OMI/OML with two ORC/OBR groups is two orders, so it gives two events.

Parsing is python-hl7's (fast and lenient; why, and how it is kept fast, is in
:mod:`monitor.feeds.hl7.message`).

MSH-9 decides what a message is (HL7 v2.5 section 2.9.2): a SIU is read as an appointment,
an ORM/OMI/OML/OMG as orders, and any other type is answered AR 200 and applied to nothing,
whatever its body holds. A body with SCH under ``ADT^A60`` (corpus msft SIU_12) or
``ZZZ^Z99`` is not an appointment the sender told us about: applying it would let any
message type move an exam, and results (ORU) with ORC/OBR would pass for orders.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from zoneinfo import ZoneInfo

from monitor.config import Hl7Settings
from monitor.events import EventKind, Rejection, ScheduleEvent
from monitor.feeds.hl7.message import Message, Unprocessable, read_message
from monitor.feeds.hl7.orders import ORDER_MESSAGE_TYPES, map_orders
from monitor.feeds.hl7.siu import map_siu

# Built-in sender status texts (HL7 table 0278 filler status codes, table 0038 order status,
# and common vendor spellings). A site's table is laid over these; keys ignore case.
DEFAULT_STATUS_CODES: Mapping[str, EventKind] = MappingProxyType(
    {
        "BOOKED": EventKind.BOOKED,
        "ARRIVED": EventKind.ARRIVED,
        "CHECKED IN": EventKind.ARRIVED,
        "CHECKEDIN": EventKind.ARRIVED,
        "CHECKED-IN": EventKind.ARRIVED,
        "STARTED": EventKind.ARRIVED,
        "COMPLETE": EventKind.COMPLETED,
        "COMPLETED": EventKind.COMPLETED,
        "CM": EventKind.COMPLETED,  # ORC-5 order status, table 0038
        "CANCELLED": EventKind.CANCELLED,
        "CANCELED": EventKind.CANCELLED,
        "CA": EventKind.CANCELLED,  # ORC-5
        "DC": EventKind.CANCELLED,  # table 0278 "Dc" discontinued; also ORC-5
        "DISCONTINUED": EventKind.CANCELLED,
        "NOSHOW": EventKind.NO_SHOW,
        "NO SHOW": EventKind.NO_SHOW,
        "NO-SHOW": EventKind.NO_SHOW,
        "DELETED": EventKind.DELETED,
    }
)


def _normalised(table: Mapping[str, EventKind]) -> Mapping[str, EventKind]:
    return MappingProxyType({key.strip().upper(): kind for key, kind in table.items()})


@dataclass(frozen=True, slots=True)
class MappingSettings:
    """What the mapping needs to know about one feed.

    ``status_codes`` is the complete status table (keys matched case-insensitively, as the
    whole ``code^system`` text or the code alone); :meth:`from_settings` lays the site's
    table over :data:`DEFAULT_STATUS_CODES`.
    """

    source: str
    zone: ZoneInfo
    mrn_authorities: tuple[str, ...] = ()
    mrn_type_codes: tuple[str, ...] = ("MR", "MRN")
    status_codes: Mapping[str, EventKind] = field(default_factory=lambda: DEFAULT_STATUS_CODES)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status_codes", _normalised(self.status_codes))

    @classmethod
    def from_settings(cls, hl7: Hl7Settings) -> MappingSettings:
        """Build from the ``[hl7]`` config section. Raises :class:`ValueError` naming the
        key when a status code maps to something that is not an :class:`EventKind`."""
        table = dict(DEFAULT_STATUS_CODES)
        for code, kind in hl7.status_codes.items():
            try:
                table[code] = EventKind(kind.strip().lower())
            except ValueError:
                allowed = ", ".join(k.value for k in EventKind)
                raise ValueError(f"hl7.status_codes[{code!r}]: {kind!r} is not one of {allowed}") from None
        return cls(
            source=hl7.feed,
            zone=ZoneInfo(hl7.timezone),
            mrn_authorities=tuple(hl7.mrn_authorities),
            mrn_type_codes=tuple(hl7.mrn_type_codes),
            status_codes=table,
        )


def to_events(raw: bytes | str, settings: MappingSettings) -> list[ScheduleEvent] | Rejection:
    """Map one HL7 v2 message to its events (one for a SIU, one per order for ORM/OMI/OML).

    Never raises: see the module docstring for the Rejection codes. A non-empty list is
    returned whenever anything was mapped; orders in the message that were skipped (for
    example an ``ORC-1 RE``) are simply not in the list.
    """
    try:
        return _dispatch(read_message(raw), settings)
    except Unprocessable as problem:
        return Rejection(problem.reason, problem.error_code, skipped=problem.skipped)
    except Exception as exc:  # never let bad input escape; the type name carries no PHI
        return Rejection(f"internal error while mapping the message ({type(exc).__name__})", "207")


def to_event(raw: bytes | str, settings: MappingSettings) -> ScheduleEvent | Rejection:
    """The first event of :func:`to_events`, for callers that handle SIU only. An ORM with
    two orders loses the second here: the intake should use :func:`to_events`."""
    result = to_events(raw, settings)
    return result[0] if isinstance(result, list) else result


def _dispatch(msg: Message, settings: MappingSettings) -> list[ScheduleEvent]:
    msh = msg.msh
    msh_type, msh_event = msh.get(9, 1).upper(), msh.get(9, 2).upper()
    if msh_type == "SIU":
        if not msg.has("SCH"):
            missing = f"SIU^{msh_event[:8]} without an SCH segment (required segment missing)"
            raise Unprocessable(missing, "100")
        return [map_siu(msg, settings, msh_event, {})]
    if msh_type in ORDER_MESSAGE_TYPES:
        return map_orders(msg, settings, f"{msh_type}^{msh_event}")
    shown = f"{msh_type[:8]}^{msh_event[:8]}" if msh_type else "(empty MSH-9)"
    raise Unprocessable(f"unsupported message type {shown}: only SIU and imaging orders are taken", "200")
