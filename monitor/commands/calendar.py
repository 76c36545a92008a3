"""``hiro-monitor calendar``: secret addresses of the iCalendar feeds (``monitor/web/calendar.py``).

    calendar add (--trial ID | --coordinator USER) [--label TEXT]   print a new feed address once
    calendar list [--json]                                          every address made (no tokens)
    calendar revoke ID                                              the address answers 404 from now on

The address is printed once and never again: only the token's SHA-256 is stored. Its base
is ``[notifications] dashboard_base_url``, else the dashboard's bind address. A trial that
has no protocol in the store, or a user name that is not an active coordinator, is refused
(exit 2); revoking an unknown or already revoked token exits 1.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from monitor.commands import open_engine, print_json, utc_now
from monitor.config import Settings
from monitor.store.accounts import Role, find_user
from monitor.store.calendar import CalendarScope, issue_token, list_tokens, revoke_token
from monitor.store.registry.protocols import trial_known

__all__ = ["feed_base_url", "register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    calendar = commands.add_parser("calendar", help="iCalendar feed addresses per trial or coordinator")
    actions = calendar.add_subparsers(dest="calendar_command", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="make a feed address and print it (once)")
    scope = add.add_mutually_exclusive_group(required=True)
    scope.add_argument("--trial", help="the feed lists this trial's exams and due windows")
    scope.add_argument("--coordinator", help="the feed lists the trials assigned to this account")
    add.add_argument("--label", default="", help="whose calendar it is, for the audit trail")
    add.set_defaults(handler=cmd_calendar_add)

    listing = actions.add_parser("list", help="every feed address made (the tokens are not kept)")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(handler=cmd_calendar_list)

    revoke = actions.add_parser("revoke", help="stop a feed address (it answers 404 from now on)")
    revoke.add_argument("token_id", type=int, metavar="ID")
    revoke.set_defaults(handler=cmd_calendar_revoke)


def feed_base_url(settings: Settings) -> str:
    """Where calendar apps reach the dashboard: the configured external address, else the bind."""
    configured = settings.notifications.dashboard_base_url.rstrip("/")
    return configured or f"http://{settings.web.host}:{settings.web.port}"


def _operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"[:120]
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "cli"


def _scope_problem(conn: Connection, scope: CalendarScope, value: str) -> str | None:
    """Why a feed for ``scope``/``value`` cannot be made, or None."""
    if scope is CalendarScope.TRIAL:
        if not trial_known(conn, value):
            return f"no trial {value!r} in the store (load its protocol with `hiro-monitor trials load`)"
        return None
    user = find_user(conn, value)
    if user is None:
        return f"no active account {value!r} (add it with `hiro-monitor users add`)"
    if user.role is not Role.COORDINATOR:
        return f"{value!r} is a {user.role.value}, not a coordinator: use --trial for a trial's feed"
    return None


def cmd_calendar_add(settings: Settings, args: argparse.Namespace) -> int:
    scope, value = (
        (CalendarScope.TRIAL, args.trial) if args.trial else (CalendarScope.COORDINATOR, args.coordinator)
    )
    engine = open_engine(settings)
    with engine.begin() as conn:
        problem = _scope_problem(conn, scope, value)
        if problem is None:
            token_id, token = issue_token(conn, scope, value, args.label, _operator(), utc_now(args))
    engine.dispose()
    if problem is not None:
        print(f"calendar add: {problem}", file=sys.stderr)
        return 2
    label = f" ({args.label})" if args.label else ""
    print(f"calendar feed {token_id}: {scope.value} {value}{label}")
    print(f"{feed_base_url(settings)}/calendar/{token}.ics")
    print(
        "This address is shown once (only its hash is stored); anyone who has it can read the feed. "
        f"Stop it with `hiro-monitor calendar revoke {token_id}`."
    )
    if not settings.notifications.dashboard_base_url:
        print(
            "note: [notifications] dashboard_base_url is not set; the address uses the dashboard's bind",
            file=sys.stderr,
        )
    return 0


def cmd_calendar_list(settings: Settings, args: argparse.Namespace) -> int:
    engine = open_engine(settings)
    with engine.connect() as conn:
        tokens = list_tokens(conn)
    engine.dispose()
    if args.json:
        print_json(
            [
                {
                    "id": t.id,
                    "scope": t.scope_kind.value,
                    "value": t.scope_value,
                    "label": t.label,
                    "created_at": t.created_at.isoformat(),
                    "created_by": t.created_by,
                    "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
                    "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
                }
                for t in tokens
            ]
        )
        return 0
    from rich.console import Console
    from rich.table import Table

    zone = ZoneInfo(settings.site.timezone)

    def local(moment: datetime | None) -> str:
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M") if moment is not None else ""

    table = Table(title=f"Calendar feeds ({len(tokens)}), times in {settings.site.timezone}")
    for column in ("id", "scope", "label", "created", "by", "last read", "revoked"):
        table.add_column(column)
    for t in tokens:
        table.add_row(
            str(t.id),
            f"{t.scope_kind.value} {t.scope_value}",
            t.label,
            local(t.created_at),
            t.created_by,
            local(t.last_used_at),
            local(t.revoked_at),
        )
    Console().print(table)
    return 0


def cmd_calendar_revoke(settings: Settings, args: argparse.Namespace) -> int:
    engine = open_engine(settings)
    with engine.begin() as conn:
        revoked = revoke_token(conn, args.token_id, utc_now(args))
    engine.dispose()
    if not revoked:
        print(f"calendar revoke: no calendar feed {args.token_id} in force", file=sys.stderr)
        return 1
    print(f"calendar feed {args.token_id} revoked")
    return 0
