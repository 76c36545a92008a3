"""What the evaluation sweeps judged, kept in the store (tables ``judgements``, ``sweep_state``).

:func:`save_judgements` writes, in the caller's transaction (the one that records the
findings), the fingerprint and hold time of each enrolment just judged; :func:`save_sweep`
the mark and times of a finished sweep; :func:`load_judgements` reads them back for a new
process's first sweep (:mod:`monitor.evaluation`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, select, update

from monitor.store.findings import chunks
from monitor.store.schema import judgements, sweep_state

__all__ = ["StoredJudgements", "load_judgements", "save_judgements", "save_sweep"]

SWEEP = "evaluation"


@dataclass(frozen=True, slots=True)
class StoredJudgements:
    mark: int
    judged_at: datetime
    full_at: datetime
    settings: str
    fingerprints: dict[int, str]
    until: dict[int, datetime]


def save_judgements(conn: Connection, judged: Mapping[int, tuple[str, datetime]]) -> None:
    """Enrolment id -> (fingerprint, holds until), replacing what was stored for them."""
    for part in chunks(judged):
        conn.execute(delete(judgements).where(judgements.c.enrolment_id.in_(part)))
        conn.execute(
            judgements.insert(),
            [{"enrolment_id": e, "fingerprint": judged[e][0], "until": judged[e][1]} for e in part],
        )


def save_sweep(conn: Connection, mark: int, judged_at: datetime, full_at: datetime, settings: str) -> None:
    values = {"mark": mark, "judged_at": judged_at, "full_at": full_at, "settings": settings}
    if conn.execute(update(sweep_state).where(sweep_state.c.name == SWEEP).values(**values)).rowcount == 0:
        conn.execute(sweep_state.insert().values(name=SWEEP, **values))


def load_judgements(conn: Connection) -> StoredJudgements | None:
    """The last sweep's state and every stored judgement; None before the first sweep."""
    state = conn.execute(select(sweep_state).where(sweep_state.c.name == SWEEP)).first()
    if state is None:
        return None
    fingerprints: dict[int, str] = {}
    until: dict[int, datetime] = {}
    for enrolment_id, fingerprint, holds in conn.execute(select(judgements)):
        fingerprints[int(enrolment_id)] = fingerprint
        until[int(enrolment_id)] = holds
    return StoredJudgements(
        int(state.mark), state.judged_at, state.full_at, state.settings, fingerprints, until
    )
