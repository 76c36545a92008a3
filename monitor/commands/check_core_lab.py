"""``check-config`` for the trials that send images to a core lab (:mod:`monitor.commands.check`).

For each trial in force with a ``[core_lab]``:

- a destination the project sends to (a DICOM node, a STOW-RS endpoint) needs the PACS and
  its ``[pacs] orthanc_url`` (a note without: uploads by hand can still be recorded), which
  must answer (``GET /system``, no patient's data);
- ``dates = "shift"`` needs ``HIRO_DATE_SHIFT_KEY`` (or ``_FILE``);
- the transmittal form (the trial's or the default) renders with a synthetic context.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import jinja2
import requests

from monitor.config import Settings, secret
from monitor.render import Renderer
from rules.protocol import Trial

if TYPE_CHECKING:
    from monitor.commands.check import Report

__all__ = ["check_core_labs"]


def check_core_labs(settings: Settings, trials: Iterable[Trial], report: Report) -> None:
    labs = [trial for trial in trials if trial.core_lab is not None]
    if not labs:
        return
    sending = [
        trial.id
        for trial in labs
        if trial.core_lab is not None and trial.core_lab.destination.kind != "manual"
    ]
    pacs = settings.pacs
    if sending and (not pacs.enabled or not pacs.orthanc_url):
        report.notes.append(
            f"core lab: {', '.join(sending)} send images to a core lab, but [pacs] is not enabled with an "
            "orthanc_url: no copy can be made here; until it is, record the uploads done by hand"
        )
    elif sending:
        _ping_orthanc(settings, report)
    shifting = [trial.id for trial in labs if trial.core_lab is not None and trial.core_lab.dates == "shift"]
    if shifting and not secret("HIRO_DATE_SHIFT_KEY"):
        report.problems.append(
            f"core lab: {', '.join(shifting)} shift dates, but HIRO_DATE_SHIFT_KEY is not set "
            "(keep it: a new key gives every subject new offsets)"
        )
    renderer = Renderer.from_settings(settings)
    for trial in labs:
        assert trial.core_lab is not None
        name = f"transmittal/{trial.core_lab.form or 'default.html'}"
        try:
            renderer.render(name, _sample(trial))
        except jinja2.TemplateError as exc:
            report.problems.append(
                f"core lab: {trial.id}'s transmittal form {name}: {type(exc).__name__}: {exc}"
            )
        else:
            report.ok.append(f"core lab: {trial.id}'s transmittal form {name} renders")


def _ping_orthanc(settings: Settings, report: Report) -> None:
    from monitor.pacs.reader import pacs_session  # HTTP client only when the PACS is on

    pacs = settings.pacs
    url = pacs.orthanc_url.rstrip("/")
    try:
        with pacs_session(pacs) as session:
            answer = session.get(f"{url}/system", timeout=pacs.request_timeout_seconds)
    except requests.RequestException as exc:
        report.problems.append(f"core lab: Orthanc at {url} cannot be reached ({type(exc).__name__})")
        return
    if not answer.ok:
        report.problems.append(f"core lab: Orthanc at {url} answered HTTP {answer.status_code}")
        return
    try:
        version = str(answer.json().get("Version", "?"))
    except ValueError:
        report.problems.append(f"core lab: {url} answered what is not Orthanc's REST API")
        return
    report.ok.append(f"core lab: Orthanc {version} at {url} answers (copies are made and sent there)")


def _sample(trial: Trial) -> dict[str, Any]:
    assert trial.core_lab is not None
    labels = trial.core_lab.labels
    return {
        "labels": {"sponsor": labels.sponsor, "protocol_id": labels.protocol_id,
                   "site_name": labels.site_name, "protocol_name": labels.protocol_name,
                   "site_id": labels.site_id},
        "subject": "TEST-001", "timepoint": "test", "timepoint_label": "Test visit", "modality": "CT",
        "procedure": "TEST EXAM", "scan_date": "2026-01-01", "scanner": "TEST SCANNER", "images": 1,
        "series": [{"number": 1, "modality": "CT", "instances": 1, "slice_thickness": "2.5", "kvp": "120",
                    "contrast": ""}],
        "destination": trial.core_lab.destination.words(), "entered": {}, "editable": True,
    }  # fmt: skip
