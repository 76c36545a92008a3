"""Spacing out the polls of a source that fails (the PACS job), without a thread of its own.

After n failures in a row the next n - 1 ticks of the job are skipped, up to
``MAX_SKIPPED`` (with a 60 s interval: a PACS down for an hour is asked about every ten
minutes, not every minute). The first success resets it.
"""

from __future__ import annotations

__all__ = ["MAX_SKIPPED", "PollBackoff"]

MAX_SKIPPED = 9


class PollBackoff:
    """Whether a tick of the poll job should poll (see the module doc)."""

    def __init__(self) -> None:
        self.failures = 0
        self._skip = 0

    def due(self) -> bool:
        if self._skip > 0:
            self._skip -= 1
            return False
        return True

    def record(self, ok: bool) -> None:
        self.failures = 0 if ok else self.failures + 1
        self._skip = min(max(self.failures - 1, 0), MAX_SKIPPED)
