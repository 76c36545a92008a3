from __future__ import annotations

from datetime import UTC, datetime

import pytest

from notifiers.policy import PHI_FIELDS, WITHHELD, PhiPolicy, alert_view, content_view
from tests.notifiers.conftest import BIRTH, INITIALS, MRN, NAME, alert_content, assert_no_phi, digest_content


def test_none_policy_leaves_every_phi_field_out_of_the_view() -> None:
    view = alert_view(alert_content(), PhiPolicy.NONE)
    assert not set(PHI_FIELDS) & set(view)
    assert_no_phi(repr(view))
    assert view["subject"] == "014" and view["accession"] == "ACC20260303-0042"
    assert view["phi_policy"] == "none"


def test_limited_policy_adds_the_initials_only() -> None:
    view = alert_view(alert_content(), PhiPolicy.LIMITED)
    assert view["patient_initials"] == INITIALS
    assert not {"mrn", "patient_name", "birth_date"} & set(view)
    assert_no_phi(repr(view), initials_allowed=True)


def test_full_policy_shows_mrn_name_and_birth_date() -> None:
    view = alert_view(alert_content(), PhiPolicy.FULL)
    assert (view["mrn"], view["patient_name"], view["birth_date"]) == (MRN, NAME, BIRTH)


@pytest.mark.parametrize(
    "leaky_detail",
    [
        f"Exam for MRN {MRN} booked twice",
        "Booked for quincy, joan by the front desk",
        "Patient QUINCY called to move it",
        "DOB 11/23/1958 does not match the order",
        "DOB 1958-11-23 does not match the order",
    ],
)
def test_identifiers_inside_free_text_are_withheld_when_the_policy_forbids_them(leaky_detail: str) -> None:
    content = alert_content(detail=leaky_detail, next_step=leaky_detail, parameters=(leaky_detail,))
    view = alert_view(content, PhiPolicy.LIMITED)
    for text in (view["detail"], view["next_step"], *view["parameters"]):
        assert WITHHELD in text
        assert_no_phi(text)


def test_scrubbing_keeps_words_that_merely_contain_a_name_part() -> None:
    view = alert_view(alert_content(detail="Joanna from scheduling confirmed"), PhiPolicy.NONE)
    assert view["detail"] == "Joanna from scheduling confirmed"


def test_full_policy_does_not_scrub_free_text() -> None:
    view = alert_view(alert_content(detail=f"MRN {MRN}"), PhiPolicy.FULL)
    assert view["detail"] == f"MRN {MRN}"


def test_digest_view_filters_every_entry() -> None:
    view = content_view(digest_content(3), PhiPolicy.NONE)
    assert len(view["entries"]) == 3
    assert_no_phi(repr(view))


def test_policies_order_from_none_to_full() -> None:
    assert PhiPolicy.FULL.at_most(PhiPolicy.LIMITED) is PhiPolicy.LIMITED
    assert PhiPolicy.NONE.at_most(PhiPolicy.FULL) is PhiPolicy.NONE
    assert PhiPolicy.LIMITED.allows("patient_initials") and not PhiPolicy.LIMITED.allows("mrn")


def test_phi_fields_stay_out_of_the_contents_repr() -> None:
    assert_no_phi(repr(alert_content()))


def test_content_refuses_a_naive_exam_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        alert_content(exam_start=datetime(2026, 3, 3, 9, 30))
    assert alert_content(exam_start=datetime(2026, 3, 3, 9, 30, tzinfo=UTC)).exam_start is not None
