"""One poll of the PACS: list the recent studies, read the new or changed ones of research
interest, store and match them; the exams whose images changed are what to re-evaluate.

The listing covers the site's today and ``look_back_days`` before it. Only studies whose
accession number is an exam's, or whose patient id is an enrolled MRN, are read, and only
when new or grown (another instance count: a study still arriving is read again). Requests
stop at ``max_requests_per_poll``: the rest waits for the next poll, which finds it still
unread. A PACS error ends the poll: recorded on the feed-health page (``feed_polls``, the
error without PHI), nothing stored from the failed study, no finding changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from monitor.config import Settings
from monitor.pacs.reader import PacsError, PacsReader, StudyListing
from monitor.store.images import record_study, studies_to_read
from monitor.store.polls import poll_finished, poll_started

__all__ = ["PacsPollResult", "poll_pacs"]

log = logging.getLogger("monitor.pacs")


@dataclass(slots=True)
class PacsPollResult:
    listed: int = 0  # studies in the listing
    read: int = 0  # studies read and stored
    matched: int = 0  # of those, matched to an exam
    waiting: int = 0  # left for the next poll (request budget spent)
    requests: int = 0
    error: str = ""
    changed_exams: set[int] = field(default_factory=set)
    started_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return not self.error


def poll_pacs(
    engine: Engine,
    settings: Settings,
    reader: PacsReader,
    attributes: Collection[str],
    clock: Callable[[], datetime],
) -> PacsPollResult:
    """Poll once and record the poll (see the module doc). Raises only for store failures."""
    pacs = settings.pacs
    zone = ZoneInfo(settings.site.timezone)
    started = clock()
    with engine.begin() as conn:
        poll_id = poll_started(conn, pacs.feed, started)
    result = PacsPollResult(started_at=started)
    try:
        today = started.astimezone(zone).date()
        listed = list(reader.studies(today - timedelta(days=pacs.look_back_days), today))
        result.listed = len(listed)
        with engine.connect() as conn:
            wanted = studies_to_read(conn, listed)
        for number, listing in enumerate(wanted):
            if reader.requests >= pacs.max_requests_per_poll:
                result.waiting = len(wanted) - number
                break
            _read(engine, reader, listing, attributes, zone, clock, result)
    except PacsError as exc:
        result.error = str(exc)
        log.warning("PACS poll failed: %s", exc)
    result.requests = reader.requests
    notes = (
        [f"{result.read - result.matched} read but matched no exam"] if result.read > result.matched else []
    )
    notes += [f"{result.waiting} wait for the next poll"] if result.waiting else []
    with engine.begin() as conn:
        poll_finished(
            conn,
            poll_id,
            finished_at=clock(),
            ok=result.ok,
            resources=result.listed,
            accepted=result.read,
            rejected=result.read - result.matched,
            error=result.error
            or (f"{result.waiting} studies wait for the next poll" if result.waiting else ""),
        )
    return result


def _read(
    engine: Engine,
    reader: PacsReader,
    listing: StudyListing,
    attributes: Collection[str],
    zone: ZoneInfo,
    clock: Callable[[], datetime],
    result: PacsPollResult,
) -> None:
    study = reader.study(listing, attributes)
    with engine.begin() as conn:
        exam_id, changed = record_study(conn, study, listing.instances, zone, clock())
    result.read += 1
    result.matched += exam_id is not None
    result.changed_exams |= changed
