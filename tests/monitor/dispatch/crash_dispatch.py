"""A dispatcher that is killed (SIGKILL) right after a message left, before its bookkeeping.

    python -m tests.monitor.dispatch.crash_dispatch SETTINGS_JSON ENVIRON_JSON NOW_ISO

Run by the crash tests as a subprocess: it sends whatever is due, and the first time it
would record a delivery it kills itself, leaving that row in ``sending`` exactly as a
power cut or ``kill -9`` between the provider's answer and the commit would.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from datetime import datetime
from typing import Any

from monitor.config import Settings
from monitor.dispatch.dispatcher import Dispatcher
from monitor.store.database import make_engine
from monitor.store.outbox.claims import Claims


def _killed(*args: Any, **kwargs: Any) -> bool:
    os.kill(os.getpid(), signal.SIGKILL)
    return False


def main() -> None:
    settings = Settings.model_validate(json.loads(sys.argv[1]))
    environ = json.loads(sys.argv[2])
    now = datetime.fromisoformat(sys.argv[3])
    Claims.sent = _killed  # type: ignore[method-assign]
    engine = make_engine(settings.database.url)
    Dispatcher(engine, settings, environ=environ, clock=lambda: now).run_once(timeout=60)
    sys.exit("the dispatcher finished without sending anything")


if __name__ == "__main__":
    main()
