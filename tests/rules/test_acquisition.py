"""Acquisition rules: read from the protocol with every problem named, and checked on metadata."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from rules import ProtocolError, load_protocol
from rules.acquisition import Acquisition, SeriesSeen, StudySeen, check_study, parse_condition
from tests.rules.builders import PROTOCOL

CT_RULES = """
[exams.ct.acquisition]
baseline = "screening"
same_scanner = true

[[exams.ct.acquisition.series]]
label = "Portal venous, axial"
where = { ImageType = "AXIAL", SeriesDescription = "*VENOUS*" }
require = { SliceThickness = "<= 5", KVP = "100..140", ContrastBolusAgent = "present" }

[[exams.ct.acquisition.series]]
label = "Same kV as baseline"
where = { ImageType = "AXIAL" }
require = { KVP = "baseline" }
"""


def _acquisition(rules: str = CT_RULES) -> Acquisition:
    # TOML tables after [exams.ct] would swallow [exams.mr]'s keys if placed mid-file, so the
    # rules go at the end of the file, where TOML allows any table.
    trial = load_protocol(PROTOCOL + rules, "test.toml")
    acquisition = trial.versions[0].exams["ct"].acquisition
    assert acquisition is not None
    return acquisition


def _series(number: int, description: str, instances: int = 40, **values: object) -> SeriesSeen:
    """A series whose images carry ``values`` (a list: several distinct values across images)."""
    found: dict[str, tuple[tuple[str, ...], ...]] = {}
    for name, value in values.items():
        items = value if isinstance(value, list) else [value]
        found[name] = tuple(tuple(str(item).split("\\")) for item in items)
    return SeriesSeen(f"1.2.3.{number}", number, description, "CT", instances, found)


SCANNER = {
    "Manufacturer": "ACME",
    "ManufacturerModelName": "Model 9",
    "StationName": "CT3",
    "DeviceSerialNumber": "SN-1",
}


def _study(*series: SeriesSeen) -> StudySeen:
    return StudySeen("1.2.3", "ACC1", "E10001", date(2026, 12, 1), ("CT",), series)


def _venous(
    thickness: object = 2.5,
    kvp: object = 120,
    number: int = 3,
    description: str = "PORTAL VENOUS 2.5mm",
    **more: object,
) -> SeriesSeen:
    values: dict[str, object] = {
        "ImageType": "ORIGINAL\\PRIMARY\\AXIAL",
        "SliceThickness": thickness,
        "KVP": kvp,
        "ContrastBolusAgent": "IOHEXOL",
        **SCANNER,
    }
    values.update(more)
    return _series(number, description, **values)


SCOUT = _series(1, "Scout", 2, ImageType="ORIGINAL\\PRIMARY\\LOCALIZER", SliceThickness=600, **SCANNER)


def test_the_rules_are_read_from_the_protocol() -> None:
    acquisition = _acquisition()
    assert (acquisition.baseline, acquisition.same_scanner) == ("screening", True)
    venous, same_kv = acquisition.series
    assert [(c.attribute, c.text) for c in venous.require] == [
        ("SliceThickness", "<= 5"),
        ("KVP", "100..140"),
        ("ContrastBolusAgent", "present"),
    ]
    assert [(c.attribute, c.text) for c in venous.where] == [
        ("ImageType", "AXIAL"),
        ("SeriesDescription", "*VENOUS*"),
    ]
    assert same_kv.count == 1 and same_kv.require[0].text == "baseline"
    # What the PACS is asked for: what the rules name, and what identifies the scanner.
    assert acquisition.attributes() >= {
        "SliceThickness",
        "KVP",
        "ContrastBolusAgent",
        "ImageType",
        "DeviceSerialNumber",
    }


@pytest.mark.parametrize(
    ("rules", "path", "words"),
    [
        (
            'require = { SliceThicknes = "<= 5" }',
            "series[1].require.SliceThicknes",
            'did you mean "SliceThickness"',
        ),
        ('require = { ContrastBolusAgent = "<= 5" }', "series[1].require.ContrastBolusAgent", "is text"),
        ('require = { KVP = "140..100" }', "series[1].require.KVP", "ends before it starts"),
        ('require = { KVP = "high" }', "series[1].require.KVP", "is a number"),
        ("require = { KVP = true }", "series[1].require.KVP", "true/false is not a condition"),
        (
            'where = { KVP = "baseline" }\nrequire = { KVP = "present" }',
            "series[1].where.KVP",
            "only goes under require",
        ),
        ('require = { KVP = "baseline" }', "baseline", "names no baseline timepoint"),
        ('count = 0\nrequire = { KVP = "present" }', "series[1].count", "must be 1 or more"),
    ],
)
def test_a_bad_rule_is_named_by_its_key_path(rules: str, path: str, words: str) -> None:
    text = PROTOCOL + f"\n[[exams.ct.acquisition.series]]\n{rules}\n"
    with pytest.raises(ProtocolError) as raised:
        load_protocol(text, "test.toml")
    problems = [f"{p.path}: {p.message}. {p.fix}" for p in raised.value.problems]
    assert any(p.startswith(f"exams.ct.acquisition.{path}") and words in p for p in problems), problems


def test_a_baseline_that_is_no_timepoint_is_a_problem() -> None:
    with pytest.raises(ProtocolError) as raised:
        load_protocol(PROTOCOL + CT_RULES.replace('baseline = "screening"', 'baseline = "screen"'), "t.toml")
    assert [p.path for p in raised.value.problems] == ["exams.ct.acquisition.baseline"]
    assert "no timepoint 'screen'" in raised.value.problems[0].message


def test_a_conforming_study_passes_every_rule_and_the_scout_is_not_judged() -> None:
    baseline = _study(_venous(thickness=5))
    result = check_study(_acquisition(), _study(SCOUT, _venous()), baseline)
    assert result.deviations == () and result.scanner_mismatch is None
    rows = {(c.rule, c.series, c.attribute): (c.expected, c.actual, c.passed) for c in result.checks}
    assert rows[("Portal venous, axial", "3 PORTAL VENOUS 2.5mm", "SliceThickness")] == ("<= 5", "2.5", True)
    assert rows[("Same kV as baseline", "3 PORTAL VENOUS 2.5mm", "KVP")] == ("baseline: 120", "120", True)
    assert rows[("same scanner", "", "scanner")][2] is True
    assert not any(series == "1 Scout" for _, series, _ in rows)


def test_a_thick_series_is_a_deviation_naming_series_attribute_expected_and_actual() -> None:
    result = check_study(_acquisition(), _study(SCOUT, _venous(thickness=[5, 7.5])), None)
    (deviation,) = result.deviations
    assert (deviation.series, deviation.attribute, deviation.expected, deviation.actual) == (
        "3 PORTAL VENOUS 2.5mm",
        "SliceThickness",
        "<= 5",
        "5 / 7.5",
    )
    # Without baseline images the baseline comparisons cannot be told: neither pass nor fail.
    same_kv = {c.attribute: c.passed for c in result.checks if c.rule == "Same kV as baseline"}
    assert same_kv == {"series": True, "KVP": None}


def test_no_series_matching_a_rule_is_a_deviation() -> None:
    result = check_study(_acquisition(), _study(SCOUT, _series(4, "ARTERIAL", ImageType="AXIAL", **SCANNER)))
    missing = [c for c in result.deviations if c.attribute == "series"]
    assert [(c.rule, c.actual) for c in missing] == [("Portal venous, axial", "0, 0 conforming")]
    assert "SeriesDescription *VENOUS*" in missing[0].expected


def test_a_series_repeated_correctly_settles_the_rule_and_the_wrong_one_stays_in_the_table() -> None:
    repeated = _venous(thickness=2, number=5, description="PORTAL VENOUS REPEAT")
    result = check_study(_acquisition(), _study(SCOUT, _venous(thickness=7.5), repeated))
    assert result.deviations == ()
    series_row = next(
        c for c in result.checks if c.rule == "Portal venous, axial" and c.attribute == "series"
    )
    assert (series_row.actual, series_row.passed) == ("2, 1 conforming", True)
    wrong = [c for c in result.checks if c.passed is False]
    assert [(c.series, c.attribute, c.actual, c.settled) for c in wrong] == [
        ("3 PORTAL VENOUS 2.5mm", "SliceThickness", "7.5", True)
    ]


def test_another_scanner_is_a_mismatch_by_serial_number_else_by_make_model_and_station() -> None:
    moved = _study(_venous(DeviceSerialNumber="SN-2"))
    mismatch = check_study(_acquisition(), moved, _study(_venous())).scanner_mismatch
    assert mismatch is not None and "serial SN-1" in mismatch.expected and "serial SN-2" in mismatch.actual
    no_serial = _study(_venous(DeviceSerialNumber="", StationName="CT3 "))
    assert check_study(_acquisition(), no_serial, _study(_venous())).scanner_mismatch is None
    other_room = _study(_venous(DeviceSerialNumber="", StationName="CT4"))
    assert check_study(_acquisition(), other_room, _study(_venous())).scanner_mismatch is not None


def test_pet_uptake_time_is_derived_from_the_injection_and_the_first_acquisition() -> None:
    rules = _acquisition('\n[[exams.ct.acquisition.series]]\nrequire = { UptakeMinutes = "55..75" }\n')

    def pet(injected: str, acquired: list[str]) -> StudySeen:
        series = _series(2, "PET WB", AcquisitionTime=acquired, RadiopharmaceuticalStartTime=injected)
        return _study(series)

    on_time = check_study(rules, pet("101500", ["111700.5", "111500"]))
    assert [(c.actual, c.passed) for c in on_time.checks if c.attribute == "UptakeMinutes"] == [
        ("60.0", True)
    ]
    late = check_study(rules, pet("233000", ["005000"]))  # injected before midnight: 80 minutes
    assert [(c.actual, c.passed) for c in late.checks if c.attribute == "UptakeMinutes"] == [("80.0", False)]
    unknown = check_study(rules, pet("", ["111500"]))
    assert [(c.actual, c.passed) for c in unknown.checks if c.attribute == "UptakeMinutes"] == [
        ("(none)", False)
    ]


@pytest.mark.parametrize(
    ("attribute", "written", "values", "passes"),
    [
        ("SliceThickness", "< 5", ["5"], False),
        ("SliceThickness", 5, ["5.0"], True),
        ("SliceThickness", "!= 5", ["3", "5"], False),
        ("MagneticFieldStrength", [1.5, 3], ["3.0"], True),
        ("ContrastBolusAgent", "absent", [""], True),
        ("ContrastBolusAgent", "present", [""], False),
        ("ImageType", ["AXIAL", "REFORMATTED"], ["DERIVED\\SECONDARY\\REFORMATTED"], True),
        ("SeriesDescription", "t1*gad*", ["T1 AX POST GAD"], True),
    ],
)
def test_conditions(attribute: str, written: object, values: list[str], passes: bool) -> None:
    condition = parse_condition(attribute, written)
    assert condition.holds([tuple(v.split("\\")) for v in values], None) is passes


def test_each_example_trial_checks_its_images() -> None:
    examples = Path(__file__).resolve().parents[2] / "examples" / "trials"
    for path in sorted(examples.glob("*.toml")):
        trial = load_protocol(path.read_text(), path.name)
        for version in trial.versions:
            checked = [exam for exam in version.exams.values() if exam.acquisition is not None]
            assert checked and all(exam.acquisition.series for exam in checked if exam.acquisition), path.name


TIMEPOINT_RULES = """
[timepoints.acquisition.ct]
[[timepoints.acquisition.ct.series]]
label = "Thin baseline"
require = { SliceThickness = "<= 1.25" }
"""


def test_a_timepoint_replaces_its_exam_types_rules_and_names_only_exams_it_takes() -> None:
    # Appended after the last [[timepoints]] entry (restaging): its own rules for the CT.
    trial = load_protocol(PROTOCOL.replace("\n[routing]", TIMEPOINT_RULES + "\n[routing]", 1), "t.toml")
    restaging = next(t for t in trial.versions[0].timepoints if t.id == "restaging")
    (rule,) = restaging.acquisition["ct"].series
    assert (rule.label, rule.require[0].text) == ("Thin baseline", "<= 1.25")
    wrong = TIMEPOINT_RULES.replace(".ct", ".pet")
    with pytest.raises(ProtocolError) as raised:
        load_protocol(PROTOCOL.replace("\n[routing]", wrong + "\n[routing]", 1), "t.toml")
    assert [(p.path, p.message) for p in raised.value.problems] == [
        ("timepoints[2].acquisition.pet", "exam 'pet' does not serve this timepoint")
    ]
