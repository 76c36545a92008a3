"""Findings as a work queue: most urgent first, filters in the URL with counts, the CSV of
the same list, and ticked findings reviewed with one comment (issue 16)."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from itertools import count

import pytest
from sqlalchemy import func, insert, select

from monitor.store.accounts import find_user
from monitor.store.schema import enrolments, findings
from monitor.store.worklist import FindingFilter, counted
from tests.monitor.trial_setup import NOW
from tests.monitor.web.conftest import Login, Site, csrf_in

TODAY = NOW.date()  # the site zone's day at the tests' fixed NOW (noon UTC is morning in New York)
_keys = count(1)


def _enrolment(site: Site, trial: str) -> int:
    with site.engine.connect() as conn:
        return int(
            conn.execute(select(enrolments.c.id).where(enrolments.c.trial == trial).limit(1)).scalar_one()
        )


def _finding(site: Site, trial: str, subject: str, *, kind: str = "late", severity: str = "warning",
             window: tuple[int, int] | None = (-5, 5), status: str = "open") -> int:  # fmt: skip
    """A finding row whose window is ``window`` days around today (None: no window)."""
    start, end = (
        (None, None) if window is None else (TODAY + timedelta(window[0]), TODAY + timedelta(window[1]))
    )
    with site.engine.begin() as conn:
        return int(
            conn.execute(
                insert(findings).values(
                    key=f"queue-test-{next(_keys)}",
                    kind=kind,
                    severity=severity,
                    trial=trial,
                    subject=subject,
                    enrolment_id=_enrolment(site, trial),
                    timepoint="w12",
                    occurrence_key=None,
                    occurrence_label="Week 12",
                    exam_id=None,
                    window_start=start,
                    window_end=end,
                    detail=f"{subject} {kind}",
                    status=status,
                    opened_at=NOW,
                    updated_at=NOW,
                    resolved_at=NOW if status != "open" else None,
                )
            ).inserted_primary_key[0]
        )


@pytest.fixture(scope="module")
def queue(site: Site) -> dict[str, int]:
    """Findings of ONC-2101 (the coordinator's trial) and one of NEU-4405 (not theirs)."""
    return {
        "closes_in_9": _finding(site, "ONC-2101", "Q-09", window=(-1, 9), severity="critical"),
        "closes_in_2_info": _finding(site, "ONC-2101", "Q-02i", window=(-3, 2), severity="info"),
        "closes_in_2_crit": _finding(site, "ONC-2101", "Q-02c", window=(-3, 2), severity="critical"),
        "closed_long_ago": _finding(site, "ONC-2101", "Q-OLD", kind="missed", window=(-60, -40)),
        "closed_lately": _finding(site, "ONC-2101", "Q-NEW", kind="missed", window=(-20, -1)),
        "no_window": _finding(site, "ONC-2101", "Q-NOWIN", kind="unmatched_exam", window=None),
        "resolved": _finding(site, "ONC-2101", "Q-DONE", status="resolved"),
        "in_window": _finding(site, "ONC-2101", "Q-OK", kind="in_window", severity="info"),
        "other_trial": _finding(site, "NEU-4405", "Q-NEURO", window=(-1, 1)),
    }


def _order(html: str) -> list[int]:
    return [int(found) for found in re.findall(r'<tr id="finding-(\d+)"', html)]


def _mine(ids: list[int], queue: dict[str, int]) -> list[str]:
    names = {finding_id: name for name, finding_id in queue.items()}
    return [names[finding_id] for finding_id in ids if finding_id in names]


def test_open_findings_come_most_urgent_first(login: Login, queue: dict[str, int]) -> None:
    page = login("coord").get("/findings")
    assert page.status_code == 200
    assert _mine(_order(page.text), queue) == [
        "closes_in_2_crit", "closes_in_2_info", "closes_in_9",  # still open: closing soonest, then severity
        "closed_lately", "closed_long_ago",  # closed: newest window first
        "no_window",
    ]  # fmt: skip
    assert "closes in 2 days" in page.text and "Q-NEURO" not in page.text


_KINDS = ("late", "early", "missed", "unmatched_exam", "wrong_orderable", "due_unscheduled", "cancelled",
          "no_show", "duplicate", "after_off_study", "unconfirmed")  # fmt: skip


def _open_by_kind(site: Site, trial: str) -> dict[str, int]:
    with site.engine.connect() as conn:
        rows = conn.execute(
            select(findings.c.kind, func.count())
            .where(findings.c.trial == trial, findings.c.status == "open", findings.c.kind != "in_window")
            .group_by(findings.c.kind)
        )
        return {kind: int(n) for kind, n in rows if kind in _KINDS}


def test_filters_narrow_the_list_keep_to_the_url_and_count_each_choice(
    site: Site, login: Login, queue: dict[str, int]
) -> None:
    coord = login("coord")
    page = coord.get("/findings", params={"kind": "missed", "trial": "ONC-2101"})
    assert _mine(_order(page.text), queue) == ["closed_lately", "closed_long_ago"]
    # Each kind is counted as if chosen, with the other filters kept; other trials never count.
    kinds = dict(re.findall(r'<option value="(\w+)"[^>]*>[\w ]+ \((\d+)\)</option>', page.text))
    assert {kind: int(n) for kind, n in kinds.items() if kind in _KINDS} == _open_by_kind(site, "ONC-2101")
    assert "NEU-4405" not in page.text
    assert 'href="/findings.csv?trial=ONC-2101&amp;kind=missed"' in page.text
    windows = coord.get(
        "/findings", params={"window_from": str(TODAY + timedelta(3)), "window_to": "9999-12-31"}
    )
    assert _mine(_order(windows.text), queue) == ["closes_in_9"]
    by_subject = coord.get("/findings", params={"subject": "Q-OLD", "status": "all"})
    assert _mine(_order(by_subject.text), queue) == ["closed_long_ago"]
    resolved = coord.get("/findings", params={"status": "resolved"})
    assert "resolved" in _mine(_order(resolved.text), queue) and "closes_in_9" not in _mine(
        _order(resolved.text), queue
    )


def test_the_csv_is_the_filtered_list_in_the_same_order(login: Login, queue: dict[str, int]) -> None:
    coord = login("coord")
    params = {"severity": "critical"}
    shown = _order(coord.get("/findings", params=params).text)
    rows = list(csv.DictReader(io.StringIO(coord.get("/findings.csv", params=params).text)))
    assert [int(row["id"]) for row in rows] == shown
    assert {row["severity"] for row in rows} == {"critical"}
    assert _mine(shown, queue) == ["closes_in_2_crit", "closes_in_9"]


def test_ticked_findings_are_reviewed_with_one_comment_before_and_after_audited(
    site: Site, login: Login, queue: dict[str, int]
) -> None:
    coord = login("coord")
    page = coord.get("/findings", params={"kind": "missed"})
    ticked = [queue["closed_lately"], queue["closed_long_ago"]]
    answer = coord.post(
        "/findings/review",
        data={"action": "acknowledge", "finding": ticked, "comment": "Deviation forms filed",
              "csrf_token": csrf_in(page.text), "back": "/findings?kind=missed"},
    )  # fmt: skip
    assert answer.status_code == 303 and answer.headers["location"] == "/findings?kind=missed"
    for finding_id in ticked:
        [row] = site.audit_rows(action="finding.acknowledge", object_id=str(finding_id))
        assert (row.username, row.detail, row.before, row.after) == (  # type: ignore[attr-defined]
            "coord",
            "Deviation forms filed",
            "none",
            "acknowledged",
        )
    coord.post(
        "/findings/review",
        data={"action": "resolve", "finding": [ticked[0]], "csrf_token": csrf_in(page.text)},
    )
    [row] = site.audit_rows(action="finding.resolve", object_id=str(ticked[0]))
    assert (row.before, row.after) == ("acknowledged", "resolved")  # type: ignore[attr-defined]
    assert "acknowledged by coord" in coord.get("/findings", params={"kind": "missed"}).text


def test_a_review_reaching_outside_the_trials_or_without_the_token_records_nothing(
    site: Site, login: Login, queue: dict[str, int]
) -> None:
    coord = login("coord")
    token = csrf_in(coord.get("/findings").text)
    mine, theirs = queue["closes_in_9"], queue["other_trial"]
    outside = coord.post(
        "/findings/review", data={"action": "resolve", "finding": [mine, theirs], "csrf_token": token}
    )
    assert outside.status_code == 404
    no_token = coord.post("/findings/review", data={"action": "resolve", "finding": [mine]})
    assert no_token.status_code == 403
    offsite = coord.post(
        "/findings/review",
        data={"action": "resolve", "finding": [mine], "csrf_token": token, "back": "//evil.example/x"},
    )
    assert offsite.headers["location"] == "/findings"
    resolved = [row.object_id for row in site.audit_rows(action="finding.resolve")]  # type: ignore[attr-defined]
    assert resolved.count(str(mine)) == 1  # only the last post, whose redirect went home instead
    assert site.audit_rows(object_id=str(theirs), object_type="finding") == []


def test_a_page_error_is_an_html_page_and_an_api_error_stays_json(
    login: Login, queue: dict[str, int]
) -> None:
    coord = login("coord")
    for path, status in (("/no/such/page", 404), (f"/exams/{2**70}", 422), ("/audit", 403)):
        answer = coord.get(path)
        assert answer.status_code == status, path
        assert answer.headers["content-type"].startswith("text/html"), path
        assert "<h1>" in answer.text and '"detail"' not in answer.text, path
    token = csrf_in(coord.get("/findings").text)
    empty = coord.post("/findings/review", data={"action": "acknowledge", "csrf_token": token})
    assert empty.status_code == 422 and "Tick at least one finding." in empty.text
    api = coord.get("/api/no-such-thing")
    assert api.status_code == 404 and api.json() == {"detail": "Not Found"}


@pytest.mark.parametrize(
    "wanted",
    [
        FindingFilter(),
        FindingFilter(kind="missed"),
        FindingFilter(trial="ONC-2101", severity="critical"),
        FindingFilter(status="all", trial="NEU-4405", kind="late", severity="warning"),
        FindingFilter(status="resolved", severity="info"),
        FindingFilter(window_from=TODAY, kind="due_unscheduled"),
    ],
    ids=["default", "one-facet", "two-facets", "all-facets", "resolved", "window"],
)
def test_one_grouped_scan_counts_as_each_facet_would_alone(
    site: Site, queue: dict[str, int], wanted: FindingFilter
) -> None:
    """The page's total and facet counts come from one grouped query; each must equal what
    filtering the findings one by one gives (every facet counted with the others kept)."""
    with site.engine.connect() as conn:
        admin = find_user(conn, "admin")
        assert admin is not None
        total, counts = counted(conn, admin, wanted)
        every = list(conn.execute(select(findings)))

    def shown(row: object, facet_left_out: str = "") -> bool:
        if wanted.status == "open" and not (row.status == "open" and row.kind != "in_window"):  # type: ignore[attr-defined]
            return False
        if wanted.status == "resolved" and row.status == "open":  # type: ignore[attr-defined]
            return False
        if wanted.window_from and (row.window_end is None or row.window_end < wanted.window_from):  # type: ignore[attr-defined]
            return False
        facets = ("trial", "kind", "severity", "subject")
        return all(
            not getattr(wanted, f) or getattr(row, f) == getattr(wanted, f)
            for f in facets
            if f != facet_left_out
        )

    assert total == sum(1 for row in every if shown(row))
    for facet in ("trial", "kind", "severity"):
        expected: dict[str, int] = {}
        for row in every:
            if shown(row, facet):
                expected[getattr(row, facet)] = expected.get(getattr(row, facet), 0) + 1
        assert counts[facet] == dict(sorted(expected.items())), facet
