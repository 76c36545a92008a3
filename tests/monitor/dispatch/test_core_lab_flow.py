"""To the core lab, against two live Orthancs (the hospital's PACS and a core lab's node):
booking -> images arrive -> the submission is due -> the PACS makes the de-identified copy ->
the copy is checked -> the PACS sends it -> submitted, audited. A copy that still names the
patient is refused and nothing leaves.

The core lab's copy is read back from the core lab's own Orthanc: no value of any header of
any image may hold the source study's PHI.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from monitor.dispatch.core_lab import CoreLabError, record_upload, send_copy, track_due
from monitor.dispatch.pacs_poll import poll_and_evaluate
from monitor.pacs.orthanc import OrthancServer
from monitor.pacs.synthetic import StudySpec, ct_study, datasets
from monitor.store.images import images_for
from monitor.store.registry import store_protocol
from monitor.store.schema import audit_log, findings
from monitor.store.submissions import submission_for
from rules import load_protocol
from rules.core_lab import subject_shift
from tests.monitor.dispatch.office import ONC, Office, assert_no_phi
from tests.monitor.hl7_messages import siu
from tests.monitor.trial_setup import EXAMPLES, cli
from tests.notifiers.slack_server import SlackServer
from tests.notifiers.smtp_server import SmtpServer

SCANNED = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)  # Tue 10:00 New York
DUE = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)  # 2 business days later, 10:00 New York
EXAMPLE_DESTINATION = (
    'destination = { kind = "dicom", ae_title = "CORELAB", host = "corelab.example.org", port = 11112 }'
)
# The source study's identity: none of it may reach the core lab.
NAME, MRN, ACCESSION, BIRTH, INSTITUTION = (
    "DOE^JANE",
    "E10001",
    "ACC7310042",
    "19570314",
    "ST ELSEWHERE MEDICAL CENTER",
)
PHI_WORDS = ("DOE", "JANE", MRN, "99887766", ACCESSION, INSTITUTION)


def _study(description: str = "CT CHEST ABDOMEN PELVIS") -> StudySpec:
    spec = ct_study(patient_id=MRN, accession=ACCESSION, study_date=date(2026, 12, 1), study_time="094500")
    return dataclasses.replace(
        spec,
        patient_name=NAME,
        birth_date=date(1957, 3, 14),
        institution=INSTITUTION,
        study_description=description,
    )


@pytest.fixture
def office(database_url: str, slack: SlackServer, smtp: SmtpServer, pacs: OrthancServer) -> Iterator[Office]:
    found = Office(
        database_url,
        slack,
        smtp,
        pacs={"enabled": True, "dicomweb_url": pacs.dicomweb_url, "orthanc_url": pacs.url},
    )
    yield found
    found.close()


def _core_lab_at(office: Office, destination: str) -> None:
    """ONC-2101's protocol with its core lab at ``destination`` (the example names a real-looking host)."""
    path = EXAMPLES / "trials" / "onc-2101-recist-ct.toml"
    text = path.read_text(encoding="utf-8")
    assert EXAMPLE_DESTINATION in text
    text = text.replace(EXAMPLE_DESTINATION, destination)
    with office.engine.begin() as conn:
        store_protocol(conn, load_protocol(text, path.name), text, path.name, office.clock())


def _scan_arrives(office: Office, pacs: OrthancServer, study: StudySpec) -> None:
    office.feed(siu(mrn=MRN))  # ONC-2101 subject 2101-001's CT, booked for Tue 1 Dec 09:30
    office.clock.now = SCANNED
    pacs.store(datasets(study))
    result = poll_and_evaluate(office.engine, office.settings, office.evaluator, clock=office.clock)
    assert (result.ok, result.matched) == (True, 1)


def _headers(node: OrthancServer) -> list[dict[str, Any]]:
    """Every header of every image the node holds (Orthanc's full JSON, sequences included)."""
    found = []
    for instance in node.session.get(f"{node.url}/instances", timeout=30).json():
        found.append(node.session.get(f"{node.url}/instances/{instance}/tags", timeout=30).json())
    return found


def _values(tags: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for tag in tags.values():
        name, value = tag.get("Name", ""), tag.get("Value")
        if isinstance(value, str):
            yield name, value
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    yield from _values(item)


def _core_lab_findings(office: Office) -> list[tuple[str, str, str]]:
    with office.engine.connect() as conn:
        rows = conn.execute(
            select(findings.c.kind, findings.c.status, findings.c.detail)
            .where(findings.c.kind.like("core_lab%"))
            .order_by(findings.c.id)
        )
        return [(row.kind, row.status, row.detail) for row in rows]


def _audit(office: Office) -> list[tuple[str, str, str]]:
    with office.engine.connect() as conn:
        rows = conn.execute(
            select(audit_log).where(audit_log.c.action.like("core_lab%")).order_by(audit_log.c.id)
        )
        return [(row.action, row.object_id, row.detail) for row in rows]


@pytest.mark.parametrize("protocol", ["dicom", "dicomweb"])
def test_images_go_to_the_core_lab_de_identified_and_labelled_and_nothing_identifying_leaves(
    office: Office,
    pacs: OrthancServer,
    core_lab: OrthancServer,
    protocol: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if protocol == "dicom":
        node = f'ae_title = "CORELAB", host = "127.0.0.1", port = {core_lab.dicom_port}'
        destination = f'destination = {{ kind = "dicom", {node} }}'
    else:
        destination = f'destination = {{ kind = "dicomweb", url = "{core_lab.dicomweb_url}" }}'
    _core_lab_at(office, destination)
    _scan_arrives(office, pacs, _study())

    # The poll read what the transmittal form shows of each series, beyond the rules' attributes.
    with office.engine.connect() as conn:
        study = images_for(conn, [1])[1]
    portal = next(series for series in study.series if series.number == 2)
    assert portal.values["Manufacturer"] == (("SYNTHETIC",),) and portal.values["SliceThickness"]
    # The poll that matched the images opened the submission; opening again finds nothing new.
    assert track_due(office.engine, office.settings, office.clock()) == []
    with office.engine.connect() as conn:
        due = submission_for(conn, 1)
    assert due is not None
    assert (due.trial, due.subject, due.timepoint, due.status, due.due_at) == (
        "ONC-2101", "2101-001", "extended_restaging", "due", DUE
    )  # fmt: skip
    code, out, _ = cli(capsys, office.settings.database.url, "corelab", "list", clock=office.clock)
    header = next(line for line in out.splitlines() if line.split()[:1] == ["exam"])
    assert header.split() == ["exam", "state", "trial", "subject", "visit", "due", "to"]
    row = out.splitlines()[out.splitlines().index(header) + 2].split()
    assert code == 0 and row[:4] == ["1", "due", "ONC-2101", "2101-001"]
    assert not any(word.lower() in out.lower() for word in PHI_WORDS)
    code, out, _ = cli(capsys, office.settings.database.url, "corelab", "list", "--json", clock=office.clock)
    [listed] = json.loads(out)
    assert (listed["exam_id"], listed["state"], listed["subject"]) == (1, "due", "2101-001")

    result = send_copy(office.engine, office.settings, 1, by="cli:coordinator", clock=office.clock)

    assert result.status == "submitted", result
    source_images = len(list(datasets(_study())))
    sent = _headers(core_lab)
    assert len(sent) == source_images
    for tags in sent:
        by_name = {tag["Name"]: tag.get("Value") for tag in tags.values()}
        assert by_name["PatientName"] == by_name["PatientID"] == "2101-001"
        assert by_name["ClinicalTrialProtocolID"] == "ONC-2101"
        assert by_name["ClinicalTrialSiteID"] == "101"
        assert by_name["ClinicalTrialTimePointID"] == "extended_restaging"
        assert by_name["ClinicalTrialSponsorName"] == "Example Oncology Inc."
        assert by_name["StudyDate"] == "20261201"  # the trial keeps the dates
        for name, value in _values(tags):
            for word in PHI_WORDS:
                assert word.upper() not in value.upper(), f"{name} holds source PHI"
            if not name.endswith("UID"):
                assert BIRTH not in value, f"{name} holds the birth date"
    # The copy does not stay in the hospital's PACS: only the source study is left.
    assert len(pacs.session.get(f"{pacs.url}/studies", timeout=30).json()) == 1
    with office.engine.connect() as conn:
        done = submission_for(conn, 1)
    assert done is not None
    assert (done.status, done.submitted_by, done.submitted_at, done.instances) == (
        "submitted", "cli:coordinator", SCANNED, source_images
    )  # fmt: skip
    [(action, exam, detail)] = _audit(office)
    assert (action, exam) == ("core_lab_copy_submitted", "1")
    assert f"{source_images} images" in detail
    with pytest.raises(CoreLabError, match="submitted already"):
        send_copy(office.engine, office.settings, 1, by="cli:coordinator", clock=office.clock)
    office.evaluator.evaluate_all(DUE + timedelta(days=1))  # past the deadline: submitted, nothing to say
    assert _core_lab_findings(office) == []


def test_a_copy_that_still_names_the_patient_is_refused_and_nothing_is_sent(
    office: Office, pacs: OrthancServer, core_lab: OrthancServer
) -> None:
    # ONC-2101 keeps StudyDescription; here the scanner's operator typed the name into it.
    _core_lab_at(office, f'destination = {{ kind = "dicomweb", url = "{core_lab.dicomweb_url}" }}')
    _scan_arrives(office, pacs, _study(description="CT CAP for Jane Doe"))

    result = send_copy(
        office.engine,
        office.settings,
        1,
        by="cli:coordinator",
        clock=office.clock,
        evaluator=office.evaluator,
    )

    assert result.status == "refused"
    assert result.problems == ("StudyDescription holds the patient's name (42 of 42 images)",)
    assert core_lab.session.get(f"{core_lab.url}/studies", timeout=30).json() == []
    assert len(pacs.session.get(f"{pacs.url}/studies", timeout=30).json()) == 1  # the copy is gone too
    with office.engine.connect() as conn:
        refused = submission_for(conn, 1)
    assert refused is not None
    assert (refused.status, refused.problems, refused.submitted_at) == ("refused", result.problems, None)
    assert refused.state(DUE.replace(hour=16)) == "overdue"
    [(action, _, detail)] = _audit(office)
    assert action == "core_lab_copy_refused" and "StudyDescription holds the patient's name" in detail
    assert "jane" not in detail.lower() and "doe" not in detail.lower().split()
    # The office hears at once, in the coordinators' channels, without the patient's name.
    [(kind, status, line)] = _core_lab_findings(office)
    assert (kind, status) == ("core_lab_refused", "open")
    assert "StudyDescription holds the patient's name" in line and "Thu 03 Dec 10:00 EST" in line
    alerts = office.rows(finding_kind="core_lab_refused")
    assert {row.address for row in alerts} == {"email:onc2101-team@example.org", "slack:#onc-2101-imaging"}
    office.dispatch()
    text = str(office.slack.fake.messages[ONC][-1])
    assert "refused" in text
    assert_no_phi(text)
    assert "jane" not in text.lower()


def test_a_manual_upload_is_recorded_with_the_sponsors_confirmation(
    office: Office, pacs: OrthancServer
) -> None:
    _core_lab_at(office, 'destination = { kind = "manual" }')
    _scan_arrives(office, pacs, _study())

    with pytest.raises(CoreLabError, match="manual uploads"):
        send_copy(office.engine, office.settings, 1, by="cli:coordinator", clock=office.clock)
    # Nothing to say until the trial's reminder (12 h before the deadline); then "due within
    # 12 h"; from the deadline, overdue. Each pair is a sweep that judges everyone, then one
    # within full_sweep_hours (1) that judges only what changed or ran out: the judgement of
    # the first ends at the reminder, and at the deadline.
    reminder = DUE - timedelta(hours=12)
    office.evaluator.evaluate_all(reminder - timedelta(minutes=30))
    assert _core_lab_findings(office) == []
    assert office.evaluator.evaluate_all(reminder + timedelta(minutes=5)).up_to_date > 0
    [(kind, status, line)] = _core_lab_findings(office)
    assert (kind, status) == ("core_lab_due", "open")
    assert "due at the core lab (manual upload to the sponsor's portal) within 12 h, by Thu 03 Dec" in line
    office.evaluator.evaluate_all(DUE - timedelta(minutes=30))
    assert office.evaluator.evaluate_all(DUE + timedelta(minutes=1)).up_to_date > 0
    assert [(k, s) for k, s, _ in _core_lab_findings(office)] == [
        ("core_lab_due", "resolved"),
        ("core_lab_overdue", "open"),
    ]
    assert {row.address for row in office.rows(finding_kind="core_lab_overdue")} == {
        "email:onc2101-team@example.org",
        "slack:#onc-2101-imaging",
    }

    office.clock.now = DUE + timedelta(hours=2)
    record_upload(office.engine, 1, "SPN-0042", by="web:dana", now=office.clock(), evaluator=office.evaluator)

    with office.engine.connect() as conn:
        done = submission_for(conn, 1)
    assert done is not None
    assert (done.status, done.confirmation, done.submitted_by) == ("submitted", "SPN-0042", "web:dana")
    assert _audit(office) == [("core_lab_submitted", "1", "confirmation SPN-0042")]
    assert [(k, s) for k, s, _ in _core_lab_findings(office)] == [
        ("core_lab_due", "resolved"),
        ("core_lab_overdue", "resolved"),
    ]


def test_a_trial_that_shifts_dates_gets_the_subjects_offset_and_no_source_date(
    office: Office, pacs: OrthancServer, core_lab: OrthancServer
) -> None:
    destination = f'destination = {{ kind = "dicomweb", url = "{core_lab.dicomweb_url}" }}'
    with office.engine.begin() as conn:  # the example keeps dates: this version shifts them
        path = EXAMPLES / "trials" / "onc-2101-recist-ct.toml"
        text = path.read_text(encoding="utf-8").replace(EXAMPLE_DESTINATION, destination)
        text = text.replace('dates = "keep"', 'dates = "shift"\nshift_up_to = "90d"')
        store_protocol(conn, load_protocol(text, path.name), text, path.name, office.clock())
    _scan_arrives(office, pacs, _study())

    with pytest.raises(CoreLabError, match="HIRO_DATE_SHIFT_KEY"):
        send_copy(office.engine, office.settings, 1, by="cli:coordinator", clock=office.clock, environ={})
    environ = {"HIRO_DATE_SHIFT_KEY": "site-secret"}
    result = send_copy(
        office.engine, office.settings, 1, by="cli:coordinator", clock=office.clock, environ=environ
    )

    assert result.status == "submitted", result
    offset = subject_shift(b"site-secret", "ONC-2101", "2101-001", 90)
    expected = (date(2026, 12, 1) + timedelta(days=offset)).strftime("%Y%m%d")
    for tags in _headers(core_lab):
        by_name = {tag["Name"]: tag.get("Value") for tag in tags.values()}
        assert by_name["StudyDate"] == by_name["SeriesDate"] == expected
        for name, value in _values(tags):
            if not name.endswith("UID"):
                assert "20261201" not in value, f"{name} holds the scan date unshifted"
