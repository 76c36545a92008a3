"""Exams: the current state of every imaging exam in the feeds, and its event history.

- :mod:`.history`: applying a feed's event (the state is the events in their own time order;
  an exam never moves backwards), rebooking links;
- :mod:`.listing`: exams as the ``exams`` command lists them;
- :mod:`.pools`: the identifier pools (assigning authorities) the exams carry, and exams
  whose MRN matched no enrolment while another of their identifiers is an enrolled MRN.
"""

from monitor.store.exams.history import REBOOK_WINDOW, apply_event, exam_row, exam_start
from monitor.store.exams.listing import ExamView, day_bounds, exam_status_counts, list_exams

__all__ = [
    "REBOOK_WINDOW",
    "ExamView",
    "apply_event",
    "day_bounds",
    "exam_row",
    "exam_start",
    "exam_status_counts",
    "list_exams",
]
