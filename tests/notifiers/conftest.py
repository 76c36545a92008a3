"""Shared pieces for channel tests: a renderer in the site's zone and content carrying synthetic PHI.

The PHI values are made up and distinctive, so asserting their absence from a payload is
meaningful: an MRN, a name (both parts) and a birth date in several spellings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest

from monitor.render import Renderer
from notifiers import AlertContent, DigestContent, MessageKind, Notification, OperationsContent
from rules.model import Audience, FindingKind, Severity

MRN = "E7730912"
NAME = "QUINCY, JOAN"
BIRTH = date(1958, 11, 23)
INITIALS = "J.Q."
PHI_SPELLINGS = (MRN, "QUINCY", "JOAN", "1958-11-23", "11/23/1958", "19581123", "23.11.1958")


def assert_no_phi(payload: str | bytes, *, initials_allowed: bool = False) -> None:
    """No MRN, name or birth date (any spelling) in ``payload``; no initials unless allowed."""
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    for value in PHI_SPELLINGS:
        assert value.lower() not in text.lower(), f"PHI value {value!r} leaked"
    if not initials_allowed:
        assert INITIALS not in text


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(zone="America/New_York", site_name="Research Imaging Office")


def alert_content(**changes: Any) -> AlertContent:
    content = AlertContent(
        trial="ONC-2101",
        trial_title="Phase II study of drug X versus docetaxel in NSCLC",
        subject="014",
        timepoint="Week 12 restaging",
        exam_label="CT chest/abdomen/pelvis with IV contrast",
        exam_id=42,
        exam_start=datetime(2026, 3, 3, 14, 30, tzinfo=UTC),  # 09:30 EST
        modality="CT",
        room="CT3",
        accession="ACC20260303-0042",
        procedure_code="IMG9999",
        dashboard_url="https://hiro.example.org/exams/42",
        next_step="Ask scheduling to change the order to IMG1234 before Tue 3 Mar 09:30",
        finding_kind=FindingKind.WRONG_ORDERABLE,
        severity=Severity.CRITICAL,
        detail="IMG9999 is not an orderable of this visit's exam (expected IMG1234 or IMG1240)",
        window_start=date(2026, 2, 23),
        window_end=date(2026, 3, 9),
        parameters=(
            "Slice thickness <= 5 mm, reconstructed contiguous",
            "IV contrast, portal venous phase (65-70 s after injection)",
            "Scan from the lung apices to the symphysis pubis",
        ),
        preparation=("Check eGFR within 30 days before IV contrast",),
        same_scanner="CT3",
        same_scanner_as="Screening",
        paperwork=("Research requisition signed by the coordinator",),
        contacts=("Research coordinator: pager 4-2101", "Imaging office: ext. 5550"),
        patient_initials=INITIALS,
        mrn=MRN,
        patient_name=NAME,
        birth_date=BIRTH,
    )
    return replace(content, **changes)


def digest_content(count: int = 2) -> DigestContent:
    entries = tuple(alert_content(subject=f"{14 + n:03d}", exam_id=42 + n) for n in range(count))
    return DigestContent(
        trial="ONC-2101",
        day=date(2026, 3, 3),
        trial_title="Phase II study of drug X versus docetaxel in NSCLC",
        entries=entries,
        dashboard_url="https://hiro.example.org/trials/ONC-2101",
    )


def operations_content(state: str = "raised") -> OperationsContent:
    return OperationsContent(
        condition="quiet_feed", state=state, feed="epic",
        summary="Feed epic has sent nothing for 61 minutes",
        detail="Check the sending engine's queue and its connection to us.",
        since=datetime(2026, 3, 3, 13, 0, tzinfo=UTC), dashboard_url="https://hiro.example.org/feeds",
    )  # fmt: skip


def content_for(kind: MessageKind, **alert_changes: Any) -> AlertContent | DigestContent | OperationsContent:
    """Content of the shape ``kind`` carries: a digest, an operations message, or an alert."""
    if kind is MessageKind.DIGEST:
        return digest_content()
    if kind is MessageKind.OPERATIONS:
        return operations_content()
    return alert_content(**alert_changes)


def tag_of(kind: MessageKind) -> str:
    """How the headline of ``kind`` begins."""
    return "[operations]" if kind is MessageKind.OPERATIONS else "[ONC-2101]"


MakeNotification = Callable[..., Notification]


@pytest.fixture
def make_notification() -> MakeNotification:
    def make(address: str, kind: MessageKind = MessageKind.ALERT, **changes: Any) -> Notification:
        content = changes.pop("content", None) or alert_content()
        audience = Audience.TECHNOLOGIST if kind is MessageKind.INSTRUCTIONS else Audience.COORDINATOR
        return Notification(
            address=address,
            audience=changes.pop("audience", audience),
            kind=kind,
            dedupe_key=changes.pop(
                "dedupe_key", f"{kind}|{address}|ONC-2101:014:restaging#2:wrong_orderable"
            ),
            content=content,
            thread_key=changes.pop("thread_key", "exam:42"),
            **changes,
        )

    return make
