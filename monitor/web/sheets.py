"""The technologist instruction sheet of one research exam, as the dashboard prints it.

The content is the dispatcher's own (:meth:`monitor.dispatch.content.ContentBuilder.sheet`):
the sheet on the screen and the one sent to the scanner's channel are the same sheet.
"""

from __future__ import annotations

from sqlalchemy import Connection

from monitor.config import Settings
from monitor.dispatch.content import ContentBuilder
from monitor.render import Renderer
from monitor.store.accounts import User
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

    Admins and coordinators get the MRN on the sheet; technologists and viewers do not.
    """
    builder = ContentBuilder(settings, renderer, catalogue)
    return builder.sheet(conn, exam_id, with_mrn=user.sees_mrn)


def render_exam_sheet(renderer: Renderer, content: AlertContent, user: User) -> str:
    policy = PhiPolicy.FULL if user.sees_mrn else PhiPolicy.NONE
    return render_sheet(renderer, content, policy)
