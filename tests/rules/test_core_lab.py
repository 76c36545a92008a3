"""The core lab in the protocol file: read with every problem named by its key path; deadlines
in hours or business days on the site's calendar, across a DST change."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from rules import ProtocolError, load_protocol
from rules.core_lab import (
    Deadline,
    Destination,
    SubmissionSeen,
    judge_queries,
    judge_submission,
    shifted,
    subject_shift,
    submission_instants,
)
from tests.rules.builders import PROTOCOL

NEW_YORK = ZoneInfo("America/New_York")
CORE_LAB = """
[core_lab]
deadline = "2 business days"
remind_before = "6h"
sponsor = "Acme Oncology"
site_id = "101"
dates = "remove"
keep = ["SeriesDescription"]
destination = { kind = "dicom", ae_title = "CORELAB", host = "corelab.example.org", port = 11112 }
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(ProtocolError) as raised:
        load_protocol(PROTOCOL + text, "test.toml")
    return [f"{p.path}: {p.message}. {p.fix}" for p in raised.value.problems]


def test_a_core_lab_is_read_with_the_trial_id_as_protocol_id() -> None:
    trial = load_protocol(PROTOCOL + CORE_LAB, "test.toml")
    lab = trial.core_lab
    assert lab is not None
    assert lab.deadline == Deadline(business_days=2)
    assert lab.remind_before == timedelta(hours=6)
    assert lab.destination == Destination("dicom", "CORELAB", "corelab.example.org", 11112)
    assert (lab.labels.sponsor, lab.labels.protocol_id, lab.labels.site_id) == (
        "Acme Oncology",
        trial.id,
        "101",
    )
    assert lab.labels.protocol_name == trial.title[:64]
    assert (lab.dates, lab.keep) == ("remove", ("SeriesDescription",))
    assert load_protocol(PROTOCOL, "test.toml").core_lab is None


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        (('deadline = "2 business days"', 'deadline = "2 weeks"'), "core_lab.deadline", "bad deadline"),
        (('kind = "dicom"', 'kind = "ftp"'), "core_lab.destination.kind", "not a destination kind"),
        ((", port = 11112", ""), "core_lab.destination.port", 'required key "port"'),
        (
            ('"SeriesDescription"', '"SeriesDescriptin"'),
            "core_lab.keep[1]",
            'did you mean "SeriesDescription"',
        ),
        (('"SeriesDescription"', '"PatientName"'), "core_lab.keep[1]", "never kept"),
        (('dates = "remove"', 'dates = "later"'), "core_lab.dates", "is not keep, remove or shift"),
        (('sponsor = "Acme Oncology"', 'sponsr = "Acme"'), "core_lab.sponsr", 'did you mean "sponsor"'),
        (('remind_before = "6h"', 'remind_before = "soon"'), "core_lab.remind_before", "bad duration"),
    ],
)
def test_a_bad_core_lab_is_named_by_its_key_path(change: tuple[str, str], path: str, words: str) -> None:
    problems = _problems(CORE_LAB.replace(*change))
    assert any(p.startswith(path) and words in p for p in problems), problems


def test_a_stow_destination_needs_an_http_url() -> None:
    text = CORE_LAB.replace(
        'destination = { kind = "dicom", ae_title = "CORELAB", host = "corelab.example.org", port = 11112 }',
        'destination = { kind = "dicomweb", url = "corelab.example.org" }',
    )
    assert any(p.startswith("core_lab.destination.url: must be an http(s) URL") for p in _problems(text))


def test_a_deadline_in_hours_counts_elapsed_time_across_the_fall_back() -> None:
    arrived = datetime(2026, 10, 31, 14, 0, tzinfo=UTC)  # Saturday 10:00 EDT
    assert Deadline.parse("48h").due(arrived, NEW_YORK) == datetime(2026, 11, 2, 14, 0, tzinfo=UTC)


def test_business_days_skip_the_weekend_and_keep_the_local_time_across_the_fall_back() -> None:
    arrived = datetime(2026, 10, 30, 14, 0, tzinfo=UTC)  # Friday 10:00 EDT
    due = Deadline.parse("2 business days").due(arrived, NEW_YORK)
    assert due.astimezone(NEW_YORK).replace(tzinfo=None) == datetime(2026, 11, 3, 10, 0)  # Tuesday
    assert due == datetime(2026, 11, 3, 15, 0, tzinfo=UTC)  # 10:00 EST


def test_business_days_skip_the_sites_closed_days() -> None:
    arrived = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # Wednesday before Thanksgiving, 10:00
    thanksgiving = {date(2026, 11, 26), date(2026, 11, 27)}
    due = Deadline.parse("1 business day").due(
        arrived, NEW_YORK, lambda d: d.weekday() >= 5 or d in thanksgiving
    )
    assert due.astimezone(NEW_YORK).date() == date(2026, 11, 30)  # the Monday after


@pytest.mark.parametrize("text", ["0h", "0 business days", "soon", "3 months"])
def test_a_deadline_that_cannot_be_met_or_read_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"deadline|write it|business day"):
        Deadline.parse(text)


def test_a_submission_is_news_at_its_reminder_at_its_deadline_and_when_refused() -> None:
    trial = load_protocol(PROTOCOL + CORE_LAB, "test.toml")
    lab = trial.core_lab
    assert lab is not None
    due = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
    seen = SubmissionSeen("due", due)

    assert judge_submission(lab, seen, due - timedelta(hours=6, minutes=1), NEW_YORK) is None
    soon = judge_submission(lab, seen, due - timedelta(hours=6), NEW_YORK)
    assert soon is not None and soon.kind == "core_lab_due"
    assert "within 6 h, by Thu 03 Dec 10:00 EST" in soon.note
    late = judge_submission(
        lab, SubmissionSeen("failed", due, "the PACS answered HTTP 503 at stow"), due, NEW_YORK
    )
    assert late is not None and late.kind == "core_lab_overdue"
    assert "the last send failed: the PACS answered HTTP 503 at stow" in late.note
    refused = judge_submission(
        lab, SubmissionSeen("refused", due, "PatientName is not the subject id"), due, NEW_YORK
    )
    assert refused is not None and refused.kind == "core_lab_refused"
    assert judge_submission(lab, SubmissionSeen("submitted", due), due + timedelta(days=9), NEW_YORK) is None
    # Each deadline and each refusal is news once: their alerts are about different things.
    assert len({soon.about, late.about, refused.about}) == 3
    assert submission_instants(lab, seen) == (due - timedelta(hours=6), due)
    assert submission_instants(lab, SubmissionSeen("submitted", due)) == ()


def test_a_query_is_news_from_its_reminder_day_and_overdue_after_its_answer_date() -> None:
    lab = load_protocol(PROTOCOL + CORE_LAB + 'query_reminder = "3d"\n', "test.toml").core_lab
    assert lab is not None and lab.query_reminder_days == 3
    dues = (date(2026, 12, 10), date(2026, 12, 8))
    assert judge_queries(lab, dues, date(2026, 12, 4)) is None
    soon = judge_queries(lab, dues, date(2026, 12, 5))
    assert soon is not None and soon.kind == "core_lab_query_due" and "due Tue 08 Dec" in soon.note
    on_the_day = judge_queries(lab, dues, date(2026, 12, 8))
    assert on_the_day is not None and on_the_day.kind == "core_lab_query_due"
    late = judge_queries(lab, dues, date(2026, 12, 9))
    assert late is not None and late.kind == "core_lab_query_overdue"
    assert judge_queries(lab, (), date(2026, 12, 9)) is None


def test_each_subject_has_its_own_offset_the_same_at_every_visit() -> None:
    offsets = {subject_shift(b"site-key", "ONC-2101", f"2101-{n:03d}", 365) for n in range(200)}
    assert all(-365 <= offset <= -1 for offset in offsets) and len(offsets) > 100
    assert subject_shift(b"site-key", "ONC-2101", "2101-001", 365) == subject_shift(
        b"site-key", "ONC-2101", "2101-001", 365
    )
    assert subject_shift(b"other-key", "ONC-2101", "2101-001", 365) != subject_shift(
        b"site-key", "ONC-2101", "2101-001", 365
    )
    assert shifted("20260301", -1) == "20260228"
    problems = _problems(CORE_LAB.replace('dates = "remove"', 'dates = "shift"'))
    assert any(p.startswith("core_lab.shift_up_to") for p in problems), problems
