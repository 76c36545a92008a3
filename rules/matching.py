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

Exams that compete for nothing (see :func:`assign`): a cancelled or no-show exam holds no
occurrence but is tied to the one it was best eligible for (the last one seen wins), so the
occurrence can be reported open again; a research orderable dated after the off-study date
is set aside; an active exam eligible nowhere is *unplaced*, and paired with the best free
occurrence of its modality within ``match_within`` days, if any (a wrong orderable for it).

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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from rules.model import ACTIVE_EXAM, ExamRecord
from rules.windows import Slot, TrialPlan, days_outside

__all__ = ["Assignment", "DatedExam", "Nearby", "assign", "place", "rank"]

DatedExam = tuple[ExamRecord, int]  # an exam and its local date (ordinal, in the site's zone)


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


@dataclass(slots=True)
class Assignment:
    """Where one enrolment's exams fell; :func:`assign` fills it and each occurrence's ``exams``.

    ``exam_day``: the local date of every exam considered, by exam id. ``served``: ids of the
    active exams that serve an occurrence (in ``Slot.exams``: the first counts, the others are
    duplicates). ``lapsed``: by occurrence, the cancelled or no-show exam tied to it.
    ``after_off_study``: research exams dated after the off-study date. ``unplaced``: active
    exams eligible nowhere, each with the best free occurrence of its modality nearby, or None;
    ``misordered`` holds those occurrences.
    """

    exam_day: dict[int, int] = field(default_factory=dict)
    served: set[int] = field(default_factory=set)
    lapsed: dict[Slot, DatedExam] = field(default_factory=dict)
    after_off_study: list[DatedExam] = field(default_factory=list)
    unplaced: list[tuple[ExamRecord, int, Slot | None]] = field(default_factory=list)
    misordered: set[Slot] = field(default_factory=set)


def assign(
    plan: TrialPlan, slots: list[Slot], exams: Sequence[DatedExam], off_study: int | None
) -> Assignment:
    """Assign one enrolment's ``exams`` (sorted by id) to its occurrences ``slots`` (see module docs).

    Appends each serving exam to its occurrence's ``exams``; ``off_study`` is the off-study
    date as an ordinal, or None.
    """
    slack = plan.trial.match_within
    by_code = Nearby(slots, lambda slot: slot.plan.accepted)
    assignment = Assignment()
    unplaced: list[DatedExam] = []
    for exam, day in exams:
        assignment.exam_day[exam.id] = day
        candidates = by_code.near(exam.procedure_code, day, slack)
        if exam.status not in ACTIVE_EXAM:  # cancelled or no-show: tied to its best occurrence
            if candidates:
                assignment.lapsed[min(candidates, key=rank(day))] = (exam, day)
        elif off_study is not None and day > off_study and exam.procedure_code in plan.orderables:
            assignment.after_off_study.append((exam, day))
        elif not candidates:
            unplaced.append((exam, day))
        else:
            slot, _ = place(candidates, day)
            slot.exams.append(exam)
            assignment.served.add(exam.id)
    if unplaced:  # only once every exam is placed: "free" means free of all of them
        by_modality = Nearby(slots, lambda slot: slot.plan.modalities)
        for exam, day in unplaced:
            free = [slot for slot in by_modality.near(exam.modality, day, slack) if not slot.exams]
            nearest = min(free, key=rank(day)) if free else None
            assignment.unplaced.append((exam, day, nearest))
            if nearest is not None:
                assignment.misordered.add(nearest)
    return assignment
