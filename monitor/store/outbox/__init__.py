"""The outbox: notifications planned, claimed, sent and retried (DESIGN invariant 4).

- :mod:`.rows`: the row's life, listing and retrying (``hiro-monitor notifications``);
- :mod:`.planning`: what an evaluation plans becomes rows (new keys pending, vanished ones
  cancelled), and the daily digests;
- :mod:`.claims`: how a dispatcher takes due rows, records outcomes and recovers rows a
  dead dispatcher left in ``sending``;
- :mod:`.backlog`: what waits per channel, for feed health and ``/metrics``.
"""

from monitor.store.outbox.backlog import (
    FAILED_SHOWN,
    OVERDUE_AFTER,
    ChannelBacklog,
    OutboxHealth,
    outbox_backlog,
    outbox_health,
)
from monitor.store.outbox.rows import (
    OutboxRow,
    OutboxStatus,
    Retried,
    RetryResult,
    list_outbox,
    outbox_rows,
    retry_failed,
)

__all__ = [
    "FAILED_SHOWN",
    "OVERDUE_AFTER",
    "ChannelBacklog",
    "OutboxHealth",
    "OutboxRow",
    "OutboxStatus",
    "Retried",
    "RetryResult",
    "list_outbox",
    "outbox_backlog",
    "outbox_health",
    "outbox_rows",
    "retry_failed",
]
