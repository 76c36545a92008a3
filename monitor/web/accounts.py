"""Accounts (admins): who may sign in, with which role and over which trials or modalities.

Every change is a POST with the CSRF token and one audit row with the account's access
before and after (``account.change``, ``account.disable``, ``account.enable``). Passwords
are never shown or set here (``hiro-monitor users add`` reads them from a prompt). An
admin cannot disable their own account or take away their own admin role: the office
would be left without anyone to undo it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from monitor.store.accounts import Role, Session, change_account, list_accounts, record_audit
from monitor.store.database import autocommit
from monitor.web.context import require, web_of
from monitor.web.security import client_address, require_csrf

router = APIRouter(include_in_schema=False)

ACTIONS = ("change", "disable", "enable")


@router.get("/accounts")
def accounts(request: Request, session: Annotated[Session, Depends(require(Role.ADMIN))]) -> Response:
    web = web_of(request)
    with autocommit(web.engine) as conn:
        rows = list_accounts(conn)
        record_audit(
            conn, web.clock(), session.user.username, "view", "accounts", "", client_address(request)
        )
    context = {
        "accounts": rows,
        "roles": [role.value for role in Role],
        "notice": request.query_params.get("saved", ""),
    }
    return web.page(request, session, "accounts.html", context)


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.replace("\n", ",").split(",") if name.strip()]


@router.post("/accounts")
def change(
    request: Request,
    session: Annotated[Session, Depends(require(Role.ADMIN))],
    username: Annotated[str, Form(max_length=120)],
    action: Annotated[str, Form(max_length=20)],
    role: Annotated[str, Form(max_length=20)] = "",
    trials: Annotated[str, Form(max_length=2000)] = "",
    modalities: Annotated[str, Form(max_length=200)] = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    require_csrf(session, csrf_token)
    if action not in ACTIONS:
        raise HTTPException(status_code=422, detail="action must be change, disable or enable")
    own = username == session.user.username
    if own and (action == "disable" or (action == "change" and role != Role.ADMIN.value)):
        raise HTTPException(
            status_code=422, detail="you cannot disable your own account or drop its admin role"
        )
    web = web_of(request)
    now = web.clock()
    try:
        with web.engine.begin() as conn:
            if action == "change":
                if role not in [r.value for r in Role]:
                    raise ValueError("choose a role")
                before, after = change_account(
                    conn, username, now, role=Role(role), trials=_names(trials), modalities=_names(modalities)
                )
            else:
                before, after = change_account(conn, username, now, active=action == "enable")
            record_audit(
                conn, now, session.user.username, f"account.{action}", "account", username,
                client_address(request), before=before.access(), after=after.access(),
            )  # fmt: skip
    except LookupError:
        raise HTTPException(status_code=404) from None
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    return RedirectResponse(f"/accounts?saved={username}#account-{username}", status_code=303)
