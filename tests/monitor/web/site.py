"""A store for the dashboard's tests: the example trials and enrolments, a few booked exams
through the HL7 path, the engine's findings, and one account per role."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from monitor.commands.ingest import ingest_files
from monitor.config import Settings
from monitor.evaluation import evaluate_all
from monitor.store.accounts import Role, add_user
from tests.monitor.hl7_messages import siu
from tests.monitor.trial_setup import NOW, load_examples

PASSWORD = "correct horse battery"
# (control id, CSN, start, MRN, orderable, room, modality)
BOOKINGS = (
    (
        "W0001",
        "7100000001",
        "20261201093000",
        "E10001",
        "IMG1234",
        "CT3",
        "CT",
    ),  # ONC-2101 2101-001, in window
    (
        "W0002",
        "7100000002",
        "20261127140000",
        "E10002",
        "IMG9999",
        "CT1",
        "CT",
    ),  # ONC-2101 2101-002, wrong code?
    ("W0003", "7100000003", "20261130100000", "E10009", "IMG3301", "MR2", "MR"),  # NEU-4405 4405-001
    ("W0004", "7100000004", "20261203080000", "E10006", "IMG7701", "PET1", "PT"),  # LYM-3302 3302-001
)
ACCOUNTS = {
    "admin": (Role.ADMIN, (), ()),
    "coord": (Role.COORDINATOR, ("ONC-2101",), ()),
    "neuro": (Role.COORDINATOR, ("NEU-4405",), ()),
    "tech": (Role.TECHNOLOGIST, (), ("CT",)),
    "viewer": (Role.VIEWER, (), ()),
    "integ": (Role.INTEGRATION, (), ()),
}


def settings_for(url: str, **web: object) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": url},
            "site": {"timezone": "America/New_York"},
            "hl7": {"timezone": "America/New_York"},
            "web": {"cookie_secure": False, **web},
        }
    )


def fill(engine: Engine, settings: Settings, folder: Path, now: datetime = NOW) -> None:
    """Example registry, the bookings above through ``ingest``, an evaluation, the accounts."""
    load_examples(engine, now)
    feed = folder / "bookings.hl7"
    feed.write_bytes(
        b"\n".join(
            siu(control_id=c, csn=csn, start=start, mrn=mrn, code=code, room=room, modality=mod)
            for c, csn, start, mrn, code, room, mod in BOOKINGS
        )
    )
    ingest_files(engine, settings, [feed], progress=False, clock=lambda: now)
    evaluate_all(engine, settings, now)
    with engine.begin() as conn:
        for name, (role, trials, modalities) in ACCOUNTS.items():
            add_user(conn, name, role, PASSWORD, now, trials=trials, modalities=modalities)
