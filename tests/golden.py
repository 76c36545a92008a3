"""Golden files: rendered output compared with a reviewed copy.

A sheet that differs from another only in its data is kept as the difference from that
other golden file (a unified diff without context), not as a third copy of the template:
a template change then shows once, in the base, and each difference file says only what
its case changes. Regenerate after a deliberate change with ``HIRO_UPDATE_GOLDEN=1`` and
review the diff.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path


def check_golden(path: Path, actual: str) -> None:
    """``actual`` is exactly the text of ``path``."""
    if os.environ.get("HIRO_UPDATE_GOLDEN"):
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"{path} missing: run with HIRO_UPDATE_GOLDEN=1 once and review it"
    assert actual == path.read_text(encoding="utf-8")


def difference(base: str, actual: str) -> str:
    lines = difflib.unified_diff(
        base.splitlines(keepends=True), actual.splitlines(keepends=True), "base", "actual", n=0
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def check_golden_difference(path: Path, base: Path, actual: str) -> None:
    """``actual`` differs from the golden file ``base`` exactly as the diff in ``path`` says."""
    check_golden(path, difference(base.read_text(encoding="utf-8"), actual))
