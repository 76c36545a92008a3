"""A trial's subject x timepoint matrix as HTML cells, and why a cell is blank.

Built in Python, not in Jinja: a 500-subject matrix has 6,000 cells and the template loop
dominated the page's time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from markupsafe import Markup, escape

from monitor.store.dashboard import TrialMatrix
from monitor.web.wording import STATUS_TEXT
from rules.protocol import Trial


def matrix_rows(
    matrix: TrialMatrix,
    why_blank: Callable[[str, str], str] | None = None,
    image_flags: Mapping[int, list[str]] | None = None,
) -> list[tuple[str, Markup]]:
    """Each subject's row of cells as escaped HTML: built here, not in Jinja, because a
    500-subject matrix has 6,000 cells and the template loop dominated the page's time.
    ``why_blank(subject, timepoint)`` says why a subject has no visit in a column;
    ``image_flags`` (exam id -> open image finding kinds) marks the exams whose images
    failed a rule or are missing."""
    flags = image_flags or {}
    badges: dict[str, tuple[str, str]] = {}  # status -> (class attribute, escaped text)
    rows = []
    for subject in matrix.subjects:
        parts = []
        for timepoint, number, _label in matrix.columns:
            cell = matrix.cells.get((subject, timepoint, number))
            if cell is None:
                reason = escape(why_blank(subject, timepoint)) if why_blank else ""
                parts.append(f'<td class="blank">{reason}</td>')
                continue
            badge = badges.get(cell.status)
            if badge is None:
                text = escape(STATUS_TEXT.get(cell.status, cell.status))
                badge = badges[cell.status] = (f'class="badge s-{escape(cell.status)}"', str(text))
            title = f'title="due {cell.due}; window {cell.window_start} to {cell.window_end}"'
            if cell.exam_id is not None:
                mark = _image_mark(flags.get(cell.exam_id, ()))
                link = f'<a href="/exams/{cell.exam_id}" {badge[0]} {title}>{badge[1]}</a>'
                parts.append(f"<td>{link}{mark}</td>")
            else:
                parts.append(f"<td><span {badge[0]} {title}>{badge[1]}</span></td>")
        rows.append((subject, Markup("".join(parts))))  # noqa: S704  (every value above is escaped or a date/int)
    return rows


def _image_mark(kinds: Sequence[str]) -> str:
    """The cell's mark for open findings about the exam's images (empty when none)."""
    if not kinds:
        return ""
    words = escape("; ".join(kind.replace("_", " ") for kind in kinds))
    return f' <span class="badge img-flag" title="images: {words}" aria-label="images: {words}">images</span>'


def blank_reasons(trial: Trial | None, listed: list[Any]) -> Callable[[str, str], str]:
    """Why a subject has no visit of a timepoint, in a few words: the arm, an event that has
    not happened, off study, or a visit the schedule has not reached yet."""
    timepoints = {tp.id: tp for version in (trial.versions if trial else ()) for tp in version.timepoints}
    subjects = {row.subject: row for row in listed}

    def why(subject: str, timepoint_id: str) -> str:
        row, timepoint = subjects.get(subject), timepoints.get(timepoint_id)
        if row is None or timepoint is None:
            return ""
        if not timepoint.applies_to(row.arm):
            return f"not for arm {row.arm}" if row.arm else "not for this arm"
        if timepoint.anchor not in (row.anchors or {}) and timepoint.anchor != "off_study":
            return f"waits for {timepoint.anchor.replace('_', ' ')}"
        if row.off_study or row.status == "off_study":
            return "off study"
        return "not yet planned"

    return why
