"""Identifier pools: a feed that lists another facility's MR number before the site's.

With ``[hl7] mrn_authorities = []`` the MRN is the first identifier of type MR, so an
enrolled subject's exam (E10001, ONC-2101 2101-001 and NEU-4405 4405-004) booked with
``OSH55501^^^OSH^MR`` first is matched to nobody. check-config warns, naming the pools and
the setting; Feed health lists the exam. Neither ever shows an identifier's value. With
``mrn_authorities = ["EPI"]`` the same feed is matched and neither says anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from monitor.cli import main
from monitor.clock import FixedClock
from monitor.config import Settings
from monitor.evaluation import Evaluator
from monitor.feeds.hl7.intake import Arrival, Intake
from monitor.feeds.hl7.mapping import MappingSettings
from monitor.store.accounts import Role, add_user
from monitor.store.database import make_engine
from monitor.store.exams.pools import missed_enrolled, survey_pools
from monitor.store.registry import ProtocolCatalogue, check_entries, list_enrolments, parse_mrns, save_entries
from monitor.store.schema import exams, occurrences
from tests.monitor.hl7_messages import siu
from tests.monitor.trial_setup import EXAMPLE_MRNS, NOW, enrolment_id, load_examples
from tests.monitor.web.conftest import Site
from tests.monitor.web.site import PASSWORD

OTHER_FACILITY = "OSH55501"  # the outside hospital's MR number of the same patient
# Every identifier value the feed below carries: none may appear in any output.
IDENTIFIERS = (*EXAMPLE_MRNS, OTHER_FACILITY)
CSN = "7200000001"


def _feed() -> list[bytes]:
    """E10001's CT booked with the other facility's MR number first (the one missed), and
    E10002's booked as usual (matched whatever the setting)."""
    return [
        siu(control_id="P0001", csn=CSN, mrn=f"{OTHER_FACILITY}^^^OSH^MR~E10001"),
        siu(control_id="P0002", csn="7200000002", mrn="E10002", start="20261127140000"),
    ]


def _settings(url: str, authorities: Sequence[str] = ()) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": url},
            "site": {"timezone": "America/New_York"},
            "hl7": {"timezone": "America/New_York", "mrn_authorities": list(authorities)},
            "web": {"cookie_secure": False},
        }
    )


def _receive(engine: Engine, settings: Settings, messages: Sequence[bytes]) -> None:
    intake = Intake(engine, MappingSettings.from_settings(settings.hl7), clock=lambda: NOW)
    for raw in messages:
        assert intake.receive(Arrival(raw, received_at=NOW)).ack_code == "AA"


def _check_config(
    tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str], hl7: str = ""
) -> tuple[int, str]:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n[site]\ntimezone = "America/New_York"\n'
        f'[hl7]\ntimezone = "America/New_York"\n{hl7}',
        encoding="utf-8",
    )
    code = main(["--config", str(config), "--log-level", "WARNING", "check-config"], clock=FixedClock(NOW))
    return code, capsys.readouterr().out


def _no_identifier_in(text: str) -> None:
    for value in IDENTIFIERS:
        assert value not in text, f"identifier value {value!r} shown"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    load_examples(engine)
    yield engine
    engine.dispose()


def _warnings(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("WARNING  MRN pools:")]


def test_check_config_names_the_pools_and_the_setting_never_an_mrn(
    engine: Engine, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _receive(engine, _settings(database_url), _feed())
    with engine.connect() as conn:  # the premise: the other facility's number was chosen
        assert (
            conn.execute(select(exams.c.mrn).where(exams.c.external_id == CSN)).scalar_one() == OTHER_FACILITY
        )
    code, out = _check_config(tmp_path, database_url, capsys)
    pools, missed = _warnings(out)
    assert "[hl7] mrn_authorities is empty" in pools
    assert "from 2 pools: EPI in 2 exams, OSH in 1 exam (1 exam has more than one)" in pools
    assert "enrolled MRNs are found in EPI in 2 exams" in pools
    assert pools.endswith('[hl7] mrn_authorities = ["EPI"]')
    assert "1 exam starting 2026-11-18 to 2026-12-09 matches no enrolment" in missed
    assert "OSH (MR) chosen over EPI (MR): 1" in missed and "Feed health lists it" in missed
    _no_identifier_in(out)
    # The warnings are not problems: what fails here is the example protocols' channels.
    assert code == 1 and not any("MRN" in line for line in out.splitlines() if line.startswith("PROBLEM"))


def test_a_warning_alone_does_not_fail_the_check(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No protocols, no enrolments: nothing routes anywhere, and the pools alone are a warning."""
    engine = make_engine(database_url)
    _receive(engine, _settings(database_url), _feed())
    engine.dispose()
    code, out = _check_config(tmp_path, database_url, capsys)
    [pools] = _warnings(out)
    assert pools.endswith('[hl7] mrn_authorities = ["<the pool of your MRNs: EPI or OSH>"]')
    assert code == 0 and "configuration OK, 1 warning(s)" in out
    _no_identifier_in(out)


def test_configured_pools_stay_quiet(
    engine: Engine, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(database_url, ["EPI"])
    _receive(engine, settings, _feed())
    with engine.connect() as conn:
        assert conn.execute(select(exams.c.mrn).where(exams.c.external_id == CSN)).scalar_one() == "E10001"
        assert missed_enrolled(conn, NOW).total == 0
    code, out = _check_config(tmp_path, database_url, capsys, 'mrn_authorities = ["EPI"]\n')
    assert code == 1  # the example protocols' channels, as above
    assert "WARNING" not in out and "MRN pools" not in out


def test_exams_stored_before_the_setting_show_as_passed_over(
    engine: Engine, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _receive(engine, _settings(database_url), _feed())  # mapped while the setting was empty
    _, out = _check_config(tmp_path, database_url, capsys, 'mrn_authorities = ["EPI"]\n')
    passed_over, missed = _warnings(out)
    assert (
        "an identifier of type MR, MRN from a configured pool is not the exam's MRN (EPI in 1 exam)"
        in passed_over
    )
    assert "keep their MRN until their next message" in passed_over
    assert "1 exam starting" in missed
    assert "mrn_authorities is empty" not in out
    _no_identifier_in(out)
    # The sender's next message about the exam maps it again, with the setting: all quiet.
    _receive(engine, _settings(database_url, ["EPI"]), [siu("S14", control_id="P0003", csn=CSN,
             mrn=f"{OTHER_FACILITY}^^^OSH^MR~E10001", sent_at="20261121080000")])  # fmt: skip
    _, out = _check_config(tmp_path, database_url, capsys, 'mrn_authorities = ["EPI"]\n')
    assert "MRN pools" not in out


def test_identifiers_past_the_third_and_the_window(engine: Engine, database_url: str) -> None:
    """An enrolled MRN fifth in PID-3 is found; exams outside the window are not listed."""
    many = "A1^^^X1^MR~A2^^^X2^MR~A3^^^X3^MR~A4^^^X4^PI~E10006"
    _receive(
        engine,
        _settings(database_url),
        [
            siu(control_id="W1", csn="7300000001", mrn=many, start="20261203080000"),
            siu(control_id="W2", csn="7300000002", mrn=many, start="20261110080000"),  # 15 days ago
            siu(control_id="W3", csn="7300000003", mrn=many, start="20261215080000"),  # 20 days ahead
        ],
    )
    with engine.connect() as conn:
        found = missed_enrolled(conn, NOW)
        assert found.total == 1
        [exam] = found.exams
        assert (exam.external_id, exam.chosen_pool, exam.found_pool) == ("7300000001", "X1 (MR)", "EPI (MR)")
        assert exam.enrolments == (("LYM-3302", "3302-001"),)
        assert missed_enrolled(conn, NOW, trials=["ONC-2101"]).total == 0
        survey = survey_pools(conn, "epic", ("MR", "MRN"))
        assert survey.pools == {"X1": 3, "X2": 3, "X3": 3, "EPI": 3} and survey.several == 3


# --- Feed health --------------------------------------------------------------------------


@pytest.fixture
def office(engine: Engine, database_url: str) -> Site:
    settings = _settings(database_url)
    _receive(engine, settings, _feed())
    with engine.begin() as conn:
        add_user(conn, "admin", Role.ADMIN, PASSWORD, NOW)
        add_user(conn, "viewer", Role.VIEWER, PASSWORD, NOW)
        add_user(conn, "onc", Role.COORDINATOR, PASSWORD, NOW, trials=("ONC-2101",))
        add_user(conn, "lym", Role.COORDINATOR, PASSWORD, NOW, trials=("LYM-3302",))
    return Site(engine, settings, FixedClock(NOW), database_url)


def _section(page: str) -> str:
    return page[page.index('id="unmatched"') : page.index('id="reused"')]


def _exam_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(exams.c.id).where(exams.c.external_id == CSN)).scalar_one())


def test_feed_health_lists_the_unmatched_exam_and_no_identifier(office: Site) -> None:
    exam_id = _exam_id(office.engine)
    page = office.login("admin").get("/feeds")
    assert page.status_code == 200
    section = _section(page.text)
    assert "<strong>1 exam</strong>" in section
    row = re.search(rf"<tr><td><a href=\"/exams/{exam_id}\">exam {exam_id}</a></td>.*?</tr>", section)
    assert row, section
    cells = re.findall(r"<td>(.*?)</td>", row.group(0))[1:]
    assert cells == ["epic", CSN, "Tue 1 Dec 2026 09:30 EST", "OSH (MR)", "EPI (MR)",
                     "NEU-4405 4405-004, ONC-2101 2101-001"]  # fmt: skip
    assert "Fix: name the site's own pool in <code>[hl7] mrn_authorities</code>" in section
    assert '(here <code>mrn_authorities = ["EPI"]</code>' in section
    _no_identifier_in(page.text)
    # The exam of E10002, matched, is not listed.
    assert "7200000002" not in section
    [audit] = office.audit_rows(username="admin", object_type="feeds")
    assert audit.detail == f"unmatched exams {exam_id}"


def test_feed_health_keeps_to_the_account(office: Site) -> None:
    viewer = _section(office.login("viewer").get("/feeds").text)
    assert CSN in viewer and "/exams/" not in viewer  # unmatched exams open for admins only
    assert CSN in _section(office.login("onc").get("/feeds").text)
    lym = _section(office.login("lym").get("/feeds").text)
    assert CSN not in lym and "None." in lym
    assert not office.audit_rows(username="lym", object_type="feeds")


def test_feed_health_is_quiet_when_the_pool_is_configured(engine: Engine, database_url: str) -> None:
    settings = _settings(database_url, ["EPI"])
    _receive(engine, settings, _feed())
    with engine.begin() as conn:
        add_user(conn, "admin", Role.ADMIN, PASSWORD, NOW)
    site = Site(engine, settings, FixedClock(NOW), database_url)
    section = _section(site.login("admin").get("/feeds").text)
    assert "None." in section and CSN not in section and "Fix:" not in section


# --- Enrolment MRNs with a pool: the same number in another hospital's pool is another patient


def _subject_claims_exam(engine: Engine, settings: Settings, enrolled_as: str, sent_as: str) -> bool:
    """Whether ONC-2101 2101-001, enrolled with ``enrolled_as``, is given the exam booked
    with PID-3 ``sent_as`` (the feed chooses the first identifier of type MR)."""
    with engine.begin() as conn:
        [view] = list_enrolments(conn, trial="ONC-2101", subject="2101-001")
        mrns, pools = parse_mrns([enrolled_as])
        save_entries(conn, [replace(view.entry(), mrns=mrns, pools=pools)], NOW)
    _receive(engine, settings, [siu(control_id="P0101", csn=CSN, mrn=sent_as)])
    Evaluator(engine, settings).evaluate_enrolments([enrolment_id(engine, "ONC-2101", "2101-001")], NOW)
    with engine.connect() as conn:
        exam_id = conn.execute(select(exams.c.id).where(exams.c.external_id == CSN)).scalar_one()
        claimed = conn.execute(
            select(occurrences.c.key).where(
                occurrences.c.exam_id == exam_id, occurrences.c.subject == "2101-001"
            )
        ).all()
    return bool(claimed)


@pytest.mark.parametrize(
    ("enrolled_as", "sent_as", "claimed"),
    [
        pytest.param("E10001 (EPI)", "E10001", True, id="same-pool"),
        pytest.param("E10001 (epi)", "E10001", True, id="pool-names-ignore-case"),
        pytest.param("E10001 (EPI)", "E10001^^^OSH^MR~E55555", False, id="other-hospitals-patient"),
        pytest.param("E10001^^^OSH^MR", "E10001^^^OSH^MR~E55555", True, id="pasted-cx-pool"),
        pytest.param("E10001", "E10001^^^OSH^MR~E55555", True, id="no-pool-given-matches-the-number"),
        pytest.param("E10001 (EPI)", "E10001^^^^MR~E55555", True, id="sender-names-no-pool"),
    ],
)
def test_an_mrn_given_with_a_pool_claims_only_that_pools_exams(
    engine: Engine, database_url: str, enrolled_as: str, sent_as: str, claimed: bool
) -> None:
    settings = _settings(database_url)
    assert _subject_claims_exam(engine, settings, enrolled_as, sent_as) is claimed
    with engine.connect() as conn:  # the pool of the identifier chosen as the exam's MRN is kept
        pool = conn.execute(select(exams.c.mrn_pool).where(exams.c.external_id == CSN)).scalar_one()
    assert pool == ("OSH" if "OSH" in sent_as else "" if "^^^^" in sent_as else "EPI")


def test_pools_in_the_registry_read_write_and_conflict(engine: Engine) -> None:
    assert parse_mrns(["E1 (HOSP)", " E2^^^OSH^MR ", "E3", "", "E1"]) == (
        ("E1", "E2", "E3"),
        {"E1": "HOSP", "E2": "OSH"},
    )
    with pytest.raises(ValueError, match="different pools") as refused:
        parse_mrns(["E1 (HOSP)", "E1 (OSH)"])
    assert "E1" not in str(refused.value)
    trials = {}
    with engine.begin() as conn:
        trials = ProtocolCatalogue().trials(conn, ["ONC-2101"])
        [view] = list_enrolments(conn, trial="ONC-2101", subject="2101-001")
        save_entries(conn, [replace(view.entry(), pools={"E10001": "EPI"})], NOW)
        [view] = list_enrolments(conn, trial="ONC-2101", subject="2101-001")
        assert view.mrn_labels() == ("E10001 (EPI)",) and view.as_json()["mrn_pools"] == {"E10001": "EPI"}
        new = view.entry()
        other_pool = replace(new, subject="2101-990", pools={"E10001": "OSH"})
        same_pool = replace(new, subject="2101-991", pools={"E10001": "epi"})
        no_pool = replace(new, subject="2101-992", pools={})
        problems = check_entries(conn, trials, [other_pool, same_pool, no_pool])
    assert not any("already that of subject" in p for p in problems[0])  # another hospital's patient
    assert any("already that of subject 2101-001" in p for p in problems[1])
    assert any("already that of subject 2101-001" in p for p in problems[2])  # cannot be told apart
