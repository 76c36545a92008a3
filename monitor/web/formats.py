"""What several pages read from a form and write to a download, in one place: a typed date,
and a CSV file a spreadsheet opens safely."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import date

from fastapi.responses import Response


def parse_day(text: str) -> date | None:
    """``YYYY-MM-DD`` as a date; None when empty or mistyped (a filter then narrows nothing)."""
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def spreadsheet_safe(value: str) -> str:
    """A cell starting with = + - @ is a formula to a spreadsheet (CSV injection): quote it.
    Dates and ids never start so; details, comments and subject ids might."""
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def csv_download(filename: str, header: Sequence[str], rows: Iterable[Sequence[str]]) -> Response:
    """``rows`` under ``header`` as a CSV attachment, every cell spreadsheet-safe."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow([spreadsheet_safe(value) for value in row])
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
