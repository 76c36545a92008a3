"""Reading ``[core_lab]`` out of a protocol file (see :mod:`rules.core_lab`); every problem
is reported with its key path, as for the rest of the file."""

from __future__ import annotations

import difflib
from datetime import timedelta
from typing import Any, Literal, cast

from pydicom.datadict import keyword_dict

from rules.core_lab import CoreLab, Deadline, Destination, SubjectLabels, is_dicom_keyword
from rules.durations import DurationError, parse_duration
from rules.fields import FieldReader, Table, join_path

__all__ = ["read_core_lab"]

_CORE_LAB = ("deadline", "remind_before", "sponsor", "protocol_name", "site_id", "site_name", "dates",
             "keep", "destination", "form", "query_reminder", "shift_up_to", "notes")  # fmt: skip
_DESTINATION = {
    "dicom": ("kind", "ae_title", "host", "port"),
    "dicomweb": ("kind", "url"),
    "manual": ("kind",),
}
# What the copy must never keep, whatever the trial says: the patient and the hospital.
_NEVER_KEPT = frozenset({
    "PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs", "OtherPatientIDsSequence",
    "OtherPatientNames", "PatientAddress", "AccessionNumber", "InstitutionName", "InstitutionAddress",
    "ReferringPhysicianName", "PatientTelephoneNumbers", "IssuerOfPatientID", "PatientMotherBirthName",
})  # fmt: skip


def read_core_lab(reader: FieldReader, data: Table, trial_id: str, title: str) -> CoreLab | None:
    """The trial's ``[core_lab]`` (None when it has none, or it has problems)."""
    if "core_lab" not in data:
        return None
    path = "core_lab"
    table = reader.table(data, "core_lab", "")
    before = len(reader.problems)
    reader.check_keys(table, path, _CORE_LAB, ("deadline", "destination", "sponsor", "site_id"))
    deadline = _deadline(reader, table, path)
    remind = _remind_before(reader, table, path)
    destination = _destination(reader, table, path)
    dates = reader.text(table, "dates", path, "keep")
    if dates not in ("keep", "remove", "shift"):
        fix = 'write dates = "keep" (the core lab needs the scan dates), "remove" or "shift"'
        reader.problem(join_path(path, "dates"), f"{dates!r} is not keep, remove or shift", fix)
    shift_up_to = reader.days(table, "shift_up_to", path)
    if dates == "shift" and (shift_up_to is None or shift_up_to < 1):
        fix = 'write shift_up_to = "365d": each subject gets its own offset, 1 to 365 days back'
        reader.problem(
            join_path(path, "shift_up_to"), 'dates = "shift" needs how far back, 1 day or more', fix
        )
    keep = reader.text_list(table, "keep", path)
    for index, name in enumerate(keep):
        _check_kept(reader, join_path(join_path(path, "keep"), index), name)
    labels = SubjectLabels(
        sponsor=reader.text(table, "sponsor", path),
        protocol_id=trial_id,
        protocol_name=reader.text(table, "protocol_name", path, title)[:64],
        site_id=reader.text(table, "site_id", path),
        site_name=reader.text(table, "site_name", path),
    )
    for key in ("sponsor", "site_id"):
        if key in table and not getattr(labels, key):
            reader.problem(
                join_path(path, key), "must not be empty", f'write {key} = "..." as the sponsor names it'
            )
    form = reader.text(table, "form", path)
    query_reminder = reader.days(table, "query_reminder", path)
    if query_reminder is not None and query_reminder < 0:
        reader.problem(
            join_path(path, "query_reminder"), "must not be negative", 'write e.g. query_reminder = "2d"'
        )
    if len(reader.problems) > before or deadline is None or destination is None:
        return None
    return CoreLab(
        deadline=deadline,
        destination=destination,
        labels=labels,
        dates=cast(Literal["keep", "remove", "shift"], dates),
        shift_up_to=shift_up_to or 0,
        keep=keep,
        remind_before=remind,
        form=form,
        query_reminder_days=2 if query_reminder is None else query_reminder,
    )


def _deadline(reader: FieldReader, table: Table, path: str) -> Deadline | None:
    text = reader.text(table, "deadline", path)
    if "deadline" not in table:
        return None
    try:
        return Deadline.parse(text)
    except ValueError as error:
        reader.problem(join_path(path, "deadline"), f"bad deadline {text!r}", str(error))
        return None


def _remind_before(reader: FieldReader, table: Table, path: str) -> timedelta:
    if "remind_before" not in table:
        return timedelta(hours=12)
    try:
        delta = parse_duration(table["remind_before"])
    except DurationError as error:
        reader.problem(join_path(path, "remind_before"), f"bad duration: {error.problem}", error.fix)
        return timedelta(hours=12)
    if delta <= timedelta(0):
        reader.problem(
            join_path(path, "remind_before"), "must be positive", 'write e.g. remind_before = "12h"'
        )
    return delta


def _destination(reader: FieldReader, table: Table, path: str) -> Destination | None:
    where = join_path(path, "destination")
    raw: Any = table.get("destination")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        reader.problem(
            where,
            "must be a table",
            'write destination = { kind = "dicom", ae_title = ..., host = ..., port = ... }',
        )
        return None
    kind = reader.text(raw, "kind", where)
    if kind not in _DESTINATION:
        reader.problem(join_path(where, "kind"), f"{kind!r} is not a destination kind",
                       'write kind = "dicom", "dicomweb" or "manual"')  # fmt: skip
        return None
    allowed = _DESTINATION[kind]
    reader.check_keys(raw, where, allowed, allowed)
    if kind == "dicom":
        ae_title = reader.text(raw, "ae_title", where)
        port = reader.integer(raw, "port", where, default=0) or 0
        if not 1 <= len(ae_title) <= 16 or "\\" in ae_title:
            reader.problem(join_path(where, "ae_title"), "an AE title has 1 to 16 characters, no backslash",
                           "write the core lab's AE title as they gave it")  # fmt: skip
        if not 1 <= port <= 65535:
            reader.problem(
                join_path(where, "port"), "must be a port number 1 to 65535", "write e.g. port = 11112"
            )
        return Destination("dicom", ae_title=ae_title, host=reader.text(raw, "host", where), port=port)
    if kind == "dicomweb":
        url = reader.text(raw, "url", where)
        if not url.startswith(("https://", "http://")):
            fix = 'write the STOW-RS base, e.g. "https://corelab.example.org/dicom-web"'
            reader.problem(join_path(where, "url"), "must be an http(s) URL", fix)
        return Destination("dicomweb", url=url)
    return Destination("manual")


def _check_kept(reader: FieldReader, where: str, name: str) -> None:
    if not is_dicom_keyword(name) or name not in keyword_dict:
        close = difflib.get_close_matches(name, list(keyword_dict), n=1, cutoff=0.8)
        fix = f'did you mean "{close[0]}"?' if close else "write a DICOM keyword, e.g. SeriesDescription"
        reader.problem(where, f"{name!r} is not a DICOM attribute keyword", fix)
    elif name in _NEVER_KEPT:
        reader.problem(where, f"{name} identifies the patient or the hospital and is never kept",
                       "remove it: the subject id replaces the patient's identity")  # fmt: skip
