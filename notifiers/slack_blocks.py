"""Block Kit layouts for Slack messages, built from a policy-filtered template context.

Built in Python rather than from a template: a Block Kit message is a data structure with
hard limits, and truncation must happen per block, not on rendered JSON. The words come
from the same context the email templates get (``notifiers.compose.message_context``), so
the PHI policy has already removed what Slack may not see.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from notifiers.base import Renderer

__all__ = ["SlackLimits", "build_message", "escape"]

Block = dict[str, Any]


class SlackLimits:
    """Slack's documented limits; a message beyond them is rejected (``invalid_blocks``) or cut."""

    # https://api.slack.com/reference/block-kit/blocks: "You can include up to 50 blocks in each message".
    blocks = 50
    # https://api.slack.com/reference/block-kit/blocks#section: section `text` max 3000 characters,
    # at most 10 `fields`, each max 2000 characters.
    section_text = 3000
    section_fields = 10
    field_text = 2000
    # https://api.slack.com/reference/block-kit/blocks#header: header `text` max 150 characters.
    header_text = 150
    # https://api.slack.com/reference/block-kit/blocks#context: at most 10 elements.
    context_elements = 10
    # https://api.slack.com/methods/chat.postMessage#truncating: `text` beyond 40,000 characters
    # is truncated (and answered `msg_too_long` when far beyond).
    text = 40_000


_SEVERITY_EMOJI = {"critical": ":rotating_light:", "warning": ":warning:", "info": ":information_source:"}


def escape(text: str) -> str:
    """Slack mrkdwn escaping: only ``&``, ``<`` and ``>`` (https://api.slack.com/reference/surfaces/formatting#escaping)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": _cut(text, SlackLimits.header_text)}}


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, SlackLimits.section_text)}}


def _fields(pairs: Iterable[tuple[str, str]]) -> Block | None:
    items = [
        {"type": "mrkdwn", "text": _cut(f"*{label}*\n{escape(value)}", SlackLimits.field_text)}
        for label, value in pairs
        if value
    ][: SlackLimits.section_fields]
    return {"type": "section", "fields": items} if items else None


def _context(parts: Iterable[str]) -> Block:
    elements = [{"type": "mrkdwn", "text": escape(part)} for part in parts if part]
    return {"type": "context", "elements": elements[: SlackLimits.context_elements]}


def _list_sections(title: str, items: Sequence[str], empty: str) -> list[Block]:
    """``*title*`` and a bulleted list, split over as many sections as the text limit needs."""
    lines = [f"• {escape(item)}" for item in items] or [escape(empty)]
    blocks: list[Block] = []
    current = f"*{title}*"
    for line in lines:
        line = _cut(line, SlackLimits.section_text - len(title) - 8)
        if len(current) + 1 + len(line) > SlackLimits.section_text:
            blocks.append(_section(current))
            current = f"*{title}* (continued)"
        current += "\n" + line
    blocks.append(_section(current))
    return blocks


def _link(url: str, label: str) -> Block | None:
    if not url:
        return None
    return _section(f"<{escape(url)}|{escape(label)}>")


def _when(renderer: Renderer, ctx: dict[str, Any], key: str = "exam_start") -> str:
    value = ctx.get(key)
    return renderer.format_datetime(value) if value else ""


def _identity(ctx: dict[str, Any]) -> list[tuple[str, str]]:
    """PHI fields, present in the context only when the channel's policy allows them."""
    pairs = [("Initials", str(ctx.get("patient_initials") or ""))]
    pairs.append(("Patient", str(ctx.get("patient_name") or "")))
    pairs.append(("MRN", str(ctx.get("mrn") or "")))
    return pairs


def _alert(renderer: Renderer, ctx: dict[str, Any]) -> list[Block | None]:
    emoji = _SEVERITY_EMOJI.get(str(ctx.get("severity") or ""), "")
    lines = [escape(ctx["detail"])] if ctx["detail"] else []
    if ctx["late"]:
        lines.insert(0, f"_Note: this message was {escape(ctx['late'])}._")
    if ctx["change"]:
        lines.append(f"*What changed:* {escape(ctx['change'])}")
    elif ctx["previous_exam_start"] and ctx["exam_start"]:
        moved = f"{_when(renderer, ctx, 'previous_exam_start')} to {_when(renderer, ctx)}"
        lines.append(f"*What changed:* moved from {escape(moved)}")
    if ctx["finding_title"] and ctx["kind"] != "alert":
        lines.insert(0, f"*Status:* {escape(ctx['finding_title'])}")
    if ctx["next_step"]:
        lines.append(f"*Next step:* {escape(ctx['next_step'])}")
    window = ""
    if ctx["window_start"] and ctx["window_end"]:
        window = f"{renderer.format_date(ctx['window_start'])} to {renderer.format_date(ctx['window_end'])}"
    exam = ", ".join(part for part in (ctx["exam_label"] or ctx["modality"], _when(renderer, ctx)) if part)
    room = f"{ctx['room']} ({ctx['modality']})" if ctx["room"] and ctx["modality"] else ctx["room"]
    pairs = [("Subject", ctx["subject"]), ("Visit", ctx["timepoint"]), ("Exam", exam), ("Room", room)]
    pairs += [("Appointment", ctx["appointment_id"]), ("Accession", ctx["accession"]), ("Window", window)]
    pairs += _identity(ctx)
    return [
        _header(f"{emoji} {ctx['title']} · {ctx['trial']}".strip()),
        _section("\n".join(lines)) if lines else None,
        _fields(pairs),
        _link(ctx["dashboard_url"], "Open this exam in the dashboard"),
        _context([ctx["trial"], ctx["trial_title"], f"PHI policy: {ctx['phi_policy']}"]),
    ]


def _instructions(renderer: Renderer, ctx: dict[str, Any]) -> list[Block | None]:
    when = _when(renderer, ctx) or "not scheduled yet"
    pairs = [
        ("When", when),
        ("Room", ctx["room"]),
        ("Appointment", ctx["appointment_id"]),
        ("Accession", ctx["accession"]),
    ]
    pairs += [("Exam", ctx["exam_label"] or ctx["modality"]), ("Subject", ctx["subject"]), *_identity(ctx)]
    if ctx["same_scanner"]:
        baseline = [f"Same scanner as the {ctx['same_scanner_as'] or 'baseline'} scan: {ctx['same_scanner']}"]
    elif ctx["same_scanner_as"]:
        baseline = [f"Same scanner as the {ctx['same_scanner_as']} scan (see the previous study)"]
    else:
        baseline = []
    blocks: list[Block | None] = [
        _header(f"Scan instructions · {ctx['trial']} · {ctx['timepoint'] or ctx['exam_label']}"),
        _section(f":warning: *{escape(ctx['warning'])}*") if ctx["warning"] else None,
        _section(f"_Note: this sheet was {escape(ctx['late'])}._") if ctx["late"] else None,
        _fields(pairs),
    ]
    blocks += _list_sections("Required parameters", ctx["parameters"], "Standard clinical protocol")
    blocks += _list_sections("Must match baseline", baseline, "No scanner requirement")
    blocks += _list_sections("Preparation", ctx["preparation"], "None beyond the clinical routine")
    blocks += _list_sections("Paperwork", ctx["paperwork"], f"Mark the exam as research ({ctx['trial']})")
    blocks += _list_sections("Whom to call", ctx["contacts"], f"The {ctx['trial']} research coordinator")
    blocks.append(_link(ctx["dashboard_url"], "Printable instruction sheet"))
    return blocks


def _digest(renderer: Renderer, ctx: dict[str, Any]) -> list[Block | None]:
    entries: list[dict[str, Any]] = ctx["entries"]
    head: list[Block | None] = [
        _header(f"Daily digest · {ctx['trial']} · {renderer.format_date(ctx['day'])}")
    ]
    tail: list[Block | None] = [_link(ctx["dashboard_url"], f"Open {ctx['trial']} in the dashboard")]
    room_for = SlackLimits.blocks - len(head) - len(tail) - 1  # one block for "and N more"
    rows: list[Block | None] = []
    for entry in entries[:room_for]:
        when = _when(renderer, entry) or "not booked"
        line = f"*{escape(when)}* · subject {escape(entry['subject'])} · {escape(entry['timepoint'])}"
        if entry.get("patient_initials"):
            line += f" ({escape(entry['patient_initials'])})"
        if entry["room"]:
            line += f" · {escape(entry['room'])}"
        if entry["detail"]:
            line += f"\n{escape(entry['detail'])}"
        if entry["next_step"]:
            line += f"\n*Next step:* {escape(entry['next_step'])}"
        rows.append(_section(line))
    if not entries:
        rows.append(_section("Nothing scheduled or open for this trial."))
    if len(entries) > room_for:
        rows.append(_section(f"…and {len(entries) - room_for} more: see the dashboard."))
    return head + rows + tail


def _operations(renderer: Renderer, ctx: dict[str, Any]) -> list[Block | None]:
    emoji = ":white_check_mark:" if ctx["state"] == "recovered" else ":warning:"
    return [
        _header(ctx["headline"]),
        _section(f"{emoji} {escape(ctx['summary'])}"),
        _section(escape(ctx["detail"])) if ctx["detail"] else None,
        _context(
            [f"since {renderer.format_datetime(ctx['since'])}", f"feed {ctx['feed']}" if ctx["feed"] else ""]
        ),
        _link(ctx["dashboard_url"], "Feed health"),
    ]


def build_message(renderer: Renderer, ctx: dict[str, Any]) -> tuple[str, list[Block]]:
    """``(text, blocks)`` for ``chat.postMessage``: the notification text and the Block Kit layout.

    ``ctx`` is :func:`notifiers.compose.message_context`. The result is within
    :class:`SlackLimits` whatever the content's length.
    """
    kind = ctx["kind"]
    if kind == "operations":
        built = _operations(renderer, ctx)
    elif kind == "digest":
        built = _digest(renderer, ctx)
    elif kind == "instructions":
        built = _instructions(renderer, ctx)
    else:
        built = _alert(renderer, ctx)
    blocks = [block for block in built if block is not None]
    if len(blocks) > SlackLimits.blocks:
        blocks = [*blocks[: SlackLimits.blocks - 1], _section("…more in the dashboard.")]
    text = ctx["headline"]
    if ctx.get("next_step"):
        text += f"\nNext step: {ctx['next_step']}"
    return _cut(escape(text), SlackLimits.text), blocks
