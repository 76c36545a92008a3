"""``hiro-monitor db upgrade`` and ``hiro-monitor db current``: the schema's Alembic migrations.

    db upgrade [--to REVISION]    migrate the configured database (default: to the newest)
    db current                    print the database's revision and the newest one

``hiro-monitor run`` and every other command also migrate to the newest revision on start;
``db upgrade`` lets IT do it as a separate, logged step of an upgrade (after a backup,
see deploy/BACKUP.md). Exit 0 when the database is at the revision asked for; ``db current``
exits 1 when the database is behind the code. 3 when the database cannot be reached.
"""

from __future__ import annotations

import argparse

from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from monitor.config import Settings
from monitor.store.database import alembic_config, current_revision, make_engine, upgrade

__all__ = ["head_revision", "register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = commands.add_parser("db", help="database schema: upgrade, current revision")
    actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = actions.add_parser("upgrade", help="apply the migrations (default: to the newest revision)")
    up.add_argument("--to", dest="revision", default="head", help="target revision (default: head)")
    up.set_defaults(handler=cmd_db_upgrade)
    actions.add_parser("current", help="print the database's schema revision").set_defaults(
        handler=cmd_db_current
    )


def head_revision(engine: Engine) -> str:
    """The newest revision the code knows."""
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert head is not None, "the migrations folder has no revision"
    return head


def _safe_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.database.url).render_as_string(hide_password=True)


def cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    engine = make_engine(settings.database.url)
    try:
        before = current_revision(engine)
        upgrade(engine, args.revision)
        after = current_revision(engine)
    except OperationalError as exc:
        print(f"cannot reach the database {_safe_url(settings)}: {type(exc.orig).__name__}")
        return 3
    finally:
        engine.dispose()
    if before == after:
        print(f"{_safe_url(settings)}: already at revision {after}")
    else:
        print(f"{_safe_url(settings)}: upgraded from {before or 'an empty database'} to {after}")
    return 0


def cmd_db_current(settings: Settings, args: argparse.Namespace) -> int:
    engine = make_engine(settings.database.url)
    try:
        current = current_revision(engine)
        head = head_revision(engine)
    except OperationalError as exc:
        print(f"cannot reach the database {_safe_url(settings)}: {type(exc.orig).__name__}")
        return 3
    finally:
        engine.dispose()
    state = "up to date" if current == head else "behind: run `hiro-monitor db upgrade`"
    print(f"{_safe_url(settings)}: revision {current or 'none (empty database)'}, newest {head} ({state})")
    return 0 if current == head else 1
