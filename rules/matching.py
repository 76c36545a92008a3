"""Which exam serves which occurrence.

Assigning exams to occurrences (deterministic and stable)
---------------------------------------------------------
An exam is *eligible* for an occurrence when its orderable is accepted by one of the
occurrence's exam types (in the protocol version in force on the occurrence's due date) and
its local date is inside the window or at most ``match_within`` days outside it.

Active exams (ordered, scheduled, arrived, completed) are taken in order of exam id, which
is the order the store first saw them. Each one, ranking its eligible occurrences by
(days outside the window, days from the due date, due date, timepoint order):

1. takes the best *free* occurrence whose window contains the exam date; else
2. if the exam date is inside the window of an occurrence already served, it is a
   ``duplicate`` of the best such occurrence; else
3. takes the best free occurrence (it is then ``early`` or ``late``); else
4. is a ``duplicate`` of the best occurrence.

Because an exam only ever takes what older exams left free, a newly seen exam can never
take an occurrence away from an older one: it can only fill a free occurrence or be
reported. A rescheduled exam keeps its id and so its priority. Input order never matters
(exams are sorted by id first). The one way a new exam moves older ones is by changing the
schedule itself: a performed exam of a ``count_from = "previous_exam"`` series moves the
visits after it, and exams are then judged against the moved visits.

:class:`Nearby` files one subject's occurrences under orderable codes (or modalities) so the
occurrences near an exam date are found by bisection, not by scanning the whole schedule.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable

from rules.windows import Slot, days_outside

__all__ = ["Nearby", "place", "rank"]


class Nearby:
    """Occurrences filed under keys (orderable codes or modalities), for 'which are near this date'."""

    def __init__(self, slots: list[Slot], keys: Callable[[Slot], Iterable[str]]) -> None:
        filed: dict[str, list[Slot]] = {}
        for slot in slots:  # slots arrive sorted by window start, so each list is too
            for key in keys(slot):
                filed.setdefault(key, []).append(slot)
        self.filed = {key: (found, [s.opens for s in found], max(s.closes - s.opens for s in found))
                      for key, found in filed.items()}  # fmt: skip

    def near(self, key: str, day: int, slack: int) -> list[Slot]:
        entry = self.filed.get(key)
        if entry is None:
            return []
        found, opens, widest = entry
        low = bisect_left(opens, day - slack - widest)
        high = bisect_right(opens, day + slack)
        return [slot for slot in found[low:high] if slot.closes + slack >= day]


def rank(day: int) -> Callable[[Slot], tuple[int, int, int, int]]:
    """Sort key for an exam on ``day``: days outside the window, days from due, due date, timepoint order."""
    return lambda s: (abs(days_outside(day, s.opens, s.closes)), abs(day - s.due), s.due, s.plan.position)


def place(candidates: list[Slot], day: int) -> tuple[Slot, bool]:
    """The occurrence an active exam serves and whether it is a duplicate there (see module docs)."""
    ranked = sorted(candidates, key=rank(day)) if len(candidates) > 1 else candidates
    free = [slot for slot in ranked if not slot.exams]
    for slot in free:
        if slot.opens <= day <= slot.closes:
            return slot, False
    best = ranked[0]
    if best.opens <= day <= best.closes or not free:
        return best, True
    return free[0], False
