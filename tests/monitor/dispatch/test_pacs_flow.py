"""After the scan, against a live Orthanc: booking -> images with a wrong slice thickness -> the
technologist's console and the coordinators hear -> a corrected series -> the finding resolves.

The images are synthetic (``monitor.pacs.synthetic``); the PACS is Debian's Orthanc, started
by ``tests/pacs`` (skipped where it is not installed).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from monitor.clock import FixedClock
from monitor.dispatch.pacs_poll import poll_and_evaluate
from monitor.pacs.orthanc import OrthancServer
from monitor.pacs.synthetic import StudySpec, ct_study, datasets, mr_study, with_repeat
from monitor.store.database import make_engine
from monitor.store.schema import feed_polls, findings
from tests.monitor.dispatch.office import CT3, ONC, Office, assert_no_phi
from tests.monitor.hl7_messages import siu
from tests.monitor.trial_setup import cli, load_examples
from tests.notifiers.slack_server import SlackServer
from tests.notifiers.smtp_server import SmtpServer

SCANNED = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)  # 10:00 New York, half an hour after the 09:30 start
EXAM_DAY = date(2026, 12, 1)


def _office(database_url: str, slack: SlackServer, smtp: SmtpServer, url: str) -> Office:
    return Office(database_url, slack, smtp, pacs={"enabled": True, "dicomweb_url": url})


@pytest.fixture
def imaging_office(
    database_url: str, slack: SlackServer, smtp: SmtpServer, pacs: OrthancServer
) -> Iterator[Office]:
    found = _office(database_url, slack, smtp, pacs.dicomweb_url)
    yield found
    found.close()


def _findings(office: Office, kind: str) -> list[tuple[str, str]]:
    with office.engine.connect() as conn:
        rows = conn.execute(select(findings.c.status, findings.c.detail).where(findings.c.kind == kind))
        return [(row.status, row.detail) for row in rows]


def _poll(office: Office) -> object:
    return poll_and_evaluate(office.engine, office.settings, office.evaluator, clock=office.clock)


def _wrong_ct() -> StudySpec:
    """The booked CT as the scanner sent it: the portal venous series reconstructed at 7.5 mm."""
    return ct_study(
        patient_id="E10001", accession="", study_date=EXAM_DAY, study_time="094500", slice_thickness=7.5
    )


def test_wrong_slices_reach_the_console_and_a_corrected_series_resolves_it(
    imaging_office: Office,
    pacs: OrthancServer,
) -> None:
    office = imaging_office
    office.feed(siu(mrn="E10001"))  # ONC-2101 CT booked for Tue 1 Dec 09:30, room CT3
    office.dispatch()  # the booking notice and sheets go out before the scan
    sent_before = {channel: len(messages) for channel, messages in office.slack.fake.messages.items()}
    office.clock.now = SCANNED
    pacs.store(datasets(_wrong_ct()))

    result = _poll(office)

    assert (result.listed, result.read, result.matched, result.changed_exams) == (1, 1, 1, {1})
    [(status, detail)] = _findings(office, "parameter_deviation")
    assert status == "open"
    assert "series 2 PORTAL VENOUS 7.5mm: SliceThickness 7.5 (protocol: <= 5)" in detail
    assert_no_phi(detail)
    alerts = office.rows(finding_kind="parameter_deviation", status="pending")
    assert {row.address for row in alerts} == {
        "email:onc2101-team@example.org",
        "slack:#onc-2101-imaging",
        "slack:#ct3-console",  # the technologist at the research CT's console
    }
    assert all(row.due_at <= SCANNED for row in alerts)
    office.dispatch()
    for channel in (ONC, CT3):
        new = office.slack.fake.messages[channel][sent_before.get(channel, 0) :]
        assert new, channel
        text = str(new)
        assert "SliceThickness" in text
        assert_no_phi(text)

    # The technologist repeats the series at 2.5 mm; the PACS gets it into the same study.
    office.clock.now = SCANNED.replace(minute=20)
    pacs.store(datasets(with_repeat(_wrong_ct(), 2.5, "101500")))

    again = _poll(office)

    assert (again.read, again.changed_exams) == (1, {1})
    assert [status for status, _ in _findings(office, "parameter_deviation")] == ["resolved"]
    # Polling the same PACS again reads nothing: the study has not changed.
    assert _poll(office).read == 0


def test_images_missing_is_raised_only_once_a_successful_poll_saw_none_after_they_were_due(
    database_url: str,
    slack: SlackServer,
    smtp: SmtpServer,
    pacs: OrthancServer,
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    down_url = f"http://127.0.0.1:{closed.getsockname()[1]}/dicom-web"
    closed.close()
    office = _office(database_url, slack, smtp, pacs.dicomweb_url)
    try:
        office.feed(siu(mrn="E10001"))
        assert _poll(office).ok  # watched from here (less the days a poll lists)
        office.clock.now = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)  # 15:00 New York: images due at 13:30
        pacs_down = office.settings.pacs.model_copy(update={"dicomweb_url": down_url})
        down = office.settings.model_copy(update={"pacs": pacs_down})
        failed = poll_and_evaluate(office.engine, down, office.evaluator, clock=office.clock)
        assert not failed.ok and failed.error == "the PACS cannot be reached"
        with office.engine.connect() as conn:
            last = conn.execute(select(feed_polls).order_by(feed_polls.c.id.desc())).first()
        assert last is not None and (last.feed, last.ok, last.error) == (
            "pacs",
            False,
            "the PACS cannot be reached",
        )
        office.evaluator.evaluate_all(office.clock())
        assert _findings(office, "images_missing") == []  # nobody could look: no finding
        office.evaluator.evaluate_all(office.clock() + timedelta(minutes=15))  # the next sweep
        office.clock.advance(minutes=30)
        # The PACS is back and holds nothing for the exam: the poll itself judges the exams
        # whose images fell due since the last poll that worked.
        assert _poll(office).ok
        [(status, detail)] = _findings(office, "images_missing")
        assert status == "open" and "no images have reached the PACS" in detail
    finally:
        office.close()


def test_the_poll_command_prints_counts_and_unmatched_studies_show_no_mrn_unless_asked(
    database_url: str, pacs: OrthancServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(database_url)
    load_examples(engine)
    engine.dispose()
    # An enrolled patient's MR that no booking explains, and a stranger's CT (never read).
    pacs.store(
        datasets(mr_study(patient_id="E10001", accession="ACC-LOOSE-1", study_date=EXAM_DAY, instances=2))
    )
    pacs.store(datasets(ct_study(patient_id="E77777", accession="ACC-OTHER", study_date=EXAM_DAY)))
    config = tmp_path / "hiro.toml"
    config.write_text(f'[pacs]\nenabled = true\ndicomweb_url = "{pacs.dicomweb_url}"\n')
    args = ("--config", str(config))
    clock = FixedClock(datetime(2026, 12, 1, 20, 0, tzinfo=UTC))
    code, out, _ = cli(capsys, database_url, *args, "pacs", "poll", "--once", clock=clock)
    assert code == 0, out
    assert "PACS poll ok: 2 studies listed, 1 read, 0 matched to exams" in out
    assert "E10001" not in out and "E77777" not in out
    code, out, _ = cli(capsys, database_url, *args, "pacs", "unmatched")
    assert code == 0 and "2026-12-01  MR" in out and "ACC-LOOSE-1" in out and "E10001" not in out
    assert "ACC-OTHER" not in out  # not an enrolled patient's: never stored
    _, out, _ = cli(capsys, database_url, *args, "pacs", "unmatched", "--show-mrn")
    assert "patient E10001" in out
    _, out, _ = cli(capsys, database_url, *args, "pacs", "unmatched", "--json")
    [study] = json.loads(out)
    assert (study["accession"], study["modalities"]) == ("ACC-LOOSE-1", ["MR"]) and "patient_id" not in study
