"""Load a protocol TOML file into a :class:`~rules.protocol.Trial`, reporting every problem at once.

``load_protocol(text, source)`` either returns a Trial or raises
:class:`~rules.protocol.ProtocolError` whose ``problems`` list each problem with its key
path (``timepoints[2].window`` is the second ``[[timepoints]]`` table: entries count from 1,
in file order), what is wrong and a plain-language fix. It checks: TOML syntax, unknown keys
(typos, with a suggestion), missing required keys, value types, duration syntax, windows
that end before they start, timepoints naming unknown exams, undeclared anchors or arms,
orderables claimed by two exams, ``anchor = "previous"`` with nothing before it, modality
codes, channel addresses and version dates.

``check_enrolment(trial, ...)`` is the matching check for an enrolment (missing required
anchor dates, anchors or arm the protocol does not know), for the enrolment import.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from datetime import date
from typing import Any

from rules.acquisition import Acquisition
from rules.acquisition_fields import read_acquisition, read_rules
from rules.core_lab_fields import read_core_lab
from rules.durations import DurationError, parse_days
from rules.fields import FieldReader, Table, join_path
from rules.protocol import (
    ANCHOR_OFF_STUDY,
    ANCHOR_PREVIOUS,
    CountFrom,
    ExamType,
    Problem,
    ProtocolError,
    ProtocolVersion,
    Recurrence,
    Routing,
    Timepoint,
    Trial,
    Window,
)
from rules.references import check_references

__all__ = ["check_enrolment", "load_protocol"]

_TOP = ("id", "title", "nct", "irb", "sponsor", "notes", "anchor_is_day", "arms", "match_within", "anchors",
        "exams", "timepoints", "versions", "routing", "core_lab")  # fmt: skip
_TOP_REQUIRED = ("id", "title", "anchor_is_day", "anchors", "exams", "timepoints", "routing")
_EXAM = ("label", "modality", "orderables", "parameters", "preparation", "instructions", "same_scanner_as",
         "acquisition", "notes")  # fmt: skip
_TIMEPOINT = ("id", "label", "exams", "anchor", "offset", "day", "every", "first", "until", "count",
              "count_from", "window", "arms", "acquisition", "notes")  # fmt: skip
_RECURRENCE_ONLY = ("first", "until", "count", "count_from")
_VERSION = ("name", "effective", "exams", "timepoints", "notes")
_ROUTING = ("coordinators", "technologists", "rooms", "lead_times", "contacts")

# DICOM modality codes (PS3.3 C.7.3.1.1.1) plus XR, which scheduling systems use for radiography.
_MODALITIES = frozenset({"CT", "MR", "PT", "NM", "US", "XR", "CR", "DX", "MG", "XA", "RF", "OT"})
_MODALITY_FIXES = {"MRI": "MR", "PET": "PT", "PET/CT": "PT", "PET-CT": "PT", "PETCT": "PT", "SPECT": "NM"}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# The notification channels (notifiers.CHANNELS registers a notifier for each; a test keeps
# the two lists the same): a protocol's typo such as "slak:#ct" is an error, not a lost alert.
CHANNEL_NAMES = ("console", "email", "slack", "webhook")
_ADDRESS = re.compile(r"^[a-z][a-z0-9+.-]*:\S.*$")
_NCT = re.compile(r"^NCT\d{8}$")


def load_protocol(text: str, source: str) -> Trial:
    """Parse and check a protocol file's text; ``source`` names it in messages (a path).

    Raises :class:`ProtocolError` listing every problem found (never only the first).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        fix = "check quotes, brackets and '=' on that line (a TOML editor or linter shows it)"
        raise ProtocolError(source, [Problem("", f"not valid TOML: {error}", fix)]) from None
    reader = _ProtocolReader()
    trial = reader.trial(data)
    if reader.problems or trial is None:
        raise ProtocolError(source, reader.problems)
    return replace(trial, source=source)


def check_enrolment(trial: Trial, anchors: Mapping[str, date], arm: str | None) -> list[str]:
    """Problems with an enrolment's anchor dates and arm for ``trial``, in plain language (empty: fine)."""
    found = [
        f"the anchor date {name!r} is required by {trial.id}"
        for name in trial.required_anchors
        if name not in anchors
    ]
    known = set(trial.anchors)
    found += [f"{trial.id} declares no anchor {name!r}" for name in sorted(anchors) if name not in known]
    if arm is not None and arm not in trial.arms:
        found.append(
            f"{trial.id} has no arm {arm!r}" + (f" (arms: {', '.join(trial.arms)})" if trial.arms else "")
        )
    return found


class _ProtocolReader(FieldReader):
    def trial(self, data: Table) -> Trial | None:
        self.check_keys(data, "", _TOP, _TOP_REQUIRED)
        trial_id = self.text(data, "id", "")
        nct = self.text(data, "nct", "")
        if nct and not _NCT.match(nct):
            self.problem("nct", f"{nct!r} is not a ClinicalTrials.gov number", 'write it like "NCT01234567"')
        anchor_is_day = self.integer(data, "anchor_is_day", "", default=1)
        if anchor_is_day not in (0, 1):
            self.problem(
                "anchor_is_day",
                f"must be 0 or 1, not {data.get('anchor_is_day')!r}",
                "write 1 if the protocol calls the anchor date Day 1 (C1D1 = Day 1), 0 if it is Day 0",
            )
            anchor_is_day = 1
        assert anchor_is_day is not None
        self.anchor_is_day = anchor_is_day
        self.arms = self.text_list(data, "arms", "")
        anchors = self.table(data, "anchors", "")
        self.check_keys(anchors, "anchors", ("required", "events"), ("required",))
        required = self.text_list(anchors, "required", "anchors")
        events = self.text_list(anchors, "events", "anchors")
        for key, names in (("required", required), ("events", events)):
            for index, name in enumerate(names):
                if not _NAME.match(name) or name in (ANCHOR_PREVIOUS, ANCHOR_OFF_STUDY):
                    self.problem(
                        join_path(join_path("anchors", key), index),
                        f"{name!r} cannot be an anchor name",
                        "use lower-case letters, digits and _ (c1d1); previous and off_study are built in",
                    )
        self.anchor_names = {*required, *events, ANCHOR_OFF_STUDY}
        match_within = self.days(data, "match_within", "")
        if match_within is not None and match_within < 0:
            self.problem("match_within", "must not be negative", 'write e.g. match_within = "28d"')
        versions = self.versions(data)
        routing = self.routing(self.table(data, "routing", ""))
        core_lab = read_core_lab(self, data, trial_id, self.text(data, "title", ""))
        if not versions:
            return None
        return Trial(
            id=trial_id,
            title=self.text(data, "title", ""),
            anchor_is_day=anchor_is_day,
            required_anchors=required,
            event_anchors=events,
            versions=tuple(versions),
            routing=routing,
            arms=self.arms,
            match_within=28 if match_within is None else max(match_within, 0),
            nct=nct,
            irb=self.text(data, "irb", ""),
            core_lab=core_lab,
        )

    # -- versions -------------------------------------------------------------------------

    def versions(self, data: Table) -> list[ProtocolVersion]:
        exams = self.exams(data.get("exams", {}), "exams")
        timepoints = self.timepoints(data.get("timepoints", []), "timepoints")
        entries = data.get("versions", [])
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            self.problem(
                "versions", "must be a list of [[versions]] tables", "write each amendment as [[versions]]"
            )
            entries = []
        if not entries:
            check_references(self, exams, timepoints, "initial version", self.arms, self.anchor_names)
            return [_version("initial", None, exams, timepoints)]
        found: list[ProtocolVersion] = []
        checked = False
        previous_date: date | None = None
        # The same broken reference in several versions is one problem naming them all.
        by_reference: dict[tuple[str, str, str], list[str]] = {}
        for index, entry in enumerate(entries):
            path = join_path("versions", index)
            self.check_keys(entry, path, _VERSION, ("name", "effective"))
            name = self.text(entry, "name", path) or f"version {index + 1}"
            effective = self.date(entry, "effective", path)
            if effective is not None and previous_date is not None and effective <= previous_date:
                self.problem(
                    join_path(path, "effective"),
                    f"{effective} is not after the previous version's {previous_date}",
                    "list [[versions]] oldest first, each with a later effective date",
                )
            previous_date = effective or previous_date
            changed = not checked
            if "exams" in entry:
                exams, changed = self.exams(entry["exams"], join_path(path, "exams")), True
            if "timepoints" in entry:
                timepoints, changed = (
                    self.timepoints(entry["timepoints"], join_path(path, "timepoints")),
                    True,
                )
            if changed:
                label, before = f"version {name!r}", len(self.problems)
                check_references(self, exams, timepoints, label, self.arms, self.anchor_names)
                for problem in self.problems[before:]:
                    key = (problem.path, problem.message.replace(label, "\0"), problem.fix)
                    by_reference.setdefault(key, []).append(label)
                del self.problems[before:]
                checked = True
            found.append(_version(name, effective, exams, timepoints))
        for (path, message, fix), labels in by_reference.items():
            self.problem(path, _naming(message, labels), fix)
        return found

    # -- exams ----------------------------------------------------------------------------

    def exams(self, raw: Any, path: str) -> dict[str, tuple[ExamType, str]]:
        if not isinstance(raw, dict) or not raw:
            self.problem(
                path,
                "needs at least one exam type",
                f"add a table [{path}.ct_cap] with modality and orderables",
            )
            return {}
        found: dict[str, tuple[ExamType, str]] = {}
        for exam_id, table in raw.items():
            where = join_path(path, exam_id)
            if not isinstance(table, dict):
                self.problem(where, "must be a table", f"write it as [{where}]")
                continue
            self.check_keys(table, where, _EXAM, ("modality", "orderables"))
            modality = self.text(table, "modality", where).upper()
            if "modality" in table and modality not in _MODALITIES:
                better = _MODALITY_FIXES.get(modality)
                fix = (
                    f'write modality = "{better}"'
                    if better
                    else "use a DICOM modality code: " + ", ".join(sorted(_MODALITIES))
                )
                self.problem(join_path(where, "modality"), f"unknown modality {modality!r}", fix)
            orderables = self.text_list(table, "orderables", where)
            if "orderables" in table and not orderables:
                self.problem(
                    join_path(where, "orderables"), "lists no orderable code", 'add codes: ["IMG1234"]'
                )
            found[exam_id] = (
                ExamType(
                    id=exam_id,
                    label=self.text(table, "label", where, exam_id) or exam_id,
                    modality=modality,
                    orderables=tuple(dict.fromkeys(orderables)),
                    parameters=self.text_list(table, "parameters", where),
                    preparation=self.text_list(table, "preparation", where),
                    instructions=self.text(table, "instructions", where) or None,
                    same_scanner_as=self.text(table, "same_scanner_as", where) or None,
                    acquisition=read_acquisition(self, table, where),
                ),
                where,
            )
        return found

    # -- timepoints -----------------------------------------------------------------------

    def timepoints(self, raw: Any, path: str) -> list[tuple[Timepoint, str]]:
        if not isinstance(raw, list) or not raw or not all(isinstance(item, dict) for item in raw):
            self.problem(
                path,
                "needs at least one [[timepoints]] table",
                f"add [[{path}]] with id, exams, anchor, window",
            )
            return []
        found = []
        for index, table in enumerate(raw):
            timepoint = self.timepoint(table, join_path(path, index))
            if timepoint is not None:
                found.append((timepoint, join_path(path, index)))
        return found

    def timepoint(self, table: Table, path: str) -> Timepoint | None:
        self.check_keys(table, path, _TIMEPOINT, ("id", "exams", "anchor"))
        timepoint_id = self.text(table, "id", path)
        exams = self.text_list(table, "exams", path, allow_single=True)
        if "exams" in table and not exams:
            self.problem(
                join_path(path, "exams"),
                "names no exam",
                'list the exam types that serve it: exams = ["ct_cap"]',
            )
        window = self.window(table, "window", path)
        arms = self.text_list(table, "arms", path, allow_single=True)
        recurrence = self.recurrence(table, path)
        offset = self.days(table, "offset", path) or 0
        if "day" in table:
            day = self.integer(table, "day", path)
            if "offset" in table:
                self.problem(join_path(path, "day"), "both day and offset are given", "keep one of them")
            elif day == 0 and self.anchor_is_day == 1:
                self.problem(
                    join_path(path, "day"),
                    "there is no Day 0 when the anchor is Day 1 (anchor_is_day = 1)",
                    "use day = 1 for the anchor date or day = -1 for the day before",
                )
            elif day is not None:
                offset = day - 1 if self.anchor_is_day == 1 and day > 0 else day
        if recurrence is not None and ("offset" in table or "day" in table):
            key = "offset" if "offset" in table else "day"
            self.problem(
                join_path(path, key),
                f"a repeating timepoint has no {key}",
                'use first = "6w" for the first one',
            )
        default_label = timepoint_id.replace("_", " ").capitalize() + (" {n}" if recurrence else "")
        label = self.label_template(table, "label", path, default_label)
        acquisition = self.timepoint_acquisition(table, path, exams)
        if not timepoint_id or not exams:
            return None
        return Timepoint(
            id=timepoint_id,
            label=label,
            exams=exams,
            anchor=self.text(table, "anchor", path),
            # A bad window is already reported; a stand-in keeps the timepoint so that its
            # exam, anchor and arm references are checked in the same run (every problem at once).
            window=window or Window(0, 0),
            offset=offset,
            recurrence=recurrence,
            arms=arms,
            acquisition=acquisition,
        )

    def timepoint_acquisition(
        self, table: Table, path: str, exams: tuple[str, ...]
    ) -> dict[str, Acquisition]:
        """``[timepoints.acquisition.<exam id>]``: rules that replace the exam type's own at
        this visit (a baseline with a stricter protocol, say), read as the exam type's are."""
        found: dict[str, Acquisition] = {}
        if "acquisition" not in table:
            return found
        where = join_path(path, "acquisition")
        for exam_id, rules in self.table(table, "acquisition", path).items():
            if exam_id not in exams:
                listed = ", ".join(exams) or "none"
                self.problem(
                    join_path(where, exam_id),
                    f"exam {exam_id!r} does not serve this timepoint",
                    f"give rules for one of its exams ({listed})",
                )
                continue
            at = join_path(where, exam_id)
            if not isinstance(rules, dict):
                self.problem(at, "must be a table", f"write it as [{at}]")
                continue
            found[exam_id] = read_rules(self, rules, at)
        return found

    def recurrence(self, table: Table, path: str) -> Recurrence | None:
        if "every" not in table:
            for key in _RECURRENCE_ONLY:
                if key in table:
                    self.problem(
                        join_path(path, key),
                        f"{key} only applies to a repeating timepoint",
                        'add every = "6w"',
                    )
            return None
        every = self.days(table, "every", path)
        if every is not None and every <= 0:
            self.problem(join_path(path, "every"), "must be a positive interval", 'write e.g. every = "6w"')
            every = None
        first = self.days(table, "first", path)
        until_days, until_anchor = None, None
        if "until" in table:
            until = table["until"]
            if isinstance(until, str) and _NAME.match(until.strip()):
                until_anchor = until.strip()
            else:
                try:
                    until_days = parse_days(until)
                except DurationError as error:
                    self.problem(
                        join_path(path, "until"),
                        f"bad until {until!r}: {error.problem}",
                        'write a duration from the anchor ("48w") or an anchor name ("progression")',
                    )
        count = self.integer(table, "count", path)
        if count is not None and count <= 0:
            self.problem(join_path(path, "count"), "must be at least 1", "write e.g. count = 4")
        count_text = self.text(table, "count_from", path, CountFrom.ANCHOR)
        if count_text not in tuple(CountFrom):
            self.problem(
                join_path(path, "count_from"),
                f"unknown count_from {count_text!r}",
                'write "anchor" (fixed schedule, the default) or "previous_exam" (each from the last scan)',
            )
            count_text = CountFrom.ANCHOR
        if every is None:
            return None
        start = every if first is None else first
        if until_days is not None and until_days < start:
            self.problem(
                join_path(path, "until"), "ends before the first occurrence", "make until later than first"
            )
        return Recurrence(every, start, until_days, until_anchor, count, CountFrom(count_text))

    # -- routing --------------------------------------------------------------------------

    def routing(self, table: Table) -> Routing:
        self.check_keys(table, "routing", _ROUTING, ("coordinators",))
        coordinators = self.addresses(table, "coordinators", "routing")
        by_modality: dict[str, tuple[str, ...]] = {}
        technologists = self.table(table, "technologists", "routing")
        for modality, _ in technologists.items():
            if modality.upper() not in _MODALITIES:
                self.problem(join_path("routing.technologists", modality), f"unknown modality {modality!r}",
                             'key technologists by modality code: CT = "slack:#ct-techs"')  # fmt: skip
            by_modality[modality.upper()] = self.addresses(technologists, modality, "routing.technologists")
        rooms_table = self.table(table, "rooms", "routing")
        rooms = {
            room.strip().upper(): self.addresses(rooms_table, room, "routing.rooms") for room in rooms_table
        }
        lead_times = self.table(table, "lead_times", "routing")
        self.check_keys(lead_times, "routing.lead_times", ("coordinator", "technologist"), ())
        return Routing(
            coordinators=coordinators,
            technologists=by_modality,
            rooms=rooms,
            coordinator_lead_times=self.lead_times(lead_times, "coordinator", "routing.lead_times"),
            technologist_lead_times=self.lead_times(lead_times, "technologist", "routing.lead_times"),
            contacts=self.contacts(table),
        )

    def contacts(self, table: Table) -> tuple[str, ...]:
        lines = self.text_list(table, "contacts", "routing", allow_single=True)
        for index, line in enumerate(lines):
            if not line or len(line) > 200:
                self.problem(
                    join_path("routing.contacts", index),
                    "a contact line must have 1 to 200 characters",
                    'write one person or desk a line: "Dana Lee, ONC-2101 coordinator: 555-0100"',
                )
        return lines

    def addresses(self, table: Table, key: str, path: str) -> tuple[str, ...]:
        addresses = self.text_list(table, key, path, allow_single=True)
        for index, address in enumerate(addresses):
            where = join_path(join_path(path, key), index)
            channel = address.partition(":")[0].strip().lower()
            if not _ADDRESS.match(address):
                self.problem(
                    where,
                    f"{address!r} is not a channel address",
                    'write the channel first: "email:team@example.org", "slack:#ct-techs"',
                )
            elif channel not in CHANNEL_NAMES:
                close = difflib.get_close_matches(channel, CHANNEL_NAMES, n=1, cutoff=0.5)
                known = ", ".join(CHANNEL_NAMES)
                fix = f'did you mean "{close[0]}:"?' if close else f"the channels are {known}"
                self.problem(where, f"{address!r} names no channel this project has ({channel!r})", fix)
        return addresses


def _version(
    name: str,
    effective: date | None,
    exams: dict[str, tuple[ExamType, str]],
    timepoints: list[tuple[Timepoint, str]],
) -> ProtocolVersion:
    by_id = {exam_id: exam for exam_id, (exam, _) in exams.items()}
    orderable_exam: dict[str, ExamType] = {}
    for exam in by_id.values():
        for code in exam.orderables:
            orderable_exam.setdefault(code, exam)
    return ProtocolVersion(name, effective, by_id, tuple(t for t, _ in timepoints), orderable_exam)


def _naming(message: str, labels: list[str]) -> str:
    """``message`` (with ``\0`` where a version's name goes) for the versions ``labels``
    ("version 'A'"): one names it, several are named together."""
    if len(labels) == 1:
        return message.replace("\0", labels[0])
    names = [label.removeprefix("version ") for label in labels]
    together = "versions " + ", ".join(names[:-1]) + " and " + names[-1]
    return message.replace("\0 does not", f"{together} do not").replace("\0", together)
