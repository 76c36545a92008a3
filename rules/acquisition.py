"""Acquisition rules: what the DICOM headers of an exam's images must show, and the check.

A protocol's exam type may carry ``[exams.<id>.acquisition]`` (read by
:mod:`rules.acquisition_fields`): rules on the series of the study, each a list of
conditions on DICOM attributes by keyword. The check runs on metadata only
(:class:`StudySeen`, filled by ``monitor.pacs`` from the PACS); nothing here knows DICOM
encoding, the network or the store.

Conditions, as written in the protocol (``SliceThickness = "<= 5"``):

- a comparison ``"<= 5"``, ``"< 5"``, ``">= 5"``, ``"> 5"``, ``"= 5"``, ``"!= 5"`` or a
  bare number: numeric attributes only;
- a range ``"100..140"`` (both ends included): numeric attributes only;
- ``"present"`` / ``"absent"``: the attribute has a value in every image / in none;
- ``"baseline"``: the same value as the series of the same rule in the baseline study
  (the exam's ``baseline`` timepoint): e.g. ``MagneticFieldStrength = "baseline"``;
- any other text: a pattern, case-insensitive, ``*`` and ``?`` as wildcards, that one of
  the attribute's values must match (``ImageType = "AXIAL"``, ``SeriesDescription =
  "*VENOUS*"``); a list of patterns or numbers: any of them.

A series passes a condition when every one of its images does (a slice thickness that
varies within a series is judged by its worst image). ``UptakeMinutes`` is derived: the
series' first ``AcquisitionTime`` minus the ``RadiopharmaceuticalStartTime`` (PET uptake).
"""

from __future__ import annotations

import enum
import fnmatch
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date

__all__ = [
    "NUMERIC_ATTRIBUTES",
    "TEXT_ATTRIBUTES",
    "Acquisition",
    "Condition",
    "Conformance",
    "RuleCheck",
    "SeriesRule",
    "SeriesSeen",
    "StudySeen",
    "check_study",
    "parse_condition",
    "scanner_of",
]

# The attributes a rule may name, by kind. Kept to what acquisition manuals state; a
# protocol naming another gets a problem with the closest known name.
NUMERIC_ATTRIBUTES = frozenset({
    "SliceThickness", "SpacingBetweenSlices", "KVP", "XRayTubeCurrent", "Exposure", "CTDIvol",
    "ReconstructionDiameter", "MagneticFieldStrength", "RepetitionTime", "EchoTime",
    "InversionTime", "FlipAngle", "Rows", "Columns", "RadionuclideTotalDose", "UptakeMinutes",
    "Instances",
})  # fmt: skip
TEXT_ATTRIBUTES = frozenset({
    "SeriesDescription", "ProtocolName", "ImageType", "ContrastBolusAgent", "BodyPartExamined",
    "ConvolutionKernel", "ScanningSequence", "SequenceName", "MRAcquisitionType", "Manufacturer",
    "ManufacturerModelName", "StationName", "DeviceSerialNumber", "PatientPosition",
    "Radiopharmaceutical", "Modality", "AcquisitionTime", "RadiopharmaceuticalStartTime",
})  # fmt: skip
DERIVED = frozenset({"UptakeMinutes", "Instances"})
SCANNER_ATTRIBUTES = ("DeviceSerialNumber", "Manufacturer", "ManufacturerModelName", "StationName")

Values = Sequence[tuple[str, ...]]  # an attribute's distinct values in a series, one tuple per value

_COMPARISON = re.compile(r"^\s*(<=|>=|!=|==|=|<|>)\s*([-+]?\d+(?:\.\d+)?)\s*$")
_RANGE = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*\.\.\s*([-+]?\d+(?:\.\d+)?)\s*$")
_NUMBER = re.compile(r"^\s*[-+]?\d+(?:\.\d+)?\s*$")


class Test(enum.StrEnum):
    COMPARE = "compare"
    RANGE = "range"
    PRESENT = "present"
    ABSENT = "absent"
    BASELINE = "baseline"
    PATTERN = "pattern"


@dataclass(frozen=True, slots=True)
class Condition:
    """One condition on one attribute; ``text`` is how the protocol wrote it."""

    attribute: str
    test: Test
    text: str
    operator: str = ""
    low: float = -math.inf
    high: float = math.inf
    patterns: tuple[str, ...] = ()

    def holds(
        self, values: Sequence[tuple[str, ...]], baseline: Sequence[tuple[str, ...]] | None
    ) -> bool | None:
        """Whether every image's value (``values``: one tuple of the attribute's values per
        distinct image value) meets the condition; None when it cannot be told (no baseline)."""
        if self.test is Test.PRESENT:
            return bool(values) and all(any(part for part in value) for value in values)
        if self.test is Test.ABSENT:
            return not any(any(part for part in value) for value in values)
        if self.test is Test.BASELINE:
            if not baseline:
                return None
            return {_normal(value) for value in values} == {_normal(value) for value in baseline}
        if not values:
            return False
        return all(self._one(value) for value in values)

    def _one(self, value: tuple[str, ...]) -> bool:
        if self.test is Test.PATTERN:
            return any(_matches(part, pattern) for part in value for pattern in self.patterns)
        numbers = [_number(part) for part in value if part.strip()]
        if not numbers or any(number is None for number in numbers):
            return False
        return all(self._compare(number) for number in numbers if number is not None)

    def _compare(self, number: float) -> bool:
        if self.test is Test.RANGE:
            return self.low <= number <= self.high
        target = self.low
        return {
            "<=": number <= target,
            "<": number < target,
            ">=": number >= target,
            ">": number > target,
            "=": math.isclose(number, target, abs_tol=1e-6),
            "!=": not math.isclose(number, target, abs_tol=1e-6),
        }[self.operator]


def parse_condition(attribute: str, value: object) -> Condition:
    """The condition ``attribute = value`` as written in a protocol; ValueError (with a
    plain-language reason) for a value the attribute cannot be tested with."""
    numeric = attribute in NUMERIC_ATTRIBUTES
    if isinstance(value, bool):
        raise ValueError('true/false is not a condition; write a value, a range or "present"')
    if isinstance(value, int | float):
        if not numeric:
            raise ValueError(f"{attribute} is text; write a pattern in quotes")
        return Condition(attribute, Test.COMPARE, str(value), "=", float(value))
    if isinstance(value, list):
        if not value or not all(
            isinstance(item, str | int | float) and not isinstance(item, bool) for item in value
        ):
            raise ValueError("a list must hold patterns or numbers, at least one")
        if numeric and not all(isinstance(item, int | float) or _NUMBER.match(item) for item in value):
            raise ValueError(f"{attribute} is a number; list numbers")
        patterns = tuple(_pattern_text(item) for item in value)
        return Condition(attribute, Test.PATTERN, " or ".join(patterns), patterns=patterns)
    if not isinstance(value, str) or not value.strip():
        raise ValueError('write a value in quotes, e.g. "<= 5", "100..140", "present" or a pattern')
    text = value.strip()
    word = text.lower()
    if word in ("present", "absent", "baseline"):
        return Condition(attribute, Test(word), word)
    compared = _COMPARISON.match(text)
    if compared is not None:
        if not numeric:
            raise ValueError(f"{attribute} is text: it cannot be compared with {compared[1]}")
        operator = "=" if compared[1] == "==" else compared[1]
        return Condition(attribute, Test.COMPARE, f"{operator} {compared[2]}", operator, float(compared[2]))
    ranged = _RANGE.match(text)
    if ranged is not None:
        if not numeric:
            raise ValueError(f"{attribute} is text: it has no range")
        low, high = float(ranged[1]), float(ranged[2])
        if high < low:
            raise ValueError(f'the range ends before it starts; write "{ranged[2]}..{ranged[1]}"')
        return Condition(attribute, Test.RANGE, f"{ranged[1]}..{ranged[2]}", low=low, high=high)
    if numeric:
        if _NUMBER.match(text):
            return Condition(attribute, Test.COMPARE, f"= {text}", "=", float(text))
        raise ValueError(f'{attribute} is a number: write "<= 5", "100..140", a number or "present"')
    return Condition(attribute, Test.PATTERN, text, patterns=(text,))


@dataclass(frozen=True, slots=True)
class SeriesRule:
    """Series of the study that ``where`` selects: at least ``count`` of them, each meeting ``require``."""

    label: str
    where: tuple[Condition, ...] = ()
    require: tuple[Condition, ...] = ()
    count: int = 1


@dataclass(frozen=True, slots=True)
class Acquisition:
    """An exam type's acquisition rules. ``baseline`` is the timepoint whose images
    ``"baseline"`` conditions and ``same_scanner`` compare with."""

    series: tuple[SeriesRule, ...] = ()
    baseline: str | None = None
    same_scanner: bool = False

    def attributes(self) -> frozenset[str]:
        """Every attribute the check reads (what the PACS is asked for), derived ones by their sources."""
        named = {c.attribute for rule in self.series for c in (*rule.where, *rule.require)}
        if "UptakeMinutes" in named:
            named |= {"AcquisitionTime", "RadiopharmaceuticalStartTime"}
        return frozenset((named - DERIVED) | set(SCANNER_ATTRIBUTES) | {"SeriesDescription", "Modality"})


@dataclass(frozen=True, slots=True)
class SeriesSeen:
    """One series as the PACS describes it: per attribute, the distinct values its images carry
    (each a tuple: DICOM attributes can hold several values, ``ORIGINAL\\PRIMARY\\AXIAL``)."""

    uid: str
    number: int | None
    description: str
    modality: str
    instances: int
    values: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.number} {self.description}".strip() if self.number is not None else self.description

    def of(self, attribute: str) -> tuple[tuple[str, ...], ...]:
        if attribute == "Instances":
            return ((str(self.instances),),)
        if attribute == "UptakeMinutes":
            return _uptake(self)
        if attribute == "SeriesDescription":
            return ((self.description,),)
        if attribute == "Modality":
            return ((self.modality,),)
        return self.values.get(attribute, ())


@dataclass(frozen=True, slots=True)
class StudySeen:
    """One study in the PACS, by its metadata only."""

    uid: str
    accession: str
    patient_id: str
    study_date: date | None
    modalities: tuple[str, ...]
    series: tuple[SeriesSeen, ...] = ()

    @property
    def instances(self) -> int:
        return sum(series.instances for series in self.series)


@dataclass(frozen=True, slots=True)
class RuleCheck:
    """One row of an exam's conformance table. ``passed`` is None when it cannot be told yet
    (no baseline images to compare with). ``settled`` says whether the row's rule is met as
    a whole: a series that failed is no deviation once enough others of the rule conform
    (the technologist repeated it correctly)."""

    rule: str
    series: str
    attribute: str
    expected: str
    actual: str
    passed: bool | None
    settled: bool = True


@dataclass(frozen=True, slots=True)
class Conformance:
    checks: tuple[RuleCheck, ...] = ()

    @property
    def deviations(self) -> tuple[RuleCheck, ...]:
        """The failed rows of rules not met (the scanner row aside)."""
        return tuple(
            check
            for check in self.checks
            if check.passed is False and not check.settled and check.attribute != "scanner"
        )

    @property
    def scanner_mismatch(self) -> RuleCheck | None:
        return next((c for c in self.checks if c.attribute == "scanner" and c.passed is False), None)


def check_study(acquisition: Acquisition, study: StudySeen, baseline: StudySeen | None = None) -> Conformance:
    """Every rule of ``acquisition`` against ``study`` (and the ``baseline`` study's images).

    A rule is met when at least ``count`` of the series it selects pass every requirement
    (one that cannot be told yet, for want of baseline images, does not fail them).
    """
    checks: list[RuleCheck] = []
    for rule in acquisition.series:
        chosen = [s for s in study.series if all(c.holds(s.of(c.attribute), None) for c in rule.where)]
        reference = _first_match(rule, baseline)
        rows = [_series_rows(rule, series, reference) for series in chosen]
        conforming = sum(1 for series_rows in rows if all(row.passed is not False for row in series_rows))
        met = conforming >= rule.count
        # The count row fails when too few series were acquired at all; when they were but
        # some fail a requirement, those rows are the deviations.
        wanted = f">= {rule.count} series" + (f" with {_conditions(rule.where)}" if rule.where else "")
        actual = f"{len(chosen)}, {conforming} conforming"
        checks.append(RuleCheck(rule.label, "", "series", wanted, actual, len(chosen) >= rule.count, met))
        checks.extend(replace(row, settled=met) for series_rows in rows for row in series_rows)
    if acquisition.same_scanner:
        here = scanner_of(study)
        there = scanner_of(baseline) if baseline is not None else None
        passed = None if there is None or here is None else _same_scanner(here, there)
        expected = f"baseline: {_scanner_text(there)}" if there else "baseline: no images yet"
        checks.append(RuleCheck("same scanner", "", "scanner", expected, _scanner_text(here), passed))
    return Conformance(tuple(checks))


def scanner_of(study: StudySeen) -> dict[str, str] | None:
    """The scanner most of the study's images were acquired on: its serial number, make,
    model and station name (any may be blank); None when the study says none of them."""
    votes: Counter[tuple[str, ...]] = Counter()
    for series in study.series:
        key = tuple(_single(series.values.get(name, ())) for name in SCANNER_ATTRIBUTES)
        if any(key):
            votes[key] += series.instances or 1
    if not votes:
        return None
    return dict(zip(SCANNER_ATTRIBUTES, votes.most_common(1)[0][0], strict=True))


def _same_scanner(here: Mapping[str, str], there: Mapping[str, str]) -> bool:
    """The same serial number when both give one; else the same make, model and station."""
    if here["DeviceSerialNumber"] and there["DeviceSerialNumber"]:
        return _fold(here["DeviceSerialNumber"]) == _fold(there["DeviceSerialNumber"])
    return all(_fold(here[name]) == _fold(there[name]) for name in SCANNER_ATTRIBUTES[1:])


def _series_rows(rule: SeriesRule, series: SeriesSeen, reference: SeriesSeen | None) -> list[RuleCheck]:
    rows: list[RuleCheck] = []
    for condition in rule.require:
        base = reference.of(condition.attribute) if reference is not None else None
        actual = series.of(condition.attribute)
        expected = condition.text if condition.test is not Test.BASELINE else f"baseline: {_shown(base)}"
        passed = condition.holds(actual, base)
        rows.append(RuleCheck(rule.label, series.name, condition.attribute, expected, _shown(actual), passed))
    return rows


def _scanner_text(scanner: Mapping[str, str] | None) -> str:
    if not scanner:
        return "(not stated)"
    parts = [scanner["Manufacturer"], scanner["ManufacturerModelName"], scanner["StationName"]]
    serial = f"serial {scanner['DeviceSerialNumber']}" if scanner["DeviceSerialNumber"] else ""
    return " ".join(part for part in (*parts, serial) if part) or "(not stated)"


def _first_match(rule: SeriesRule, study: StudySeen | None) -> SeriesSeen | None:
    if study is None:
        return None
    return next((s for s in study.series if all(c.holds(s.of(c.attribute), None) for c in rule.where)), None)


def _conditions(conditions: Sequence[Condition]) -> str:
    return ", ".join(f"{c.attribute} {c.text}" for c in conditions)


def _shown(values: Sequence[tuple[str, ...]] | None) -> str:
    """Values as a table cell: ``2.5``, ``2.5 / 5``, ``ORIGINAL\\PRIMARY\\AXIAL``, ``(none)``."""
    if not values:
        return "(none)"
    texts = sorted({"\\".join(value) for value in values if any(value)})
    if not texts:
        return "(empty)"
    numbers = [_number(text) for text in texts]
    if len(texts) > 3 and all(number is not None for number in numbers):
        present = [number for number in numbers if number is not None]
        return f"{min(present):g} to {max(present):g}"
    shown = " / ".join(texts[:3])
    return shown + (f" (+{len(texts) - 3} more)" if len(texts) > 3 else "")


def _uptake(series: SeriesSeen) -> tuple[tuple[str, ...], ...]:
    """Minutes from injection to the series' first acquisition, when both times are given."""
    starts = [_seconds(part) for value in series.values.get("AcquisitionTime", ()) for part in value]
    injected = [
        _seconds(part) for value in series.values.get("RadiopharmaceuticalStartTime", ()) for part in value
    ]
    acquired = min((s for s in starts if s is not None), default=None)
    injection = min((s for s in injected if s is not None), default=None)
    if acquired is None or injection is None:
        return ()
    minutes = ((acquired - injection) % 86_400) / 60  # an injection before midnight, a scan after
    return ((f"{minutes:.1f}",),)


def _seconds(text: str) -> float | None:
    """A DICOM TM (``HHMMSS.frac``, ``HHMM`` or ``HH``) as seconds since midnight."""
    digits = text.strip().replace(":", "")
    if not digits or not digits.split(".")[0].isdigit() or len(digits.split(".")[0]) not in (2, 4, 6):
        return None
    whole, _, fraction = digits.partition(".")
    hours, minutes, seconds = int(whole[0:2]), int(whole[2:4] or 0), int(whole[4:6] or 0)
    return hours * 3600 + minutes * 60 + seconds + (float(f"0.{fraction}") if fraction.isdigit() else 0.0)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _normal(value: tuple[str, ...]) -> tuple[str, ...]:
    """A value as compared with the baseline: numbers by value, text without case or spaces."""
    out: list[str] = []
    for part in value:
        number = _number(part)
        out.append(f"{number:g}" if number is not None else _fold(part))
    return tuple(out)


def _single(values: tuple[tuple[str, ...], ...]) -> str:
    return "\\".join(values[0]).strip() if values else ""


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


def _matches(value: str, pattern: str) -> bool:
    """``value`` fits ``pattern``: equal numbers (``3`` and ``3.0``), or a case-insensitive glob."""
    number, wanted = _number(value), _number(pattern)
    if number is not None and wanted is not None:
        return math.isclose(number, wanted, abs_tol=1e-6)
    return fnmatch.fnmatchcase(_fold(value), _fold(pattern))


def _is_item(item: object) -> bool:
    return isinstance(item, str | int | float) and not isinstance(item, bool)


def _pattern_text(item: str | int | float) -> str:
    return item.strip() if isinstance(item, str) else f"{item:g}"
