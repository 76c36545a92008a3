"""The due alert's next step carries the rescheduling assistant's latest safe day (issue 16)."""

from __future__ import annotations

from datetime import date

from monitor.dispatch.content import next_step
from monitor.render import Renderer
from rules import FindingKind


def test_the_due_alerts_next_step_carries_the_latest_safe_day() -> None:
    renderer = Renderer(zone="America/New_York")
    window = (date(2026, 4, 6), date(2026, 4, 19))  # ends on a Sunday
    step = next_step(
        FindingKind.DUE_UNSCHEDULED, renderer, label="Week 6", window=window, latest_safe=date(2026, 4, 17)
    )
    assert step.startswith("Ask scheduling to book the Week 6 between")
    assert step.endswith(f"(latest safe day {renderer.format_date(date(2026, 4, 17))})")
    rebook = next_step(
        FindingKind.CANCELLED, renderer, label="Week 6", window=window, latest_safe=date(2026, 4, 17)
    )
    assert "latest safe day" in rebook
    assert "latest safe day" not in next_step(FindingKind.DUE_UNSCHEDULED, renderer, window=window)
