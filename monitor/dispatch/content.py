"""What a message says, built from the store when it is sent (never stored with PHI).

:class:`ContentBuilder` turns an outbox row's finding and exam into an
:class:`notifiers.AlertContent`: trial and visit, the exam's time, room and accession, the
protocol's exam type (parameters, preparation, the technologist's sheet, the scanner the
baseline used), the finding's detail, a dashboard link and the one-line next step. The
subject appears by study id; the MRN is added only for an address whose channel policy
shows it (internal email with ``phi_policy = "full"``), and every channel filters the
content again through its own PHI policy.

Content is rebuilt at send time rather than stored at planning time: a reminder due in
three days shows the room and accession as they are when it goes out, and the outbox never
holds patient identifiers. Raises ``LookupError`` when the finding or exam is gone (the
dispatcher treats that as a poison row: backoff, then failed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from monitor.config import Settings
from monitor.render import Renderer
from monitor.store.exams import exam_row
from monitor.store.findings import (
    finding_by_key,
    occurrence_by_key,
    occurrence_of_exam,
    open_findings_with_exams,
)
from monitor.store.operations import operations_episode
from monitor.store.registry.protocols import ProtocolCatalogue
from notifiers.base import AlertContent, DigestContent, OperationsContent, parse_address
from rules import FindingKind, Severity, Trial
from rules.findings import orderables_for
from rules.protocol import ExamType
from rules.rescheduling import latest_open_day

__all__ = ["ContentBuilder", "next_step"]

_DIGEST_LIMIT = 40  # entries per digest: Slack takes 50 blocks (notifiers.slack_blocks.SlackLimits)
_SEVERITY_ORDER = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}


def next_step(
    kind: FindingKind | None,
    renderer: Renderer,
    *,
    label: str = "",
    start: datetime | None = None,
    window: tuple[date, date] | None = None,
    expected: Sequence[str] = (),
    performed: bool = False,
    appointment: str = "",
    audience: str = "coordinator",
    latest_safe: date | None = None,
) -> str:
    """The one line that tells the reader what to do next, in the office's words."""
    when = renderer.format_datetime(start) if start is not None else ""
    first, last = (renderer.format_date(window[0]), renderer.format_date(window[1])) if window else ("", "")
    span = f"{first} to {last}" if window else ""
    visit = label or "visit"
    if kind is FindingKind.PARAMETER_DEVIATION:
        if audience == "technologist":
            return "If the patient is still here, repeat the series named above as the protocol asks"
        return "Check with the technologist whether the series was repeated; if not, record the deviation"
    if kind is FindingKind.SCANNER_MISMATCH:
        if audience == "technologist":
            return (
                "Call the coordinator before the patient leaves: the protocol asks for the baseline's scanner"
            )
        return "Record the scanner change as a deviation, or ask the sponsor whether a repeat is needed"
    if kind is FindingKind.IMAGES_MISSING:
        return "Check that the study was sent to the PACS (accession and patient on the study)"
    if kind is FindingKind.CORE_LAB_REFUSED:
        return "Have the named attributes cleaned in the PACS (or upload by hand), then send the copy again"
    if kind in (FindingKind.CORE_LAB_QUERY_DUE, FindingKind.CORE_LAB_QUERY_OVERDUE):
        return "Answer the core lab's query (its text is on the exam page) and record the answer"
    if kind in (FindingKind.CORE_LAB_DUE, FindingKind.CORE_LAB_OVERDUE):
        return "Send the images to the core lab (hiro-monitor corelab send), or record the upload"
    if audience == "technologist":
        return "Scan with the parameters below; call the coordinator before scanning if any cannot be met"
    if kind is FindingKind.WRONG_ORDERABLE:
        codes = " or ".join(expected) or "the protocol's orderable"
        return f"Ask scheduling to change the order to {codes}" + (f" before {when}" if when else "")
    if kind in (FindingKind.EARLY, FindingKind.LATE):
        if performed:
            return f"Record the out-of-window {visit} as a protocol deviation"
        return (
            f"Ask scheduling to move the exam into the window ({span})"
            if span
            else "Ask scheduling to move it"
        )
    # The rescheduling assistant's latest safe day: the window's last day the site is open.
    by = f" (latest safe day {renderer.format_date(latest_safe)})" if latest_safe and window else ""
    if kind is FindingKind.DUE_UNSCHEDULED:
        return (
            f"Ask scheduling to book the {visit} between {first} and {last}{by}"
            if window
            else f"Book the {visit}"
        )
    if kind is FindingKind.MISSED:
        return f"Record the missed {visit} as a protocol deviation and inform the sponsor"
    if kind in (FindingKind.CANCELLED, FindingKind.NO_SHOW):
        return f"Rebook the {visit} within its window ({span}){by}" if span else f"Rebook the {visit}"
    if kind is FindingKind.DUPLICATE:
        extra = f" (appointment {appointment})" if appointment else ""
        return f"Ask scheduling to cancel the extra booking{extra}"
    if kind is FindingKind.UNCONFIRMED:
        return f"Check in the EHR that the {visit} was performed; ask the department to complete the exam"
    if kind is FindingKind.UNMATCHED_EXAM:
        return "Check whether this exam should serve a research visit; if not, nothing to do"
    if kind is FindingKind.AFTER_OFF_STUDY:
        return "Check with the investigator: the subject is off study"
    if when:
        return f"Nothing to fix: confirm the research requisition and preparation before {when}"
    return ""


def _may_show_mrn(settings: Settings, address: str) -> bool:
    """Whether ``address``'s channel policy shows MRNs (internal email with ``full`` only)."""
    if not address:
        return False
    channel, target = parse_address(address)
    if channel != "email" or settings.email.phi_policy != "full":
        return False
    domain = target.rpartition("@")[2].lower()
    return domain in {d.strip().lower().lstrip("@") for d in settings.email.internal_domains}


class ContentBuilder:
    """Builds message content from the store. Keeps parsed protocols between messages; one per thread."""

    def __init__(
        self, settings: Settings, renderer: Renderer, catalogue: ProtocolCatalogue | None = None
    ) -> None:
        self.settings = settings
        self.renderer = renderer
        self.catalogue = catalogue or ProtocolCatalogue()
        self.base_url = settings.notifications.dashboard_base_url.rstrip("/")

    def operations(self, conn: Connection, finding_key: str) -> OperationsContent:
        """The content of an operations message (``condition|feed|state``: raised or
        recovered); LookupError when its episode is gone."""
        key, _, state = finding_key.rpartition("|")
        episode = operations_episode(conn, key)
        if episode is None:
            raise LookupError("operations alert not in the store")
        recovered = state == "recovered"
        return OperationsContent(
            condition=episode.condition,
            state=state,
            summary=episode.recovery if recovered and episode.recovery else episode.summary,
            detail="" if recovered else episode.detail,
            since=episode.raised_at,
            feed=episode.feed,
            dashboard_url=f"{self.base_url}/feeds" if self.base_url else "",
        )

    def _trial(self, conn: Connection, trial_id: str) -> Trial | None:
        return self.catalogue.trials(conn, [trial_id]).get(trial_id)

    def alert(
        self,
        conn: Connection,
        finding_key: str,
        *,
        address: str = "",
        audience: str = "coordinator",
        previous_exam_start: datetime | None = None,
        change: str = "",
    ) -> AlertContent:
        """The content of a message about the finding ``finding_key`` (LookupError if it is gone)."""
        finding = finding_by_key(conn, finding_key)
        if finding is None:
            raise LookupError("finding not in the store")
        exam = None
        if finding.exam_id is not None:
            exam = exam_row(conn, finding.exam_id)
            if exam is None:
                raise LookupError("exam not in the store")
        occurrence = None
        if finding.occurrence_key:
            occurrence = occurrence_by_key(conn, finding.occurrence_key)
        show_mrn = _may_show_mrn(self.settings, address)
        content = self._content(conn, finding.trial, finding.subject, exam, occurrence, show_mrn)
        kind = FindingKind(finding.kind)
        start = exam.start_at if exam is not None else None
        window = (finding.window_start, finding.window_end) if finding.window_start else None
        expected: tuple[str, ...] = ()
        if kind is FindingKind.WRONG_ORDERABLE:
            expected = self._expected(
                conn, finding.trial, occurrence, exam.modality if exam is not None else ""
            )
        performed = exam is not None and exam.status in ("arrived", "completed")
        step = next_step(
            kind,
            self.renderer,
            label=content.timepoint,
            start=start,
            window=window,
            expected=expected,
            performed=performed,
            appointment=exam.external_id if exam is not None else "",
            audience=audience,
            latest_safe=latest_open_day(*window, self.settings.site.closures()) if window else None,
        )
        warning = ""
        if kind is FindingKind.WRONG_ORDERABLE and audience == "technologist":
            code = (exam.procedure_code or "?") if exam is not None else "?"
            warning = (
                f"Order not fixed: {code} is not an orderable this visit accepts (it needs "
                f"{' or '.join(expected) or 'the protocol orderable'}). Call the research coordinator "
                "before scanning: the scan may not count for the trial."
            )
        return replace(
            content,
            warning=warning,
            timepoint=content.timepoint or (finding.occurrence_label or ""),
            finding_kind=kind,
            severity=Severity(finding.severity),
            detail=finding.detail,
            next_step=step,
            window_start=finding.window_start,
            window_end=finding.window_end,
            previous_exam_start=previous_exam_start,
            change=change,
        )

    def sheet(
        self, conn: Connection, exam_id: int, *, address: str = "", with_mrn: bool = False
    ) -> AlertContent | None:
        """The technologist sheet's content for ``exam_id``; None when it serves no research visit.

        ``with_mrn`` adds the MRN (for a sheet printed inside the hospital, ``--phi full``).
        """
        exam = exam_row(conn, exam_id)
        if exam is None:
            return None
        occurrence = occurrence_of_exam(conn, exam_id)
        if occurrence is None:
            return None
        show_mrn = with_mrn or _may_show_mrn(self.settings, address)
        content = self._content(conn, occurrence.trial, occurrence.subject, exam, occurrence, show_mrn)
        return replace(content, next_step=next_step(None, self.renderer, audience="technologist"))

    def _content(
        self,
        conn: Connection,
        trial_id: str,
        subject: str,
        exam: Any,
        occurrence: Any,
        show_mrn: bool,
    ) -> AlertContent:
        trial = self._trial(conn, trial_id)
        exam_type = self._exam_type(trial, exam, occurrence)
        same_as = ""
        if (
            exam_type is not None
            and exam_type.same_scanner_as
            and trial is not None
            and occurrence is not None
        ):
            same_as = self._timepoint_label(trial, occurrence.due, exam_type.same_scanner_as)
        exam_id = int(exam.id) if exam is not None else None
        return AlertContent(
            trial=trial_id,
            subject=subject,
            trial_title=trial.title if trial is not None else "",
            timepoint=occurrence.label if occurrence is not None else "",
            exam_label=exam_type.label
            if exam_type
            else (exam.procedure_text or "" if exam is not None else ""),
            exam_id=exam_id,
            exam_start=exam.start_at if exam is not None else None,
            modality=(exam.modality or "") if exam is not None else "",
            room=(exam.location or "") if exam is not None else "",
            accession=(exam.accession or "") if exam is not None else "",
            appointment_id=(exam.external_id or "") if exam is not None else "",
            order_number=(exam.order_number or "") if exam is not None else "",
            procedure_code=(exam.procedure_code or "") if exam is not None else "",
            dashboard_url=f"{self.base_url}/exams/{exam_id}" if self.base_url and exam_id else "",
            window_start=occurrence.window_start if occurrence is not None else None,
            window_end=occurrence.window_end if occurrence is not None else None,
            parameters=exam_type.parameters if exam_type else (),
            preparation=exam_type.preparation if exam_type else (),
            same_scanner=(occurrence.required_scanner or "") if occurrence is not None else "",
            same_scanner_as=same_as,
            instructions_template=(exam_type.instructions or "") if exam_type else "",
            mrn=(exam.mrn or "") if exam is not None and show_mrn else "",
            contacts=trial.routing.contacts if trial is not None else (),
        )

    @staticmethod
    def _exam_type(trial: Trial | None, exam: Any, occurrence: Any) -> ExamType | None:
        if trial is None or occurrence is None:
            return None
        version = trial.version_on(occurrence.due)
        found = version.exam_for(exam.procedure_code or "") if exam is not None else None
        if found is None:  # a wrong orderable: the sheet shows what the visit requires of it
            modality = ((exam.modality or "") if exam is not None else "").upper()
            for timepoint in version.timepoints:
                if timepoint.id == occurrence.timepoint and timepoint.exams:
                    types = [version.exams[e] for e in timepoint.exams if e in version.exams]
                    same = [t for t in types if t.modality.upper() == modality]
                    chosen = same or types
                    return chosen[0] if chosen else None
        return found

    @staticmethod
    def _timepoint_label(trial: Trial, due: date, timepoint_id: str) -> str:
        for timepoint in trial.version_on(due).timepoints:
            if timepoint.id == timepoint_id:
                return timepoint.label if "{" not in timepoint.label else timepoint.id
        return timepoint_id

    def _expected(self, conn: Connection, trial_id: str, occurrence: Any, modality: str) -> tuple[str, ...]:
        """The orderables to suggest for a wrong one: the rules' one list (the finding's too)."""
        trial = self._trial(conn, trial_id)
        if trial is None or occurrence is None:
            return ()
        version = trial.version_on(occurrence.due)
        for timepoint in version.timepoints:
            if timepoint.id == occurrence.timepoint:
                return orderables_for(version, timepoint.exams, modality)
        return ()

    # -- the daily digest ----------------------------------------------------------------

    def digest_findings(self, conn: Connection, trial_id: str, now: datetime) -> list[str]:
        """Keys of the findings a digest of ``trial_id`` lists: open problems (warning and
        critical), then research exams booked in the next ``digest_look_ahead_days``."""
        ahead = now + timedelta(days=self.settings.scheduler.digest_look_ahead_days)
        problems: list[tuple[int, str, str]] = []
        upcoming: list[tuple[datetime, str]] = []
        for row in open_findings_with_exams(conn, trial_id):
            severity = Severity(row.severity)
            if severity is not Severity.INFO:
                order = str(row.start_at or row.window_start or "")
                problems.append((_SEVERITY_ORDER[severity], order, row.key))
            elif (
                row.kind == FindingKind.IN_WINDOW
                and row.start_at is not None
                and now <= row.start_at <= ahead
            ):
                upcoming.append((row.start_at, row.key))
        keys = [key for _, _, key in sorted(problems)] + [key for _, key in sorted(upcoming)]
        return keys[:_DIGEST_LIMIT]

    def digest(
        self, conn: Connection, trial_id: str, day: date, now: datetime, *, address: str = ""
    ) -> DigestContent:
        """One trial's digest for ``day`` (site zone)."""
        trial = self._trial(conn, trial_id)
        entries = tuple(
            self.alert(conn, key, address=address) for key in self.digest_findings(conn, trial_id, now)
        )
        return DigestContent(
            trial=trial_id,
            day=day,
            trial_title=trial.title if trial is not None else "",
            entries=entries,
            dashboard_url=f"{self.base_url}/trials/{trial_id}" if self.base_url else "",
        )
