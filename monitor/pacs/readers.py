"""The reader of the configured PACS: DICOMweb (:mod:`monitor.pacs.reader`) or DIMSE C-FIND
(:mod:`monitor.pacs.dimse`), by ``pacs.protocol``."""

from __future__ import annotations

from collections.abc import Mapping

from monitor.config import PacsSettings
from monitor.pacs.reader import PacsReader, dicomweb_reader

__all__ = ["pacs_reader"]


def pacs_reader(settings: PacsSettings, environ: Mapping[str, str] | None = None) -> PacsReader:
    """A reader of the PACS ``settings`` describe, over ``settings.protocol``."""
    if settings.protocol == "dimse":
        from monitor.pacs.dimse import dimse_reader  # pynetdicom only where DIMSE is used

        return dimse_reader(settings)
    return dicomweb_reader(settings, environ)
