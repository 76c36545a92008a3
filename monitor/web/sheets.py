"""The technologist instruction sheet of one research exam, as the dashboard prints it.

The content is the dispatcher's own (:meth:`monitor.dispatch.content.ContentBuilder.sheet`):
the sheet on the screen and the one sent to the scanner's channel are the same sheet.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import Connection

from monitor.config import Settings
from monitor.dispatch.content import ContentBuilder
from monitor.feeds.hl7.identity import patient_identity
from monitor.render import Renderer
from monitor.store.accounts import User
from monitor.store.messages import exam_message_payload
from monitor.store.registry.protocols import ProtocolCatalogue
from notifiers.base import AlertContent
from notifiers.compose import render_sheet
from notifiers.policy import PhiPolicy


def sheet_content(
    conn: Connection,
    exam_id: int,
    user: User,
    settings: Settings,
    renderer: Renderer,
    catalogue: ProtocolCatalogue,
) -> AlertContent | None:
    """The sheet's content for ``exam_id``, or None when it serves no research visit.

    For the roles that identify the patient at the scanner (:attr:`User.identifies_patients`)
    it carries two identifiers: the name and birth date, read on demand from the raw message
    the store keeps (:mod:`monitor.feeds.hl7.identity`), and the MRN. Viewers get neither.
    """
    builder = ContentBuilder(settings, renderer, catalogue)
    content = builder.sheet(conn, exam_id, with_mrn=user.identifies_patients)
    if content is not None and user.identifies_patients:
        payload = exam_message_payload(conn, exam_id)
        identity = patient_identity(payload) if payload else None
        if identity is not None:
            content = replace(content, patient_name=identity.name, birth_date=identity.birth_date)
    return content


def render_exam_sheet(renderer: Renderer, content: AlertContent, user: User) -> str:
    policy = PhiPolicy.FULL if user.identifies_patients else PhiPolicy.NONE
    return render_sheet(renderer, content, policy)
