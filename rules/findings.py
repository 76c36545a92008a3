"""How each finding is worded, keyed and graded. One place to read what a coordinator will see.

Severities: a problem that has already happened (a performed exam out of window, a missed
visit, a wrong orderable that will produce an unusable scan, research imaging after
off-study) is ``critical``; one that can still be fixed (a booked exam out of window, a
visit due with nothing booked, a cancellation, a duplicate booking) is ``warning``; facts
(in window, clinical imaging that serves no timepoint) are ``info``.

Details are one line, name the subject by study id only, and never carry names or MRNs.
"""

from __future__ import annotations

from datetime import date

from rules.model import Enrolment, ExamRecord, Finding, FindingKind, Severity
from rules.windows import Slot

__all__ = ["exam_finding", "occurrence_key", "slot_finding"]

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
}


def occurrence_key(enrolment: Enrolment, slot: Slot) -> str:
    return f"{enrolment.trial}:{enrolment.subject}:{slot.plan.timepoint.id}#{slot.index}"


def _day(ordinal: int) -> str:
    return date.fromordinal(ordinal).isoformat()


def _days(count: int) -> str:
    return f"{count} day" if count == 1 else f"{count} days"


def _exam(exam: ExamRecord) -> str:
    return f"exam {exam.id} ({exam.procedure_code} {exam.procedure_text})".replace(" )", ")")


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
) -> Finding:
    """A finding about one occurrence (key ``occurrence``) and the exam involved, if any."""
    key = f"{occurrence}:{kind}" + (f":exam{exam.id}" if exam is not None else "")
    who = f"{enrolment.trial} {enrolment.subject}: {slot.label}"
    window_start, window_end, window = slot.window()
    verb = "performed" if performed else "booked for"
    severity = _SEVERITY[kind]
    if kind is FindingKind.IN_WINDOW and exam is not None:
        detail = f"{who} {_exam(exam)} {verb} {_day(exam_day)}, in {window}."
    elif kind is FindingKind.EARLY and exam is not None:
        early = _days(slot.opens - exam_day)
        detail = f"{who} {_exam(exam)} {verb} {_day(exam_day)}, {early} before the {window}."
        severity = Severity.CRITICAL if performed else severity
    elif kind is FindingKind.LATE and exam is not None:
        late = _days(exam_day - slot.closes)
        detail = f"{who} {_exam(exam)} {verb} {_day(exam_day)}, {late} after the {window}."
        severity = Severity.CRITICAL if performed else severity
    elif kind is FindingKind.DUPLICATE and exam is not None:
        served = f"exam {other.id}" if other is not None else "another exam"
        detail = (
            f"{who} {_exam(exam)} on {_day(exam_day)} is a second exam for it; {served} already serves it."
        )
    elif kind is FindingKind.WRONG_ORDERABLE and exam is not None:
        types = [slot.version.exams[e] for e in slot.plan.timepoint.exams if e in slot.version.exams]
        same = [code for t in types if t.modality == exam.modality for code in t.orderables]
        accepted = ", ".join(sorted(same or slot.plan.accepted))
        detail = (
            f"{who} {_exam(exam)} on {_day(exam_day)} is {exam.modality} near this timepoint ({window}) "
            f"but its orderable is not accepted; order one of {accepted}."
        )
    elif kind in (FindingKind.CANCELLED, FindingKind.NO_SHOW) and exam is not None:
        what = "was cancelled" if kind is FindingKind.CANCELLED else "was not attended (no-show)"
        detail = f"{who} {_exam(exam)} on {_day(exam_day)} {what}; the timepoint is open again ({window})."
    elif kind is FindingKind.DUE_UNSCHEDULED:
        detail = f"{who} is due ({window}, due {_day(slot.due)}) and no exam is booked."
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


def exam_finding(kind: FindingKind, enrolment: Enrolment, exam: ExamRecord, exam_day: int) -> Finding:
    """A finding about an exam that serves no occurrence (unmatched, after off-study)."""
    if kind is FindingKind.AFTER_OFF_STUDY:
        off = enrolment.off_study.isoformat() if enrolment.off_study else "?"
        detail = (
            f"{enrolment.trial} {enrolment.subject}: research {_exam(exam)} on {_day(exam_day)} "
            f"is after the off-study date {off}."
        )
    elif kind is FindingKind.UNMATCHED_EXAM:
        detail = (
            f"{enrolment.trial} {enrolment.subject}: {exam.modality} {_exam(exam)} on {_day(exam_day)} "
            "serves no timepoint."
        )
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
