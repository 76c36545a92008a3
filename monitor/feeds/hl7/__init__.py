"""HL7 v2 feed: pure functions that turn HL7 v2 text into :class:`~monitor.events.ScheduleEvent`.

* :mod:`.mapping` - :func:`to_events` / :func:`to_event` and :class:`MappingSettings`
* :mod:`.ack` - :func:`build_ack`, :func:`message_key`, :func:`message_type`
* :mod:`.batches` - :func:`iter_messages` for replaying files
* :mod:`.timestamps` - :func:`parse_ts`, :func:`format_ts`

Nothing here does I/O beyond reading a stream it is given, keeps state, or reads config.
"""

from monitor.feeds.hl7.ack import build_ack, message_key, message_type
from monitor.feeds.hl7.batches import iter_messages
from monitor.feeds.hl7.mapping import DEFAULT_STATUS_CODES, MappingSettings, to_event, to_events
from monitor.feeds.hl7.timestamps import format_ts, parse_ts

__all__ = [
    "DEFAULT_STATUS_CODES",
    "MappingSettings",
    "build_ack",
    "format_ts",
    "iter_messages",
    "message_key",
    "message_type",
    "parse_ts",
    "to_event",
    "to_events",
]
