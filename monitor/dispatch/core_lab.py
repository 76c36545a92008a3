"""Core-lab submissions as the daemon and ``hiro-monitor corelab`` run them.

:func:`track_due` opens a submission for each research exam of a trial with a core lab once
its images have arrived (run after each PACS poll). :func:`send_copy` has the PACS make the
de-identified copy of each of the exam's studies, checks it, and has the PACS send it; the
outcome is stored with the submission and in the audit trail (who, what, where, when). A
copy that fails the check is never sent. :func:`record_upload` is the office's record of a
manual upload, with the sponsor's confirmation number; :func:`log_core_lab_query` and
:func:`answer_core_lab_query` the core lab's questions and the office's answers;
:func:`record_acceptance` the core lab's acceptance.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from monitor.clock import SYSTEM_CLOCK
from monitor.config import Settings, secret
from monitor.evaluation import Evaluator
from monitor.pacs.core_lab import CopyOutcome, OrthancCopier, orthanc_copier
from monitor.pacs.deidentified import CopyLabels
from monitor.pacs.reader import PacsError
from monitor.store.accounts import record_audit
from monitor.store.core_lab_queries import answer_query, log_query, queries_for
from monitor.store.registry.protocols import ProtocolCatalogue
from monitor.store.submissions import (
    Submission,
    open_due,
    patient_ids_of,
    record_accepted,
    record_copy,
    record_submitted,
    studies_of,
    submission_for,
)
from rules import Trial
from rules.core_lab import CoreLab, subject_shift

__all__ = [
    "CoreLabError",
    "SendResult",
    "answer_core_lab_query",
    "core_labs",
    "log_core_lab_query",
    "record_acceptance",
    "record_upload",
    "send_copy",
    "track_due",
]

log = logging.getLogger("monitor.core_lab")
# The secret that keys each subject's date offset (trials with dates = "shift").
DATE_SHIFT_KEY = "HIRO_DATE_SHIFT_KEY"


class CoreLabError(Exception):
    """A submission cannot be acted on (no submission, no core lab, already submitted); the
    message names the exam by id, never the patient."""


@dataclass(frozen=True, slots=True)
class SendResult:
    status: str  # submitted, refused or failed
    outcomes: tuple[CopyOutcome, ...]
    error: str = ""

    @property
    def problems(self) -> tuple[str, ...]:
        return tuple(problem for outcome in self.outcomes for problem in outcome.problems)


def core_labs(trials: dict[str, Trial]) -> dict[str, CoreLab]:
    """The core lab of each trial that has one."""
    return {trial_id: trial.core_lab for trial_id, trial in trials.items() if trial.core_lab is not None}


def track_due(
    engine: Engine, settings: Settings, now: datetime, catalogue: ProtocolCatalogue | None = None
) -> list[int]:
    """Open the submissions whose images have arrived; the exam ids opened."""
    closures = settings.site.closures()
    with engine.begin() as conn:
        labs = core_labs((catalogue or ProtocolCatalogue()).trials(conn))
        return open_due(conn, labs, ZoneInfo(settings.site.timezone), now, lambda day: not closures.open(day))


def send_copy(
    engine: Engine,
    settings: Settings,
    exam_id: int,
    *,
    by: str,
    client: str = "",
    copier: OrthancCopier | None = None,
    catalogue: ProtocolCatalogue | None = None,
    clock: Callable[[], datetime] = SYSTEM_CLOCK,
    again: bool = False,
    evaluator: Evaluator | None = None,
    environ: Mapping[str, str] | None = None,
) -> SendResult:
    """Copy, check and send the images of ``exam_id`` to its trial's core lab (``again``: also
    when it was submitted before), then re-evaluate the exam with ``evaluator`` (its due,
    overdue or refused finding and alerts). Raises :class:`CoreLabError` when there is
    nothing to send."""
    with engine.connect() as conn:
        submission = submission_for(conn, exam_id)
        if submission is None:
            raise CoreLabError(
                f"exam {exam_id} has no core-lab submission: its trial has no core lab, or its images "
                "have not arrived (run a PACS poll first)"
            )
        trial = (catalogue or ProtocolCatalogue()).trials(conn, [submission.trial]).get(submission.trial)
        studies = studies_of(conn, exam_id)
        patient_ids = patient_ids_of(conn, exam_id)
    core_lab = trial.core_lab if trial is not None else None
    if trial is None or core_lab is None:
        raise CoreLabError(f"the trial of exam {exam_id} no longer has a core lab")
    if submission.status == "submitted" and not again:
        raise CoreLabError(f"exam {exam_id} was submitted already (send it again with --again)")
    if core_lab.destination.kind == "manual":
        raise CoreLabError(
            f"{trial.id}'s core lab takes manual uploads: record the upload and the sponsor's "
            "confirmation number instead"
        )
    try:
        copier = copier or orthanc_copier(settings.pacs)
    except PacsError as error:
        raise CoreLabError(str(error)) from None
    labels = CopyLabels(
        submission.subject,
        submission.timepoint,
        trial.timepoint_label(submission.timepoint) or submission.timepoint,
        core_lab.labels,
    )
    shift = _shift_days(core_lab, submission, environ)
    result = _copy_all(copier, studies, labels, core_lab, patient_ids, shift)
    now = clock()
    with engine.begin() as conn:
        record_copy(
            conn,
            exam_id,
            now,
            status=result.status,
            by=by,
            copy_uids=[o.copy_uid for o in result.outcomes if o.sent],
            instances=sum(o.instances for o in result.outcomes),
            problems=result.problems,
            error=result.error,
        )
        detail = (
            f"{len(result.outcomes)} study copy(ies), {sum(o.instances for o in result.outcomes)} images, "
            f"to {core_lab.destination.words()}"
        )
        if result.status != "submitted":
            detail += ": " + "; ".join(result.problems or (result.error,))
        record_audit(conn, now, by, f"core_lab_copy_{result.status}", "exam", exam_id, client, detail)
    log.info("core-lab copy of exam %d: %s", exam_id, result.status)
    if evaluator is not None:
        evaluator.observe_exams([exam_id], now)
    return result


def _shift_days(core_lab: CoreLab, submission: Submission, environ: Mapping[str, str] | None) -> int:
    """The subject's date offset (``dates = "shift"``), keyed by ``HIRO_DATE_SHIFT_KEY``."""
    if core_lab.dates != "shift":
        return 0
    key = secret(DATE_SHIFT_KEY, environ)
    if not key:
        raise CoreLabError(f"the trial shifts dates: set {DATE_SHIFT_KEY} (or {DATE_SHIFT_KEY}_FILE) first")
    return subject_shift(key.encode(), submission.trial, submission.subject, core_lab.shift_up_to)


def _copy_all(
    copier: OrthancCopier,
    studies: list[str],
    labels: CopyLabels,
    core_lab: CoreLab,
    patient_ids: list[str],
    shift: int,
) -> SendResult:
    """Copy, check and send the studies in turn; a refused copy stops there (the studies
    after it are not copied), so does a PACS error."""
    if not studies:
        return SendResult("failed", (), "no study of the exam is in the PACS")
    outcomes: list[CopyOutcome] = []
    try:
        for study in studies:
            outcome = copier.copy_and_send(study, labels, core_lab, more_ids=patient_ids, shift_days=shift)
            outcomes.append(outcome)
            if outcome.refused:
                return SendResult("refused", tuple(outcomes))
    except PacsError as error:
        return SendResult("failed", tuple(outcomes), str(error))
    return SendResult("submitted", tuple(outcomes))


def record_upload(
    engine: Engine,
    exam_id: int,
    confirmation: str,
    *,
    by: str,
    client: str = "",
    now: datetime,
    evaluator: Evaluator | None = None,
) -> None:
    """The office uploaded the images by hand and the sponsor confirmed (``confirmation``);
    the exam is then re-evaluated with ``evaluator`` (its core-lab finding resolves)."""
    if not confirmation.strip():
        raise CoreLabError("give the sponsor's confirmation number")
    with engine.begin() as conn:
        if not record_submitted(conn, exam_id, confirmation.strip(), by, now):
            raise CoreLabError(f"exam {exam_id} has no core-lab submission")
        record_audit(conn, now, by, "core_lab_submitted", "exam", exam_id, client,
                     f"confirmation {confirmation.strip()[:120]}")  # fmt: skip
    if evaluator is not None:
        evaluator.observe_exams([exam_id], now)


def log_core_lab_query(
    engine: Engine,
    exam_id: int,
    *,
    received_on: date,
    answer_due: date,
    text: str,
    by: str,
    client: str = "",
    now: datetime,
    evaluator: Evaluator | None = None,
) -> int:
    """Log a core lab's query about ``exam_id`` (audited without its text); its id. The
    coordinators hear ``query_reminder`` days before the answer is due, and after."""
    with engine.begin() as conn:
        try:
            query_id = log_query(
                conn, exam_id, received_on=received_on, text=text, answer_due=answer_due, by=by, now=now
            )
        except ValueError as error:
            raise CoreLabError(str(error)) from None
        detail = f"query {query_id} received {received_on}, answer due {answer_due}"
        record_audit(conn, now, by, "core_lab_query_logged", "exam", exam_id, client, detail)
    if evaluator is not None:
        evaluator.observe_exams([exam_id], now)
    return query_id


def answer_core_lab_query(
    engine: Engine,
    exam_id: int,
    query_id: int,
    answer: str,
    *,
    by: str,
    client: str = "",
    now: datetime,
    evaluator: Evaluator | None = None,
) -> None:
    """Record the office's answer to an open query of ``exam_id`` (audited without its text)."""
    if not answer.strip():
        raise CoreLabError("write the answer that was sent to the core lab")
    with engine.begin() as conn:
        if query_id not in {q.id for q in queries_for(conn, exam_id) if q.status == "open"}:
            raise CoreLabError(f"exam {exam_id} has no open query {query_id}")
        answer_query(conn, query_id, answer, by=by, now=now)
        record_audit(conn, now, by, "core_lab_query_answered", "exam", exam_id, client, f"query {query_id}")
    if evaluator is not None:
        evaluator.observe_exams([exam_id], now)


def record_acceptance(engine: Engine, exam_id: int, *, by: str, client: str = "", now: datetime) -> None:
    """The core lab accepted the images of ``exam_id`` (they were submitted)."""
    with engine.begin() as conn:
        if not record_accepted(conn, exam_id, now):
            raise CoreLabError(f"exam {exam_id} has no submitted images to accept")
        record_audit(conn, now, by, "core_lab_accepted", "exam", exam_id, client, "")
