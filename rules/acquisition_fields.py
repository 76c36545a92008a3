"""Reading ``[exams.<id>.acquisition]`` out of a protocol file (see :mod:`rules.acquisition`).

::

    [exams.ct_cap.acquisition]
    baseline = "screening"        # the timepoint whose images "baseline" conditions compare with
    same_scanner = true           # the images must come from the baseline's scanner

    [[exams.ct_cap.acquisition.series]]
    label = "Portal venous phase, axial"
    where = { ImageType = "AXIAL", SeriesDescription = "*VENOUS*" }
    count = 1                     # at least this many such series (default 1)
    require = { SliceThickness = "<= 5", KVP = "100..140", ContrastBolusAgent = "present" }

Every problem is reported with its key path, as for the rest of the file.
"""

from __future__ import annotations

import difflib
from typing import Any

from rules.acquisition import (
    NUMERIC_ATTRIBUTES,
    TEXT_ATTRIBUTES,
    Acquisition,
    Condition,
    SeriesRule,
    parse_condition,
)
from rules.fields import FieldReader, Table, join_path

__all__ = ["read_acquisition", "read_rules"]

_ACQUISITION = ("baseline", "same_scanner", "series", "notes")
_SERIES = ("label", "where", "require", "count", "notes")
_KNOWN = sorted(NUMERIC_ATTRIBUTES | TEXT_ATTRIBUTES)


def read_acquisition(reader: FieldReader, table: Table, path: str) -> Acquisition | None:
    """The exam type's acquisition rules (``table`` is the exam type at ``path``); None when none."""
    if "acquisition" not in table:
        return None
    return read_rules(reader, reader.table(table, "acquisition", path), join_path(path, "acquisition"))


def read_rules(reader: FieldReader, raw: Table, where: str) -> Acquisition:
    """Acquisition rules from their table ``raw``, found at the key path ``where``."""
    reader.check_keys(raw, where, _ACQUISITION, ())
    same_scanner = raw.get("same_scanner", False)
    if not isinstance(same_scanner, bool):
        reader.problem(join_path(where, "same_scanner"), "must be true or false", "write same_scanner = true")
        same_scanner = False
    baseline = reader.text(raw, "baseline", where) or None
    if (same_scanner or _names_baseline(raw)) and baseline is None:
        reader.problem(
            join_path(where, "baseline"),
            "names no baseline timepoint, but a rule compares with the baseline",
            'add baseline = "screening" (the id of the timepoint whose images are the reference)',
        )
    series = _series_rules(reader, raw.get("series", []), join_path(where, "series"))
    if not series and not same_scanner:
        reader.problem(where, "has no rule", "add a [[...acquisition.series]] table or same_scanner = true")
    return Acquisition(series=series, baseline=baseline, same_scanner=same_scanner)


def _series_rules(reader: FieldReader, raw: Any, path: str) -> tuple[SeriesRule, ...]:
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        reader.problem(path, "must be a list of tables", f"write each rule as [[{path}]]")
        return ()
    rules: list[SeriesRule] = []
    for index, table in enumerate(raw):
        where = join_path(path, index)
        reader.check_keys(table, where, _SERIES, ("require",))
        count = reader.integer(table, "count", where, 1)
        if count is not None and count < 1:
            reader.problem(join_path(where, "count"), "must be 1 or more", "write count = 1")
        rules.append(
            SeriesRule(
                label=reader.text(table, "label", where) or f"series rule {index + 1}",
                where=_conditions(reader, table, "where", where),
                require=_conditions(reader, table, "require", where),
                count=max(count or 1, 1),
            )
        )
    return tuple(rules)


def _conditions(reader: FieldReader, table: Table, key: str, path: str) -> tuple[Condition, ...]:
    found: list[Condition] = []
    for attribute, value in reader.table(table, key, path).items():
        at = join_path(join_path(path, key), attribute)
        if attribute not in NUMERIC_ATTRIBUTES and attribute not in TEXT_ATTRIBUTES:
            close = difflib.get_close_matches(attribute, _KNOWN, n=1, cutoff=0.6)
            fix = f'did you mean "{close[0]}"?' if close else "use a DICOM keyword: " + ", ".join(_KNOWN)
            reader.problem(at, f"unknown DICOM attribute {attribute!r}", fix)
            continue
        try:
            condition = parse_condition(attribute, value)
        except ValueError as exc:
            reader.problem(at, f"cannot test {attribute} with {value!r}", str(exc))
            continue
        if key == "where" and condition.test.value == "baseline":
            reader.problem(at, '"baseline" only goes under require', "move it to require")
            continue
        found.append(condition)
    return tuple(found)


def _names_baseline(raw: Table) -> bool:
    rules = raw.get("series", [])
    if not isinstance(rules, list):
        return False
    return any(
        isinstance(value, str) and value.strip().lower() == "baseline"
        for rule in rules
        if isinstance(rule, dict) and isinstance(rule.get("require"), dict)
        for value in rule["require"].values()
    )
