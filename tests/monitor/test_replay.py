"""Replays change nothing and an exam never moves backwards, whatever order messages come in.

A realistic day of an Epic feed for the example registry (bookings, a room change, a
reschedule, a cancellation rebooked under a new CSN, a no-show, a sender that reused a
control id, a message without MSH-10) is sent in time order, then replayed, shuffled and
interleaved with live traffic: the exams, findings and outbox must end exactly as after the
in-order feed.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from monitor.config import Settings
from monitor.evaluation import Evaluator
from monitor.feeds.hl7.intake import Arrival, Intake, Receipt
from monitor.feeds.hl7.mapping import MappingSettings
from monitor.store.database import make_engine, upgrade
from monitor.store.schema import exam_events, exams, findings, messages, notifications
from tests.monitor.hl7_messages import siu
from tests.monitor.trial_setup import NOW, load_examples


def _without_control_id(raw: bytes) -> bytes:
    head, _, rest = raw.partition(b"\r")
    fields = head.split(b"|")
    fields[9] = b""
    return b"|".join(fields) + b"\r" + rest


# In time order (MSH-7 New York time). E10001 is ONC-2101 2101-001, E10002 is 2101-002,
# E10009 is NEU-4405 4405-001, E10006 is LYM-3302 3302-001 (tests/monitor/web/site.py).
DAY: tuple[bytes, ...] = (
    siu(control_id="D01", csn="7200000001", mrn="E10001", start="20261201093000", sent_at="20261125080000"),
    siu(control_id="D02", csn="7200000002", mrn="E10002", start="20261127140000", code="IMG9999",
        room="CT1", sent_at="20261125080500"),
    siu("S14", control_id="D03", csn="7200000001", mrn="E10001", start="20261201093000", room="CT4",
        sent_at="20261125081000"),
    siu("S15", control_id="D04", csn="7200000002", mrn="E10002", start="20261127140000", code="IMG9999",
        room="CT1", status="Cancelled", sent_at="20261125082000"),
    # Rebooked under a new CSN: linked to the cancelled exam.
    siu(control_id="D05", csn="7200000003", mrn="E10002", start="20261130110000", code="IMG9999",
        room="CT1", sent_at="20261125083000"),
    siu(control_id="D06", csn="7200000004", mrn="E10009", start="20261130100000", code="IMG3301",
        room="MR2", modality="MR", sent_at="20261125084000"),
    siu("S13", control_id="D07", csn="7200000001", mrn="E10001", start="20261202101500", room="CT4",
        sent_at="20261125090000"),
    # The sender's counter restarted: D01 again, another body (the MR moved a day).
    siu("S13", control_id="D01", csn="7200000004", mrn="E10009", start="20261201100000", code="IMG3301",
        room="MR2", modality="MR", sent_at="20261125093000"),
    siu(control_id="D09", csn="7200000005", mrn="E10006", start="20261203080000", code="IMG7701",
        room="PET1", modality="PT", sent_at="20261125094000"),
    # No MSH-10 at all (seen in the corpus): deduplicated by its body.
    _without_control_id(
        siu("S14", csn="7200000005", mrn="E10006", start="20261203080000", code="IMG7701", room="PET2",
            modality="PT", sent_at="20261125095000", note="Fasting 6 h")
    ),
    siu("S26", control_id="D11", csn="7200000002", mrn="E10002", start="20261127140000", code="IMG9999",
        room="CT1", status="Noshow", sent_at="20261125100000"),
)  # fmt: skip


class Store:
    """The example registry in a SQLite file: an intake and an evaluator on a fixed clock."""

    def __init__(self, path: Path) -> None:
        self.engine: Engine = make_engine(f"sqlite:///{path}")
        self.settings = Settings.model_validate(
            {"database": {"url": f"sqlite:///{path}"}, "dispatch": {"quiet_first_run": False}}
        )
        self.intake = Intake(self.engine, MappingSettings.from_settings(self.settings.hl7), clock=lambda: NOW)
        self.evaluator = Evaluator(self.engine, self.settings)

    def send(self, feed: Sequence[bytes], *, evaluate_each: bool = False) -> list[Receipt]:
        receipts = []
        for raw in feed:
            receipt = self.intake.receive(Arrival(raw, received_at=NOW))
            receipts.append(receipt)
            if evaluate_each:
                self.evaluator.evaluate_for_exams(receipt.exam_ids, NOW)
        return receipts

    def count(self, table: Any) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

    def state(self) -> dict[str, Any]:
        """Exams, findings and outbox with store ids replaced by what they stand for."""
        with self.engine.connect() as conn:
            names = {row.id: row.external_id for row in conn.execute(select(exams.c.id, exams.c.external_id))}
            control = {
                row.id: row.control_id for row in conn.execute(select(messages.c.id, messages.c.control_id))
            }

            def named(value: Any) -> Any:
                if isinstance(value, str):
                    return re.sub(r"\bexam ?(\d+)", lambda m: f"exam[{names.get(int(m[1]))}]", value)
                return value

            exam_rows = {}
            for row in conn.execute(select(exams)).mappings():
                shown = {k: v for k, v in row.items() if k not in ("id", "created_at", "updated_at")}
                shown["replaces_exam_id"] = names.get(row["replaces_exam_id"])
                shown["last_message_id"] = control.get(row["last_message_id"])
                exam_rows[row["external_id"]] = shown
            finding_rows = {
                named(row["key"]): {k: named(v) for k, v in row.items() if k not in ("id", "exam_id", "key")}
                | {"exam": names.get(row["exam_id"])}
                for row in conn.execute(select(findings)).mappings()
            }
            outbox_rows = {
                named(row["dedupe_key"]): (
                    row["kind"], row["address"], row["status"], row["due_at"], named(row["finding_key"]),
                    names.get(row["exam_id"]), row["exam_start"], row["body"],
                )
                for row in conn.execute(select(notifications)).mappings()
            }  # fmt: skip
        return {"exams": exam_rows, "findings": finding_rows, "outbox": outbox_rows}

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated store with the example registry, copied for each case (fast)."""
    path = tmp_path_factory.mktemp("replay") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    load_examples(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="module")
def in_order(template: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The state after the day's feed in time order, evaluated at the end."""
    store = _fresh(template, tmp_path_factory.mktemp("in-order"))
    store.send(DAY)
    store.evaluator.evaluate_all(NOW)
    state = store.state()
    store.close()
    return state


def _fresh(template: Path, folder: Path) -> Store:
    path = folder / "store.db"
    shutil.copy(template, path)
    return Store(path)


@pytest.fixture
def store(template: Path, tmp_path: Path) -> Iterator[Store]:
    found = _fresh(template, tmp_path)
    yield found
    found.close()


def test_the_in_order_day_ends_where_the_last_message_of_each_exam_says(in_order: dict[str, Any]) -> None:
    exams_now = in_order["exams"]
    assert exams_now["7200000001"]["location"].startswith("CT4")
    assert exams_now["7200000001"]["start_at"].isoformat() == "2026-12-02T15:15:00+00:00"
    assert exams_now["7200000002"]["status"] == "no_show"
    assert exams_now["7200000003"]["replaces_exam_id"] == "7200000002"
    assert exams_now["7200000004"]["start_at"].isoformat() == "2026-12-01T15:00:00+00:00"  # the reused id
    assert exams_now["7200000005"]["location"].startswith("PET2")  # the message without MSH-10
    assert in_order["findings"] and in_order["outbox"]


def test_a_replay_after_a_reused_control_id_changes_nothing(store: Store, in_order: dict[str, Any]) -> None:
    """The reported regression: D01's second body was compared with the first D01 only, so it
    was applied again on replay, D07 then counted as a duplicate, and the CT moved back."""
    store.send(DAY)
    events = store.count(exam_events)
    replay = store.send(DAY)
    assert [r.outcome for r in replay] == ["duplicate"] * len(DAY)
    assert store.count(exam_events) == events  # the message without MSH-10 too (36 -> 45 before)
    assert store.count(messages) == len(DAY)
    store.evaluator.evaluate_all(NOW)
    assert store.state() == in_order


def test_an_older_event_arriving_late_is_history_and_does_not_move_the_exam_back(store: Store) -> None:
    reschedule, booking = DAY[6], DAY[0]  # D07 (09:00) before D01 (08:00)
    store.send([reschedule, booking])
    with store.engine.connect() as conn:
        exam = conn.execute(select(exams).where(exams.c.external_id == "7200000001")).mappings().one()
        kinds = [row.kind for row in conn.execute(select(exam_events.c.kind).order_by(exam_events.c.id))]
    assert exam["start_at"].isoformat() == "2026-12-02T15:15:00+00:00"
    assert (exam["status"], exam["last_event"]) == ("scheduled", "rescheduled")
    assert kinds == ["rescheduled", "booked"]  # both kept, in arrival order


def test_a_late_cancellation_older_than_a_modification_still_cancels(store: Store) -> None:
    booking = siu(control_id="L1", csn="7300000001", mrn="E10001", sent_at="20261125080000")
    cancel = siu("S15", control_id="L2", csn="7300000001", mrn="E10001", status="Cancelled",
                 sent_at="20261125090000")  # fmt: skip
    note = siu("S14", control_id="L3", csn="7300000001", mrn="E10001", note="Bring prior CDs",
               sent_at="20261125100000")  # fmt: skip
    store.send([booking, note, cancel])
    with store.engine.connect() as conn:
        exam = conn.execute(select(exams).where(exams.c.external_id == "7300000001")).mappings().one()
    assert exam["status"] == "cancelled" and exam["comments"] == ["Bring prior CDs"]


def test_a_resent_rejected_message_is_answered_as_the_first_time(store: Store) -> None:
    broken = siu(control_id="R1", start="2026-13-45")
    first, again = store.send([broken, broken])
    assert (first.outcome, first.ack_code) == ("rejected", "AE")
    assert (again.outcome, again.ack_code, again.reason) == ("duplicate", "AE", first.reason)
    assert again.message_id == first.message_id


@pytest.mark.parametrize("message_type", ["ZZZ^Z99", "ADT^A01", "ADT^A60"])
def test_a_siu_body_under_another_message_type_is_rejected_and_not_applied(
    store: Store, message_type: str
) -> None:
    raw = siu(control_id="T1", csn="7400000001").replace(b"SIU^S12^SIU_S12", message_type.encode())
    [receipt] = store.send([raw])
    assert (receipt.outcome, receipt.ack_code, receipt.error_code) == ("rejected", "AR", "200")
    assert store.count(exams) == 0 and store.count(messages) == 1


PROPERTY = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY
@given(order=st.permutations(range(len(DAY))))
def test_the_day_in_any_order_ends_in_the_in_order_state(
    order: list[int], template: Path, tmp_path_factory: pytest.TempPathFactory, in_order: dict[str, Any]
) -> None:
    store = _fresh(template, tmp_path_factory.mktemp("shuffled"))
    try:
        store.send([DAY[i] for i in order])
        store.evaluator.evaluate_all(NOW)
        assert store.state() == in_order
    finally:
        store.close()


@PROPERTY
@given(data=st.data())
def test_a_shuffled_replay_interleaved_with_live_traffic_changes_nothing(
    data: st.DataObject, template: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The writer re-evaluates after each message: the outbox sees every intermediate state."""
    split = data.draw(st.integers(1, len(DAY) - 1), label="messages before the replay")
    replay = data.draw(st.permutations(DAY[:split]), label="replayed")
    # Merge the replay into the live rest, keeping each one's own order.
    live, merged, queue = list(DAY[split:]), [], list(replay)
    while live or queue:
        take_live = bool(live) and (not queue or data.draw(st.booleans()))
        merged.append(live.pop(0) if take_live else queue.pop(0))
    reference = _fresh(template, tmp_path_factory.mktemp("reference"))
    replayed = _fresh(template, tmp_path_factory.mktemp("replayed"))
    try:
        reference.send(DAY, evaluate_each=True)
        replayed.send(DAY[:split], evaluate_each=True)
        replayed.send(merged, evaluate_each=True)
        assert replayed.state() == reference.state()
        assert replayed.count(exam_events) == reference.count(exam_events)
    finally:
        reference.close()
        replayed.close()
