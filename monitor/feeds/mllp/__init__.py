"""HL7 v2 over MLLP: the framing (pure) and the asyncio listener around it."""

from monitor.feeds.mllp.framing import (
    BrokenFrame,
    Event,
    Frame,
    FrameDecoder,
    Garbage,
    Oversize,
    frame,
)
from monitor.feeds.mllp.server import ListenerStats, MessageHandler, MllpServer, Peer

__all__ = [
    "BrokenFrame",
    "Event",
    "Frame",
    "FrameDecoder",
    "Garbage",
    "ListenerStats",
    "MessageHandler",
    "MllpServer",
    "Oversize",
    "Peer",
    "frame",
]
