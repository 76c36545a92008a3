"""``hiro-monitor web`` and ``hiro-monitor users``.

    web [--host H] [--port P] [--workers N]    serve the dashboard and API (uvicorn)
    users add USERNAME --role R [--trial T ...] [--modality M ...] [--password-file F | --sso-only]
    users list [--json]                        every account: role, scope, active
    users disable|enable USERNAME              stop or allow sign-in (audited, before and after)

The password is read from a prompt (twice) or from the first line of ``--password-file``;
it is never accepted on the command line, where it would land in shell history.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from pathlib import Path

from sqlalchemy import Engine

from monitor.commands import command_clock, open_engine, operator, print_json, utc_now
from monitor.config import Settings
from monitor.store.accounts import Account, Role, add_user, change_account, list_accounts, record_audit

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    web = commands.add_parser("web", help="serve the dashboard and JSON API")
    web.add_argument("--host", dest="web_host", help="bind address, overrides [web] host")
    web.add_argument("--port", dest="web_port", type=int, help="port, overrides [web] port")
    web.add_argument(
        "--workers", type=int, default=1, help="worker processes (default 1; more for many concurrent users)"
    )
    web.set_defaults(handler=cmd_web)

    users = commands.add_parser("users", help="dashboard accounts")
    actions = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="create an account (or replace its role, scope and password)")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--trial", action="append", default=[], help="a trial a coordinator may see (repeat)")
    add.add_argument("--modality", action="append", default=[], help="a technologist's modality (repeat)")
    source = add.add_mutually_exclusive_group()
    source.add_argument("--password-file", type=Path, help="read the password from this file's first line")
    source.add_argument("--sso-only", action="store_true", help="no password: sign-in through the proxy only")
    add.set_defaults(handler=cmd_users_add)
    listing = actions.add_parser("list", help="every account: role, scope, whether it may sign in")
    listing.add_argument("--json", action="store_true", help="a JSON list instead of a table")
    listing.set_defaults(handler=cmd_users_list)
    for name, active in (("disable", False), ("enable", True)):
        change = actions.add_parser(
            name, help="stop the account signing in (its sessions end)" if not active else "allow it again"
        )
        change.add_argument("username")
        change.set_defaults(handler=cmd_users_activate, active=active)


def _password(args: argparse.Namespace) -> str | None:
    if args.sso_only:
        return None
    if args.password_file is not None:
        lines = args.password_file.read_text(encoding="utf-8").splitlines()
        return lines[0] if lines else ""
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def cmd_users_add(settings: Settings, args: argparse.Namespace) -> int:
    try:
        password = _password(args)
        if password is not None and len(password) < 12:
            raise ValueError("the password must have at least 12 characters")
        role = Role(args.role)
        engine = open_engine(settings)
        with engine.begin() as conn:
            add_user(
                conn,
                args.username,
                role,
                password,
                utc_now(args),
                trials=args.trial,
                modalities=args.modality,
            )
        engine.dispose()
    except (OSError, ValueError) as exc:
        print(f"users add: {exc}", file=sys.stderr)
        return 2
    print(f"account {args.username}: {role.value}")
    return 0


def cmd_users_list(settings: Settings, args: argparse.Namespace) -> int:
    engine = open_engine(settings)
    try:
        with engine.connect() as conn:
            accounts = list_accounts(conn)
    finally:
        engine.dispose()
    if args.json:
        print_json([_as_json(account) for account in accounts])
        return 0
    print(f"{'account':<20} {'role':<12} {'may sign in':<11} scope")
    for account in accounts:
        scope = ", ".join(account.trials or account.modalities) or (
            "feeds and messages, no trial" if account.role is Role.INTEGRATION else "all trials"
        )
        may = "yes" if account.active else "no"
        print(f"{account.username[:20]:<20} {account.role.value:<12} {may:<11} {scope}")
    return 0


def _as_json(account: Account) -> dict[str, object]:
    return {
        "username": account.username,
        "role": account.role.value,
        "trials": list(account.trials),
        "modalities": list(account.modalities),
        "active": account.active,
        "sso_only": account.sso_only,
    }


def cmd_users_activate(settings: Settings, args: argparse.Namespace) -> int:
    engine = open_engine(settings)
    now = utc_now(args)
    verb = "enable" if args.active else "disable"
    try:
        with engine.begin() as conn:
            before, after = change_account(conn, args.username, now, active=args.active)
            record_audit(
                conn, now, operator(), f"account.{verb}", "account", args.username,
                before=before.access(), after=after.access(),
            )  # fmt: skip
    except (LookupError, ValueError) as exc:
        print(f"users {verb}: {exc.args[0]}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(f"account {args.username}: {'may sign in' if args.active else 'disabled'}")
    return 0


def cmd_web(settings: Settings, args: argparse.Namespace) -> int:
    from monitor.web.app import create_app, serve

    web = settings.web
    if args.web_host or args.web_port is not None:
        web = web.model_copy(
            update={k: v for k, v in (("host", args.web_host), ("port", args.web_port)) if v is not None}
        )
    engine = open_engine(settings)
    print(f"dashboard on http://{web.host}:{web.port}/", file=sys.stderr)
    if args.workers > 1:
        return _serve_workers(settings, args, web.host, web.port, engine)
    app = create_app(settings.model_copy(update={"web": web}), engine, clock=command_clock(args))
    try:
        asyncio.run(serve(app, web))
    except KeyboardInterrupt:
        pass
    finally:
        engine.dispose()
    return 0


def _serve_workers(settings: Settings, args: argparse.Namespace, host: str, port: int, engine: Engine) -> int:
    """uvicorn with ``--workers`` processes; each builds its app from the environment."""
    import uvicorn

    engine.dispose()
    if args.config:
        os.environ["HIRO_CONFIG"] = str(args.config)
    os.environ["HIRO_DATABASE_URL"] = settings.database.url  # the workers read the same store
    uvicorn.run(
        "monitor.web.asgi:app", factory=True, host=host, port=port, workers=args.workers,
        log_level="warning", access_log=False, lifespan="off",
        proxy_headers=False,  # the peer is decided by monitor.web.peer (see uvicorn_config)
    )  # fmt: skip
    return 0
