"""Cross-references inside a protocol: every name a timepoint or exam uses must be declared.

Exam ids in timepoints, arms, anchors (and ``anchor = "previous"``, which needs a timepoint
with a last visit before it), ``same_scanner_as`` and acquisition ``baseline`` timepoints,
and orderable codes claimed by two exam types. Problems go to the :class:`~rules.fields.FieldReader` given.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from rules.fields import FieldReader, join_path
from rules.protocol import ANCHOR_PREVIOUS, ExamType, Timepoint

__all__ = ["check_references"]


def check_references(
    reader: FieldReader,
    exams: Mapping[str, tuple[ExamType, str]],
    timepoints: Sequence[tuple[Timepoint, str]],
    version: str,
    arms: Sequence[str],
    anchor_names: Collection[str],
) -> None:
    """Report names that point nowhere in one version's ``exams`` and ``timepoints`` (with their key paths).

    ``version`` names the version in messages; ``arms`` and ``anchor_names`` are what the
    file declares (anchor names include the built-in ``off_study``).
    """
    owner: dict[str, str] = {}
    for exam, path in exams.values():
        for index, code in enumerate(exam.orderables):
            if code in owner and owner[code] != exam.id:
                reader.problem(
                    join_path(join_path(path, "orderables"), index),
                    f"orderable {code!r} is also listed under exam {owner[code]!r}",
                    "an orderable code must identify one exam type: keep it in one of them",
                )
            owner.setdefault(code, exam.id)
    ids = {timepoint.id for timepoint, _ in timepoints}
    for exam, path in exams.values():
        if exam.same_scanner_as is not None and exam.same_scanner_as not in ids:
            reader.problem(
                join_path(path, "same_scanner_as"),
                f"no timepoint {exam.same_scanner_as!r} in {version}",
                'name the timepoint whose scanner must be reused, e.g. "baseline"',
            )
        baseline = exam.acquisition.baseline if exam.acquisition is not None else None
        if baseline is not None and baseline not in ids:
            reader.problem(
                join_path(join_path(path, "acquisition"), "baseline"),
                f"no timepoint {baseline!r} in {version}",
                'name the timepoint whose images are the reference, e.g. "screening"',
            )
    for timepoint, path in timepoints:
        for exam_id, rules in timepoint.acquisition.items():
            if rules.baseline is not None and rules.baseline not in ids:
                reader.problem(
                    join_path(join_path(join_path(path, "acquisition"), exam_id), "baseline"),
                    f"no timepoint {rules.baseline!r} in {version}",
                    'name the timepoint whose images are the reference, e.g. "screening"',
                )
    seen: set[str] = set()
    for position, (timepoint, path) in enumerate(timepoints):
        if timepoint.id in seen:
            reader.problem(
                join_path(path, "id"),
                f"timepoint id {timepoint.id!r} is used twice",
                "give each timepoint its own id",
            )
        seen.add(timepoint.id)
        for index, exam_id in enumerate(timepoint.exams):
            if exam_id not in exams:
                known = ", ".join(sorted(exams)) or "none"
                reader.problem(
                    join_path(join_path(path, "exams"), index),
                    f"timepoint {timepoint.id!r} names exam {exam_id!r}, which {version} does not define",
                    f"use one of the exam ids ({known}) or add [exams.{exam_id}]",
                )
        for index, arm in enumerate(timepoint.arms):
            if arm not in arms:
                reader.problem(
                    join_path(join_path(path, "arms"), index),
                    f"timepoint {timepoint.id!r} names arm {arm!r}, which is not declared",
                    f"declare it in arms = [...] at the top (declared: {', '.join(arms) or 'none'})",
                )
        _check_anchor(reader, timepoint, path, [t for t, _ in timepoints[:position]], arms, anchor_names)


def _check_anchor(
    reader: FieldReader,
    timepoint: Timepoint,
    path: str,
    before: Sequence[Timepoint],
    arms: Sequence[str],
    anchor_names: Collection[str],
) -> None:
    declared = ", ".join(sorted(anchor_names))
    if timepoint.anchor == ANCHOR_PREVIOUS:
        for_arms: tuple[str | None, ...] = (*timepoint.arms,) or (*arms,) or (None,)
        for arm in for_arms:
            earlier = [t for t in before if arm is None or t.applies_to(arm)]
            if not earlier:
                reader.problem(
                    join_path(path, "anchor"),
                    f'timepoint {timepoint.id!r} is anchored to "previous" but nothing comes before it',
                    "anchor it to a milestone such as c1d1, or move it after the timepoint it follows",
                )
                break
            last = earlier[-1].recurrence
            if last is not None and last.open_ended and last.until_anchor is None:
                reader.problem(
                    join_path(path, "anchor"),
                    f"the timepoint before {timepoint.id!r} repeats without end, so it has no last visit",
                    "give that timepoint an until or count, or anchor this one to a milestone",
                )
                break
    elif timepoint.anchor and timepoint.anchor not in anchor_names:
        reader.problem(
            join_path(path, "anchor"),
            f"anchor {timepoint.anchor!r} is not declared",
            f"add it to [anchors] required or events, or use one of: {declared}, previous",
        )
    until = timepoint.recurrence.until_anchor if timepoint.recurrence else None
    if until is not None and until not in anchor_names:
        reader.problem(
            join_path(path, "until"),
            f"until names anchor {until!r}, which is not declared",
            f'add it to [anchors] events, or use a duration such as "48w" (declared: {declared})',
        )
