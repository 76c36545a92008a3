"""The technologist instruction sheet of one research exam, as the dashboard prints it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from monitor.registry.protocols import ProtocolCatalogue
from monitor.render import Renderer
from monitor.store.findings import occurrences
from monitor.web.accounts import User
from notifiers.base import AlertContent
from notifiers.compose import render_sheet
from notifiers.policy import PhiPolicy


def sheet_content(
    conn: Connection, exam: Any, user: User, catalogue: ProtocolCatalogue
) -> AlertContent | None:
    """The sheet's content for ``exam`` (a row of ``exams``), or None when no visit is linked to it.

    Admins and coordinators get the MRN on the sheet; technologists and viewers do not.
    """
    occurrence = conn.execute(
        select(occurrences).where(occurrences.c.exam_id == exam.id).order_by(occurrences.c.id)
    ).first()
    if occurrence is None:
        return None
    trial = catalogue.trials(conn, [occurrence.trial]).get(occurrence.trial)
    exam_type = None
    if trial is not None:
        version = trial.version_on(occurrence.due)
        exam_type = version.exam_for(exam.procedure_code or "")
        if exam_type is None:
            for timepoint in version.timepoints:
                if timepoint.id == occurrence.timepoint and timepoint.exams:
                    exam_type = version.exams.get(timepoint.exams[0])
                    break
    return AlertContent(
        trial=occurrence.trial,
        subject=occurrence.subject,
        trial_title=trial.title if trial else "",
        timepoint=occurrence.label,
        exam_label=exam_type.label if exam_type else (exam.procedure_text or ""),
        exam_id=exam.id,
        exam_start=exam.start_at,
        modality=exam.modality or "",
        room=exam.location or "",
        accession=exam.accession or "",
        procedure_code=exam.procedure_code or "",
        window_start=occurrence.window_start,
        window_end=occurrence.window_end,
        parameters=exam_type.parameters if exam_type else (),
        preparation=exam_type.preparation if exam_type else (),
        same_scanner=occurrence.required_scanner or "",
        instructions_template=(exam_type.instructions or "") if exam_type else "",
        mrn=exam.mrn or "" if user.sees_mrn else "",
    )


def render_exam_sheet(renderer: Renderer, content: AlertContent, user: User) -> str:
    policy = PhiPolicy.FULL if user.sees_mrn else PhiPolicy.NONE
    return render_sheet(renderer, content, policy)
