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

from sqlalchemy import Connection

from monitor.config import WebSettings
from monitor.store.accounts import recent_failures

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
    limits = ((username, settings.login_attempts), (None, settings.login_attempts * _PER_ADDRESS_FACTOR))
    for account, limit in limits:
        count, oldest = recent_failures(conn, FAILED, client, now - window, limit, username=account)
        if count >= limit and oldest is not None:
            # Free again when the oldest of the last ``limit`` failures leaves the window.
            wait = oldest + window - now
            return Throttle(False, max(1, math.ceil(wait.total_seconds())))
    return Throttle(True)
