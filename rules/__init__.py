"""Trial protocols and the compliance engine. Pure: no database, no network, no clock.

``load_protocol`` reads a protocol file (:mod:`rules.validation`), ``evaluate`` judges a
schedule (:mod:`rules.engine`). Read in this order: :mod:`rules.protocol` (what a protocol
says), :mod:`rules.windows` (when visits are due), :mod:`rules.engine` (the steps of one
evaluation), :mod:`rules.matching` (which exam serves which visit), :mod:`rules.judging` (what
is wrong), :mod:`rules.findings` and :mod:`rules.notifications`; :mod:`rules.stability` says
how long a judgement holds.
"""

from rules.durations import DurationError, parse_days, parse_duration, parse_tolerance_days
from rules.engine import ExamsByMrn, evaluate, evaluate_enrolments, index_exams
from rules.images import ImagesSeen
from rules.model import (
    Audience,
    Enrolment,
    EnrolmentStatus,
    Evaluation,
    ExamRecord,
    ExamStatus,
    Finding,
    FindingKind,
    NotificationKind,
    Occurrence,
    OccurrenceStatus,
    PlannedNotification,
    Severity,
)
from rules.protocol import Problem, ProtocolError, ProtocolVersion, Trial
from rules.stability import stable_until
from rules.validation import check_enrolment, load_protocol
from rules.windows import local_date, occurrences

__all__ = [
    "Audience",
    "DurationError",
    "Enrolment",
    "EnrolmentStatus",
    "Evaluation",
    "ExamRecord",
    "ExamStatus",
    "ExamsByMrn",
    "Finding",
    "FindingKind",
    "ImagesSeen",
    "NotificationKind",
    "Occurrence",
    "OccurrenceStatus",
    "PlannedNotification",
    "Problem",
    "ProtocolError",
    "ProtocolVersion",
    "Severity",
    "Trial",
    "check_enrolment",
    "evaluate",
    "evaluate_enrolments",
    "index_exams",
    "load_protocol",
    "local_date",
    "occurrences",
    "parse_days",
    "parse_duration",
    "parse_tolerance_days",
    "stable_until",
]
