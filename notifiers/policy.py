"""PHI policy: what a channel may see of a message (DESIGN.md, invariant 5).

=========  ==================================================================================
policy     fields passed to templates and payloads
=========  ==================================================================================
none       trial, subject study id, timepoint, exam time, modality, room, accession,
           appointment and order numbers (what scheduling looks the exam up by), dashboard
           link, finding, window, next step, technologist parameters (no patient identifiers
           at all). The default for every channel.
limited    ``none`` + the patient's initials.
full       ``limited`` + MRN, name and birth date (the two-identifier check before a scan).
           Internal email only: the settings refuse it for Slack and webhooks, and email
           applies it only to recipients in ``[email] internal_domains``.
=========  ==================================================================================

:func:`content_view` is the only way content reaches a template or a payload: it copies the
allowed fields into a plain dict. A forbidden field is not blanked but absent, so a template
that names it fails (``StrictUndefined``) instead of leaking; templates test optional PHI
with ``{% if mrn is defined %}``. As a second line of defence, a forbidden identifier that
turns up inside free text (``detail``, ``next_step``, ``change`` ...) is replaced by
``[withheld]`` there.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import fields
from datetime import date
from typing import Any

from notifiers.base import AlertContent, Content, DigestContent, OperationsContent

__all__ = ["PHI_FIELDS", "WITHHELD", "PhiPolicy", "alert_view", "content_view"]

WITHHELD = "[withheld]"


class PhiPolicy(enum.StrEnum):
    NONE = "none"
    LIMITED = "limited"
    FULL = "full"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, name: str) -> bool:
        """Whether a field may be shown under this policy (every non-PHI field may)."""
        needed = PHI_FIELDS.get(name)
        return needed is None or self.rank >= needed.rank

    def at_most(self, ceiling: PhiPolicy) -> PhiPolicy:
        """The stricter of this policy and ``ceiling``."""
        return self if self.rank <= ceiling.rank else ceiling


_RANK = {PhiPolicy.NONE: 0, PhiPolicy.LIMITED: 1, PhiPolicy.FULL: 2}

PHI_FIELDS: dict[str, PhiPolicy] = {
    "patient_initials": PhiPolicy.LIMITED,
    "mrn": PhiPolicy.FULL,
    "patient_name": PhiPolicy.FULL,
    "birth_date": PhiPolicy.FULL,
}
"""Each PHI field of :class:`AlertContent` and the least policy that shows it."""


def _date_spellings(day: date) -> list[str]:
    return [day.isoformat(), f"{day:%m/%d/%Y}", f"{day:%d.%m.%Y}", f"{day:%Y%m%d}", f"{day:%d/%m/%Y}"]


def _scrubber(content: AlertContent, policy: PhiPolicy) -> re.Pattern[str] | None:
    """A pattern matching the forbidden identifiers of ``content`` (initials are too short to hunt)."""
    needles: list[str] = []
    if not policy.allows("mrn") and len(content.mrn.strip()) >= 3:
        needles.append(content.mrn.strip())
    if not policy.allows("patient_name") and content.patient_name.strip():
        name = content.patient_name.strip()
        needles.append(name)
        needles.extend(part for part in re.split(r"[\s,^]+", name) if len(part) >= 3)
    if not policy.allows("birth_date") and content.birth_date is not None:
        needles.extend(_date_spellings(content.birth_date))
    if not needles:
        return None
    alternatives = "|".join(re.escape(n) for n in sorted(set(needles), key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def _clean(value: Any, pattern: re.Pattern[str] | None) -> Any:
    if pattern is None:
        return value
    if isinstance(value, str):
        return pattern.sub(WITHHELD, value)
    if isinstance(value, tuple):
        return tuple(_clean(item, pattern) for item in value)
    return value


def alert_view(content: AlertContent, policy: PhiPolicy) -> dict[str, Any]:
    """The fields of ``content`` that ``policy`` allows, as a plain dict for templates and payloads.

    Forbidden PHI fields are absent (not empty); forbidden identifiers found inside allowed
    text are replaced by :data:`WITHHELD`. ``phi_policy`` is added so a template can say
    what was withheld.
    """
    pattern = _scrubber(content, policy)
    view: dict[str, Any] = {}
    for item in fields(content):
        if not policy.allows(item.name):
            continue
        value = getattr(content, item.name)
        view[item.name] = value if item.name in PHI_FIELDS else _clean(value, pattern)
    view["phi_policy"] = policy.value
    return view


def _digest_view(digest: DigestContent, policy: PhiPolicy) -> dict[str, Any]:
    entries: Iterable[AlertContent] = digest.entries
    return {
        "trial": digest.trial,
        "trial_title": digest.trial_title,
        "day": digest.day,
        "dashboard_url": digest.dashboard_url,
        "entries": [alert_view(entry, policy) for entry in entries],
        "phi_policy": policy.value,
    }


def content_view(content: Content, policy: PhiPolicy) -> dict[str, Any]:
    """:func:`alert_view` for an alert; for a digest, the digest's fields with each entry's
    view; an operations message as it is."""
    if isinstance(content, DigestContent):
        return _digest_view(content, policy)
    if isinstance(content, OperationsContent):  # no patient data by construction
        view = {item.name: getattr(content, item.name) for item in fields(content)}
        return {**view, "phi_policy": policy.value}
    return alert_view(content, policy)
