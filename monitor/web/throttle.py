"""Sign-in throttling: too many wrong passwords and the form stops checking them for a while.

The count comes from the audit trail (``sign_in.failed`` rows), not from process memory,
so it holds across ``hiro-monitor web --workers N`` and across restarts, and what an
administrator reads on the Audit page is exactly what the throttle counted.

Two limits, both over the last ``login_lockout_minutes``:

- per account and client address (``login_attempts``, default 5): someone guessing one
  account's password from one place;
- per client address alone (``login_attempts`` x 6): one place trying many accounts.

An account is never locked for everyone: a colleague at another workstation (another
address) can still sign in while a guesser is held back. A throttled attempt does not run
the password hash (no CPU for the guesser) and is itself audited as ``sign_in.throttled``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, select

from monitor.config import WebSettings
from monitor.store.schema import audit_log

FAILED = "sign_in.failed"
THROTTLED = "sign_in.throttled"
_PER_ADDRESS_FACTOR = 6


@dataclass(frozen=True, slots=True)
class Throttle:
    """Whether a sign-in may be tried now, and if not, for how long to wait."""

    allowed: bool
    retry_after_seconds: int = 0


def sign_in_throttle(
    conn: Connection, settings: WebSettings, username: str, client: str, now: datetime
) -> Throttle:
    """Throttle for ``username`` from ``client`` at ``now``, counted from the audit trail."""
    window = timedelta(minutes=settings.login_lockout_minutes)
    recent = select(audit_log.c.at).where(
        audit_log.c.action == FAILED, audit_log.c.at > now - window, audit_log.c.client == client
    )
    limits = (
        (recent.where(audit_log.c.username == username[:120]), settings.login_attempts),
        (recent, settings.login_attempts * _PER_ADDRESS_FACTOR),
    )
    for query, limit in limits:
        subquery = query.order_by(audit_log.c.at.desc()).limit(limit).subquery()
        count, oldest = conn.execute(select(func.count(), func.min(subquery.c.at))).one()
        if count >= limit:
            # Free again when the oldest of the last ``limit`` failures leaves the window.
            wait = oldest + window - now
            return Throttle(False, max(1, math.ceil(wait.total_seconds())))
    return Throttle(True)
