"""Listing tables that fit the terminal (80 columns and up): one line per row.

Every column but one keeps the width of its widest cell (a cap cuts the longest, with an
ellipsis); the one flexible column takes what is left and gives way first. ``--json`` on
each listing command has every value in full.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["print_table"]


def print_table(
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    flexible: str,
    caps: Mapping[str, int] | None = None,
    console: Console | None = None,
) -> None:
    """Print ``rows`` (cells may carry rich markup, ``[red]failed[/]``) under ``headers``."""
    caps = caps or {}
    console = console or Console()
    widths: dict[str, int] = {}
    for index, header in enumerate(headers):
        widest = max([len(header), *(Text.from_markup(row[index]).cell_len for row in rows)])
        widths[header] = min(widest, caps.get(header, widest))
    # A cell that may not wrap measures its whole text: the flexible column is told what is left.
    fixed = sum(width for header, width in widths.items() if header != flexible)
    left = max(len(flexible), console.width - fixed - 2 * len(headers))
    widths[flexible] = min(widths[flexible], left)
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for header in headers:
        width = widths[header]
        table.add_column(header, no_wrap=True, overflow="ellipsis", min_width=width, max_width=width)
    for row in rows:
        table.add_row(*row)
    console.print(table)
