"""De-identified copies for a trial's core lab, made and sent by the PACS (Orthanc's REST API).

For one study: Orthanc anonymizes it (the DICOM PS3.15 basic profile, the trial's dates
option and kept attributes) and writes the subject id and the Clinical Trial attributes
(group 0012); the copy is read back, instance by instance, and checked
(:mod:`monitor.pacs.deidentified`); only a copy that passes is sent, by the PACS, to the
core lab: C-STORE to a DICOM node, or STOW-RS to a DICOMweb endpoint. The copy is then
deleted from the PACS (the core lab has it; a new one is made for a resend). No pixel data
passes through this process, only headers.

Errors are :class:`~monitor.pacs.reader.PacsError`, their messages name the step and the
HTTP status, never a URL's query or a header value.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests

from monitor.config import PacsSettings
from monitor.pacs.deidentified import CopyLabels, copy_problems, date_replacements, identity_of
from monitor.pacs.reader import PacsError, pacs_session
from rules.core_lab import CoreLab, Destination

__all__ = ["CopyOutcome", "OrthancCopier", "orthanc_copier"]

log = logging.getLogger("monitor.pacs.core_lab")

# The Orthanc 1.10 profile name (PS3.15 2021b); the basic profile, private tags removed.
PROFILE = "2021b"


@dataclass(frozen=True, slots=True)
class CopyOutcome:
    """What became of one study's copy: its UID and size, why it was refused, whether it was sent."""

    study_uid: str
    copy_uid: str
    instances: int
    problems: tuple[str, ...] = ()
    sent: bool = False

    @property
    def refused(self) -> bool:
        return bool(self.problems)


class OrthancCopier:
    """Makes, checks and sends copies through one Orthanc (``url``: its REST API root)."""

    def __init__(self, url: str, session: requests.Session, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self.timeout = timeout

    def copy_and_send(
        self,
        study_uid: str,
        labels: CopyLabels,
        core_lab: CoreLab,
        *,
        more_ids: Sequence[str] = (),
        shift_days: int = 0,
    ) -> CopyOutcome:
        """Copy the study ``study_uid``, check the copy and, when it passes and the destination
        is a node or an endpoint, send it. ``more_ids``: the patient's ids the feed knows;
        ``shift_days``: the subject's date offset, with ``dates = "shift"``."""
        source = self._find(study_uid)
        sources = self._one_per_series(source)
        identity = identity_of(sources, more_ids)
        moved, originals, varying = date_replacements(sources, shift_days)
        if core_lab.dates == "shift" and varying:
            problem = f"{varying} varies within the study: its dates cannot be shifted as one"
            return CopyOutcome(study_uid, "", 0, (problem,))
        copy = self._anonymize(source, labels, core_lab, moved if core_lab.dates == "shift" else {})
        try:
            headers = [self._call("get", f"/instances/{i}/tags?simplify") for i in self._instances(copy)]
            copy_uid = str(self._call("get", f"/studies/{copy}")["MainDicomTags"].get("StudyInstanceUID", ""))
            problems = copy_problems(
                identity,
                headers,
                labels,
                dates=core_lab.dates,
                kept=core_lab.keep,
                shifted_to=moved,
                source_dates=originals,
            )
            outcome = CopyOutcome(study_uid, copy_uid, len(headers), tuple(problems))
            if problems or core_lab.destination.kind == "manual":
                return outcome
            self._send(copy, core_lab.destination, labels.trial.protocol_id)
            return CopyOutcome(study_uid, copy_uid, len(headers), sent=True)
        finally:
            self._delete(copy)

    # -- steps ------------------------------------------------------------------------

    def _find(self, study_uid: str) -> str:
        found = self._call("post", "/tools/lookup", data=study_uid)
        for item in found if isinstance(found, list) else []:
            if isinstance(item, Mapping) and item.get("Type") == "Study":
                return str(item["ID"])
        raise PacsError("the study is not in the PACS (any more)")

    def _instances(self, study: str) -> list[str]:
        return [str(item["ID"]) for item in self._call("get", f"/studies/{study}/instances")]

    def _one_per_series(self, study: str) -> list[Mapping[str, object]]:
        headers = []
        for series in self._call("get", f"/studies/{study}/series"):
            instances = series.get("Instances") or []
            if instances:
                headers.append(self._call("get", f"/instances/{instances[0]}/tags?simplify"))
        return headers

    def _anonymize(self, study: str, labels: CopyLabels, core_lab: CoreLab, dates: Mapping[str, str]) -> str:
        replace = {"PatientName": labels.subject, "PatientID": labels.subject, **labels.group_0012(), **dates}
        keep = list(core_lab.keep)
        if core_lab.dates == "keep":
            keep += ["StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"]
        body = {
            "Replace": replace,
            "Keep": sorted(set(keep)),
            "KeepPrivateTags": False,
            "DicomVersion": PROFILE,
            "Force": True,  # PatientID is replaced on purpose
            "Synchronous": True,
        }
        answer = self._call("post", f"/studies/{study}/anonymize", json=body)
        if answer.get("FailedInstancesCount"):
            raise PacsError(f"the PACS failed to copy {answer['FailedInstancesCount']} image(s)")
        return str(answer["ID"])

    def _send(self, copy: str, destination: Destination, trial: str) -> None:
        name = "hiro-corelab-" + re.sub(r"[^a-z0-9]+", "-", trial.lower()).strip("-")
        if destination.kind == "dicom":
            node = {"AET": destination.ae_title, "Host": destination.host, "Port": destination.port}
            self._call("put", f"/modalities/{name}", json=node)
            answer = self._call(
                "post", f"/modalities/{name}/store", json={"Resources": [copy], "Synchronous": True}
            )
        else:
            self._call("put", f"/dicom-web/servers/{name}", json={"Url": destination.url})
            answer = self._call(
                "post", f"/dicom-web/servers/{name}/stow", json={"Resources": [copy], "Synchronous": True}
            )
        failed = answer.get("FailedInstancesCount", 0) if isinstance(answer, Mapping) else 0
        if failed:
            raise PacsError(f"the core lab refused {failed} image(s)")

    def _delete(self, copy: str) -> None:
        try:
            self._call("delete", f"/studies/{copy}")
        except PacsError as error:  # left in the PACS: de-identified, and listed by its subject id
            log.warning("could not delete a core-lab copy from the PACS: %s", error)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        step = path.split("?")[0].rsplit("/", 1)[-1] or path
        try:
            response = self.session.request(method.upper(), self.url + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as error:
            raise PacsError(f"the PACS did not answer ({type(error).__name__}) at {step}") from None
        if not response.ok:
            raise PacsError(f"the PACS answered HTTP {response.status_code} at {step}")
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise PacsError(f"the PACS answered what is not JSON at {step}") from None


def orthanc_copier(settings: PacsSettings, environ: Mapping[str, str] | None = None) -> OrthancCopier:
    """The copier of ``settings.orthanc_url`` with the PACS's credentials and TLS trust."""
    if not settings.orthanc_url:
        raise PacsError("no de-identified copy can be made: [pacs] orthanc_url is not set")
    return OrthancCopier(settings.orthanc_url, pacs_session(settings, environ), settings.copy_timeout_seconds)
