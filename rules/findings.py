"""How each finding is worded, keyed and graded. One place to read what a coordinator will see.

Severities: a problem that has already happened (a performed exam out of window, a missed
visit, a wrong orderable that will produce an unusable scan, research imaging after
off-study) is ``critical``; one that can still be fixed (a booked exam out of window, a
visit due with nothing booked, a cancellation, a duplicate booking) is ``warning``; facts
(in window, clinical imaging that serves no timepoint) are ``info``.

Details are one line, name the subject by study id only, and never carry names or MRNs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from rules.model import Enrolment, ExamRecord, Finding, FindingKind, Severity
from rules.protocol import ProtocolVersion
from rules.windows import Slot

__all__ = [
    "describe_exam",
    "exam_finding",
    "occurrence_key",
    "orderables_for",
    "slot_finding",
    "suggested_orderables",
]

_SEVERITY = {
    FindingKind.IN_WINDOW: Severity.INFO,
    FindingKind.EARLY: Severity.WARNING,
    FindingKind.LATE: Severity.WARNING,
    FindingKind.WRONG_ORDERABLE: Severity.CRITICAL,
    FindingKind.DUE_UNSCHEDULED: Severity.WARNING,
    FindingKind.MISSED: Severity.CRITICAL,
    FindingKind.CANCELLED: Severity.WARNING,
    FindingKind.NO_SHOW: Severity.WARNING,
    FindingKind.DUPLICATE: Severity.WARNING,
    FindingKind.UNMATCHED_EXAM: Severity.INFO,
    FindingKind.AFTER_OFF_STUDY: Severity.CRITICAL,
    # Nobody said the scan happened: the office checks (digest, dashboard) before counting it.
    FindingKind.UNCONFIRMED: Severity.WARNING,
    # Images: still fixable while the patient is there (a repeat series), a deviation after.
    FindingKind.IMAGES_MISSING: Severity.WARNING,
    FindingKind.PARAMETER_DEVIATION: Severity.CRITICAL,
    FindingKind.SCANNER_MISMATCH: Severity.CRITICAL,
    FindingKind.CORE_LAB_DUE: Severity.WARNING,
    FindingKind.CORE_LAB_OVERDUE: Severity.CRITICAL,
    FindingKind.CORE_LAB_REFUSED: Severity.CRITICAL,
    FindingKind.CORE_LAB_QUERY_DUE: Severity.WARNING,
    FindingKind.CORE_LAB_QUERY_OVERDUE: Severity.CRITICAL,
}


def occurrence_key(enrolment: Enrolment, slot: Slot) -> str:
    return f"{enrolment.trial}:{enrolment.subject}:{slot.plan.timepoint.id}#{slot.index}"


def _day(ordinal: int) -> str:
    return date.fromordinal(ordinal).isoformat()


def _days(count: int) -> str:
    return f"{count} day" if count == 1 else f"{count} days"


def describe_exam(exam: ExamRecord) -> str:
    """An exam as the office finds it in the EHR: what was ordered and its numbers, e.g.
    ``CT CHEST W CONTRAST (IMG1234, appointment 7100000001, accession A123)``; never the
    store's internal id, which nobody outside this program can look up."""
    what = exam.procedure_text or (f"{exam.modality} exam" if exam.modality else "exam")
    numbers = [exam.procedure_code] if exam.procedure_code else []
    if exam.external_id and exam.external_id != exam.accession:
        numbers.append(f"appointment {exam.external_id}")
    if exam.accession:
        numbers.append(f"accession {exam.accession}")
    elif exam.order_number:
        numbers.append(f"order {exam.order_number}")
    return f"{what} ({', '.join(numbers)})" if numbers else what


def suggested_orderables(slot: Slot, modality: str) -> tuple[str, ...]:
    """The orderables to suggest instead of a wrong one for ``slot`` (:func:`orderables_for`)."""
    return orderables_for(slot.version, slot.plan.timepoint.exams, modality)


def orderables_for(version: ProtocolVersion, exam_types: Sequence[str], modality: str) -> tuple[str, ...]:
    """The orderables a visit of ``exam_types`` (ids in ``version``) accepts for an exam of
    ``modality`` (a CT booking is never told to order an MR code), else every one it accepts.
    One list, the same in the finding and in every message about it."""
    types = [version.exams[e] for e in exam_types if e in version.exams]
    same: list[str] = []
    every: list[str] = []
    for exam_type in types:
        for code in exam_type.orderables:
            if code not in every:
                every.append(code)
            if exam_type.modality.upper() == modality.upper() and code not in same:
                same.append(code)
    return tuple(same or every)


def slot_finding(
    kind: FindingKind,
    enrolment: Enrolment,
    slot: Slot,
    occurrence: str,
    *,
    exam: ExamRecord | None = None,
    exam_day: int = 0,
    performed: bool = False,
    other: ExamRecord | None = None,
    note: str = "",
) -> Finding:
    """A finding about one occurrence (key ``occurrence``) and the exam involved, if any;
    ``note`` says why a visit is due again (its exam was cancelled ...), or what the images
    showed (a deviation, another scanner)."""
    key = f"{occurrence}:{kind}" + (f":exam{exam.id}" if exam is not None else "")
    who = f"{enrolment.trial} {enrolment.subject}: {slot.label}"
    window_start, window_end, window = slot.window()
    verb = "performed" if performed else "booked for"
    severity = _SEVERITY[kind]
    if kind is FindingKind.IN_WINDOW and exam is not None:
        detail = f"{who} {describe_exam(exam)} {verb} {_day(exam_day)}, in {window}."
    elif kind is FindingKind.EARLY and exam is not None:
        early = _days(slot.opens - exam_day)
        detail = f"{who} {describe_exam(exam)} {verb} {_day(exam_day)}, {early} before the {window}."
        severity = Severity.CRITICAL if performed else severity
    elif kind is FindingKind.LATE and exam is not None:
        late = _days(exam_day - slot.closes)
        detail = f"{who} {describe_exam(exam)} {verb} {_day(exam_day)}, {late} after the {window}."
        severity = Severity.CRITICAL if performed else severity
    elif kind is FindingKind.DUPLICATE and exam is not None:
        served = describe_exam(other) if other is not None else "another exam"
        second = f"{who} {describe_exam(exam)} on {_day(exam_day)} is a second exam for it"
        detail = f"{second}; {served} already serves it."
    elif kind is FindingKind.WRONG_ORDERABLE and exam is not None:
        accepted = " or ".join(suggested_orderables(slot, exam.modality))
        detail = (
            f"{who} {describe_exam(exam)} on {_day(exam_day)} is {exam.modality} near this timepoint "
            f"({window}) but its orderable is not accepted; order {accepted}."
        )
    elif kind is FindingKind.UNCONFIRMED and exam is not None:
        detail = (
            f"{who} {describe_exam(exam)} was booked for {_day(exam_day)}; no arrival or completion has "
            "come from the EHR since: check that it was performed."
        )
    elif kind is FindingKind.IMAGES_MISSING and exam is not None:
        detail = (
            f"{who} {describe_exam(exam)} of {_day(exam_day)}: no images have reached the PACS; "
            "check that the study was sent."
        )
    elif kind in _NOTED and exam is not None:
        detail = f"{who} {describe_exam(exam)} of {_day(exam_day)}: {note}."
    elif kind in (FindingKind.CANCELLED, FindingKind.NO_SHOW) and exam is not None:
        what = "was cancelled" if kind is FindingKind.CANCELLED else "was not attended (no-show)"
        detail = (
            f"{who} {describe_exam(exam)} on {_day(exam_day)} {what}; the timepoint is open again ({window})."
        )
    elif kind is FindingKind.DUE_UNSCHEDULED:
        why = f" ({note})" if note else ""
        detail = f"{who} is due ({window}, due {_day(slot.due)}) and no exam is booked for it{why}."
    elif kind is FindingKind.MISSED:
        detail = f"{who} {window} closed with no exam performed."
    else:  # pragma: no cover - every kind above is handled; a new kind must be worded here
        raise ValueError(f"no wording for {kind} on an occurrence")
    return Finding(
        key=key,
        kind=kind,
        severity=severity,
        trial=enrolment.trial,
        subject=enrolment.subject,
        enrolment_id=enrolment.id,
        detail=detail,
        timepoint=slot.plan.timepoint.id,
        occurrence_key=occurrence,
        occurrence_index=slot.index,
        occurrence_label=slot.label,
        exam_id=exam.id if exam is not None else None,
        window_start=window_start,
        window_end=window_end,
    )


# Kinds whose finding line is the exam and what was found about it (``note``).
_NOTED = frozenset({
    FindingKind.PARAMETER_DEVIATION, FindingKind.SCANNER_MISMATCH, FindingKind.CORE_LAB_DUE,
    FindingKind.CORE_LAB_OVERDUE, FindingKind.CORE_LAB_REFUSED, FindingKind.CORE_LAB_QUERY_DUE,
    FindingKind.CORE_LAB_QUERY_OVERDUE,
})  # fmt: skip


def exam_finding(kind: FindingKind, enrolment: Enrolment, exam: ExamRecord, exam_day: int) -> Finding:
    """A finding about an exam that serves no occurrence (unmatched, after off-study)."""
    if kind is FindingKind.AFTER_OFF_STUDY:
        off = enrolment.off_study.isoformat() if enrolment.off_study else "?"
        detail = (
            f"{enrolment.trial} {enrolment.subject}: research {describe_exam(exam)} on {_day(exam_day)} "
            f"is after the off-study date {off}."
        )
    elif kind is FindingKind.UNMATCHED_EXAM:
        who = f"{enrolment.trial} {enrolment.subject}"
        detail = f"{who}: {describe_exam(exam)} on {_day(exam_day)} serves no timepoint."
    else:  # pragma: no cover - only the two kinds above concern an exam alone
        raise ValueError(f"{kind} needs an occurrence")
    return Finding(
        key=f"{enrolment.trial}:{enrolment.subject}:exam{exam.id}:{kind}",
        kind=kind,
        severity=_SEVERITY[kind],
        trial=enrolment.trial,
        subject=enrolment.subject,
        enrolment_id=enrolment.id,
        detail=detail,
        exam_id=exam.id,
    )
