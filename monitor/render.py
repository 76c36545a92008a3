"""Jinja2 rendering: one :meth:`Renderer.render` entry point for sheets, alert and email bodies.

Templates are strict (``StrictUndefined``): a field missing from the context raises
:class:`jinja2.UndefinedError` instead of printing a blank on a technologist's sheet.
HTML (``.html``, ``.htm``, ``.xml``) is autoescaped; text templates (``.txt``) are not.

Where templates come from, first match wins (``ChoiceLoader``):

1. the site's folder (``[notifications] templates_dir``), so an office can override any
   packaged template or add a trial's own sheet (``instructions/<protocol's name>.html``);
2. the packaged defaults in the ``templates`` package.

Times are shown in the site's zone through filters, never with ``strftime`` in templates:

- ``{{ start|when }}``  -> ``Tue 3 Mar 2026 09:30 EST`` (aware datetimes only)
- ``{{ start|day }}``   -> ``Tue 3 Mar 2026`` (a date, or an aware datetime in the site zone)
- ``{{ start|clock }}`` -> ``09:30``

A naive datetime raises ``ValueError``: every time in this program is aware (DESIGN.md,
invariant 3), and guessing a zone on a scan time is how a patient arrives an hour late.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import jinja2

if TYPE_CHECKING:
    from monitor.config import Settings

__all__ = ["Renderer"]

PACKAGED = "templates"
"""The package holding the default templates (``templates/`` at the repository root)."""


class Renderer:
    """Renders named templates with a context; formats times in the site's zone.

    ``render`` raises :class:`jinja2.TemplateNotFound` for an unknown name,
    :class:`jinja2.UndefinedError` for a field the context lacks, and
    :class:`jinja2.TemplateSyntaxError` for a broken site template. None of these messages
    carry context values (only template and field names), so they are safe to log.
    """

    def __init__(
        self,
        *,
        zone: str | ZoneInfo = "UTC",
        site_dir: str | Path | None = None,
        site_name: str = "",
    ) -> None:
        self.zone = zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone)
        loaders: list[jinja2.BaseLoader] = []
        if site_dir:
            loaders.append(jinja2.FileSystemLoader(str(site_dir)))
        loaders.append(jinja2.PackageLoader(PACKAGED, "."))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html", "htm", "xml"), default_for_string=True, default=False
            ),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            # The packaged templates change only with the package: checking their files'
            # times on every render cost a tenth of a dashboard page. A site's own folder is
            # checked, so its edited templates take effect without a restart.
            auto_reload=bool(site_dir),
        )
        self.env.filters["when"] = self.format_datetime
        self.env.filters["day"] = self.format_date
        self.env.filters["clock"] = self.format_clock
        self.env.filters["local_date"] = lambda value: self._local(value).date()
        self.env.globals["site_name"] = site_name
        self.env.globals["zone_name"] = self.zone.key

    @classmethod
    def from_settings(cls, settings: Settings) -> Renderer:
        """The renderer the settings describe (site zone, site name, site template folder)."""
        return cls(
            zone=settings.site.timezone,
            site_dir=settings.notifications.templates_dir or None,
            site_name=settings.site.name,
        )

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        """The template ``name`` (e.g. ``"instructions/default.html"``) rendered with ``context``."""
        return self.env.get_template(name).render(context)

    def has_template(self, name: str) -> bool:
        """Whether ``name`` resolves in the site folder or the packaged templates."""
        try:
            self.env.get_template(name)
        except jinja2.TemplateNotFound:
            return False
        return True

    def _local(self, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime given to a template; times must be timezone-aware")
        return value.astimezone(self.zone)

    def format_datetime(self, value: datetime) -> str:
        """``Tue 3 Mar 2026 09:30 EST``: an aware datetime in the site's zone."""
        local = self._local(value)
        return f"{local:%a} {local.day} {local:%b %Y %H:%M %Z}"

    def format_date(self, value: date | datetime) -> str:
        """``Tue 3 Mar 2026``: a date as is, an aware datetime by its day in the site's zone."""
        if isinstance(value, datetime):
            value = self._local(value)
        return f"{value:%a} {value.day} {value:%b %Y}"

    def format_clock(self, value: datetime) -> str:
        """``09:30``: the time of day of an aware datetime in the site's zone."""
        return f"{self._local(value):%H:%M}"
