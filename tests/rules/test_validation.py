"""Protocol files: every problem is reported with its key path and a fix; the examples are clean."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import pytest

from rules import ProtocolError, check_enrolment, load_protocol
from tests.rules.builders import PROTOCOL, with_timepoints

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

SCREENING = 'exams = ["ct"]\nanchor = "c1d1"\nwindow = { from = "-28d", to = "-1d" }'
RESTAGING_EVERY = 'every = "6w"'


def _edit(old: str, new: str) -> str:
    assert old in PROTOCOL, old
    return PROTOCOL.replace(old, new, 1)


# One row per problem: (name, protocol text, key path, words the message must contain, words in the fix).
PROBLEMS = [
    (
        "unknown exam id in a timepoint",
        _edit(SCREENING, SCREENING.replace('"ct"', '"ct_cap"')),
        "timepoints[1].exams[1]",
        "names exam 'ct_cap'",
        "add [exams.ct_cap]",
    ),
    (
        "window that ends before it starts",
        _edit('{ from = "-28d", to = "-1d" }', '{ from = "-1d", to = "-28d" }'),
        "timepoints[1].window",
        "ends before it starts",
        "swap from and to",
    ),
    (
        "anchor not declared",
        _edit('anchor = "c1d1"\nwindow = { from', 'anchor = "c1d"\nwindow = { from'),
        "timepoints[1].anchor",
        "anchor 'c1d' is not declared",
        "[anchors]",
    ),
    (
        "duplicate orderable across exams",
        _edit('orderables = ["MR1"]', 'orderables = ["MR1", "CT2"]'),
        "exams.mr.orderables[2]",
        "'CT2' is also listed under exam 'ct'",
        "one exam type",
    ),
    (
        "bad duration syntax",
        _edit(RESTAGING_EVERY, 'every = "6wk"'),
        "timepoints[2].every",
        "bad duration '6wk'",
        "6w",
    ),
    (
        "months in a duration",
        _edit(RESTAGING_EVERY, 'every = "3m"'),
        "timepoints[2].every",
        "months and years are not allowed",
        "12w",
    ),
    (
        "a duration written as a bare number",
        _edit(RESTAGING_EVERY, "every = 42"),
        "timepoints[2].every",
        "must be text with a unit",
        "6w",
    ),
    (
        "unknown key (a typo)",
        _edit('label = "Week {week}"', 'lable = "Week {week}"'),
        "timepoints[2].lable",
        'unknown key "lable"',
        'did you mean "label"?',
    ),
    (
        "missing required key",
        _edit('title = "Test trial"\n', ""),
        "title",
        'required key "title" is missing',
        "title =",
    ),
    (
        "bad arm reference",
        _edit(RESTAGING_EVERY, RESTAGING_EVERY + '\narms = ["C"]'),
        "timepoints[2].arms[1]",
        "names arm 'C', which is not declared",
        "arms = [...]",
    ),
    (
        "modality written as MRI",
        _edit('modality = "MR"', 'modality = "MRI"'),
        "exams.mr.modality",
        "unknown modality 'MRI'",
        'modality = "MR"',
    ),
    (
        "Day 0 when the anchor is Day 1",
        _edit(SCREENING, SCREENING + "\nday = 0"),
        "timepoints[1].day",
        "no Day 0 when the anchor is Day 1",
        "day = 1",
    ),
    (
        "until names an undeclared anchor",
        _edit('until = "24w"', 'until = "death"'),
        "timepoints[2].until",
        "until names anchor 'death'",
        "[anchors] events",
    ),
    (
        "previous with nothing before it",
        _edit('anchor = "c1d1"\nwindow = { from', 'anchor = "previous"\nwindow = { from'),
        "timepoints[1].anchor",
        "nothing comes before it",
        "milestone",
    ),
    (
        "channel address without a channel",
        _edit('"email:coord@example.org"', '"coord@example.org"'),
        "routing.coordinators[1]",
        "is not a channel address",
        "email:",
    ),
    (
        "a channel this project does not have (a typo)",
        _edit('"email:coord@example.org"', '"emial:coord@example.org"'),
        "routing.coordinators[1]",
        "names no channel this project has ('emial')",
        'did you mean "email:"?',
    ),
    (
        "a repeating timepoint with an offset",
        _edit(RESTAGING_EVERY, RESTAGING_EVERY + '\noffset = "1w"'),
        "timepoints[2].offset",
        "a repeating timepoint has no offset",
        "first =",
    ),
    (
        "unknown label placeholder",
        _edit('label = "Week {week}"', 'label = "Week {wk}"'),
        "timepoints[2].label",
        "unknown placeholder {wk}",
        "{week}",
    ),
    (
        "window missing",
        _edit('window = "+-7d"', ""),
        "timepoints[2].window",
        'required key "window" is missing',
        "+-7d",
    ),
    (
        "tolerance without +-",
        _edit('window = "+-7d"', 'window = "7d"'),
        "timepoints[2].window",
        "needs a +- sign",
        "+-7d",
    ),
    (
        "duplicate timepoint id",
        _edit('id = "restaging"', 'id = "screening"'),
        "timepoints[2].id",
        "'screening' is used twice",
        "its own id",
    ),
    (
        "same scanner as an unknown timepoint",
        _edit('label = "MRI abdomen"', 'label = "MRI abdomen"\nsame_scanner_as = "base"'),
        "exams.mr.same_scanner_as",
        "no timepoint 'base'",
        "baseline",
    ),
    (
        "anchor_is_day other than 0 or 1",
        _edit("anchor_is_day = 1", "anchor_is_day = 2"),
        "anchor_is_day",
        "must be 0 or 1",
        "C1D1 = Day 1",
    ),
    (
        "lead time that is not positive",
        _edit('coordinator = ["72h", "24h"]', 'coordinator = ["72h", "-24h"]'),
        "routing.lead_times.coordinator[2]",
        "must be positive",
        "24h",
    ),
    (
        "recurrence key on a single visit",
        _edit(SCREENING, SCREENING + '\nuntil = "8w"'),
        "timepoints[1].until",
        "only applies to a repeating timepoint",
        "every =",
    ),
    (
        "a contact line that is too long",
        _edit(
            'coordinators = ["email:coord@example.org"]',
            'coordinators = ["email:coord@example.org"]\ncontacts = ["ok: 555-0100", "' + "x" * 201 + '"]',
        ),
        "routing.contacts[2]",
        "1 to 200 characters",
        "one person or desk a line",
    ),
    (
        "contacts that are not texts",
        _edit(
            'coordinators = ["email:coord@example.org"]',
            'coordinators = ["email:coord@example.org"]\ncontacts = 5550100',
        ),
        "routing.contacts",
        "must be a list of texts",
        "contacts = [",
    ),
]


@pytest.mark.parametrize(
    ("name", "text", "path", "message", "fix"), PROBLEMS, ids=[row[0] for row in PROBLEMS]
)
def test_each_problem_is_reported_with_its_key_path_and_a_fix(
    name: str, text: str, path: str, message: str, fix: str
) -> None:
    with pytest.raises(ProtocolError) as caught:
        load_protocol(text, "trial.toml")
    matching = [p for p in caught.value.problems if p.path == path]
    assert matching, f"{name}: no problem at {path}; got {[str(p) for p in caught.value.problems]}"
    assert any(message in p.message and fix in p.fix for p in matching), [str(p) for p in matching]
    assert str(caught.value).startswith("trial.toml: ")


def test_every_problem_in_a_file_is_reported_not_only_the_first() -> None:
    text = (
        PROTOCOL.replace('every = "6w"', 'every = "6wk"')
        .replace('modality = "MR"', 'modality = "PET"')
        .replace('{ from = "-28d", to = "-1d" }', '{ from = "-1d", to = "-28d" }')
    )
    with pytest.raises(ProtocolError) as caught:
        load_protocol(text, "trial.toml")
    assert [p.path for p in caught.value.problems] == [
        "exams.mr.modality",
        "timepoints[1].window",
        "timepoints[2].every",
    ]
    assert 'modality = "PT"' in caught.value.problems[0].fix


def test_a_file_that_is_not_toml_is_one_problem_naming_the_line() -> None:
    with pytest.raises(ProtocolError) as caught:
        load_protocol('id = "T-1\ntitle = 3', "broken.toml")
    (problem,) = caught.value.problems
    assert "not valid TOML" in problem.message and "line 1" in problem.message


def test_versions_must_be_listed_oldest_first_with_real_dates() -> None:
    text = PROTOCOL + (
        '\n[[versions]]\nname = "v1"\neffective = 2026-01-01\n'
        '\n[[versions]]\nname = "A1"\neffective = 2025-06-01\n'
        '\n[[versions]]\nname = "A2"\neffective = "2026-09-01"\n'
    )
    with pytest.raises(ProtocolError) as caught:
        load_protocol(text, "trial.toml")
    problems = {p.path: p for p in caught.value.problems}
    assert "not after the previous version's 2026-01-01" in problems["versions[2].effective"].message
    assert "without quotes" in problems["versions[3].effective"].fix


def test_an_amendment_that_drops_an_exam_still_used_by_inherited_timepoints_is_reported() -> None:
    text = PROTOCOL + (
        '\n[[versions]]\nname = "v1"\neffective = 2026-01-01\n'
        '\n[[versions]]\nname = "A1"\neffective = 2026-06-01\n'
        '[versions.exams.ct]\nmodality = "CT"\norderables = ["CT1"]\n'
    )
    with pytest.raises(ProtocolError) as caught:
        load_protocol(text, "trial.toml")
    assert any(
        p.path == "timepoints[2].exams[2]" and "version 'A1' does not define" in p.message
        for p in caught.value.problems
    )


def test_a_broken_reference_every_version_inherits_is_one_problem_naming_the_versions() -> None:
    text = PROTOCOL.replace('anchor = "c1d1"', 'anchor = "consent"', 1) + (
        '\n[[versions]]\nname = "v1"\neffective = 2026-01-01\n'
        '\n[[versions]]\nname = "A1"\neffective = 2026-06-01\n'
        '[versions.exams.ct]\nmodality = "CT"\norderables = ["CT1"]\n'
        '\n[[versions]]\nname = "A2"\neffective = 2026-09-01\n'
        '[versions.exams.ct]\nmodality = "CT"\norderables = ["CT2"]\n'
    )
    with pytest.raises(ProtocolError) as caught:
        load_protocol(text, "trial.toml")
    paths = [p.path for p in caught.value.problems]
    assert len(paths) == len(set(paths)), paths  # each problem once
    by_path = {p.path: p.message for p in caught.value.problems}
    anchor = next(path for path in paths if path.endswith(".anchor"))
    assert "anchor 'consent' is not declared" in by_path[anchor]
    assert "which versions 'A1' and 'A2' do not define" in by_path["timepoints[2].exams[2]"]


def test_previous_after_an_endless_series_has_no_last_visit() -> None:
    text = with_timepoints(
        '[[timepoints]]\nid = "forever"\nexams = ["ct"]\nanchor = "c1d1"\nevery = "4w"\nwindow = "+-3d"\n'
        '[[timepoints]]\nid = "after"\nexams = ["ct"]\nanchor = "previous"\noffset = "4w"\nwindow = "+-3d"\n'
    )
    with pytest.raises(ProtocolError) as caught:
        load_protocol(text, "trial.toml")
    assert any(p.path == "timepoints[4].anchor" and "without end" in p.message for p in caught.value.problems)


@pytest.mark.parametrize("path", sorted((EXAMPLES / "trials").glob("*.toml")), ids=lambda p: p.name)
def test_the_example_protocols_validate_cleanly(path: Path) -> None:
    trial = load_protocol(path.read_text(encoding="utf-8"), str(path))
    assert trial.source == str(path)
    assert trial.routing.coordinators
    for version in trial.versions:
        assert version.timepoints and version.exams


def test_the_example_enrolments_fit_their_protocols() -> None:
    trials = {
        t.id: t
        for t in (
            load_protocol(p.read_text(encoding="utf-8"), p.name) for p in (EXAMPLES / "trials").glob("*.toml")
        )
    }
    with (EXAMPLES / "enrolments.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 12
    anchor_columns = ("consent", "c1d1", "randomisation", "progression", "end_of_treatment")
    for row in rows:
        anchors = {name: date.fromisoformat(row[name]) for name in anchor_columns if row[name]}
        assert check_enrolment(trials[row["trial"]], anchors, row["arm"] or None) == [], row["subject"]
        assert row["mrn"].startswith("E")  # synthetic MRNs only


def test_an_enrolment_missing_an_anchor_or_with_an_unknown_arm_is_described() -> None:
    trial = load_protocol(PROTOCOL, "t.toml")
    problems = check_enrolment(trial, {"consent": date(2026, 1, 1)}, "C")
    assert problems == [
        "the anchor date 'c1d1' is required by T-1",
        "T-1 declares no anchor 'consent'",
        "T-1 has no arm 'C' (arms: A, B)",
    ]


def test_a_bad_window_does_not_hide_an_unknown_exam_in_the_same_timepoint() -> None:
    text = _edit(SCREENING, SCREENING.replace('"ct"', '"ct_cap"').replace('to = "-1d"', 'to = "-30d"'))
    with pytest.raises(ProtocolError) as caught:
        load_protocol(text, "bad.toml")
    paths = {problem.path for problem in caught.value.problems}
    assert {"timepoints[1].window", "timepoints[1].exams[1]"} <= paths
