"""Logging set-up from the ``[logging]`` settings: text or JSON lines, a level per component.

    configure_logging(settings)                      # what `hiro-monitor` does on start
    configure_logging(settings, level="DEBUG")       # --log-level overrides [logging] level

``format = "json"`` writes one JSON object per line (for journald, Loki, Splunk...)::

    {"time": "2026-11-25T12:00:00.123Z", "level": "INFO", "logger": "monitor.mllp",
     "message": "connection from 10.0.0.5:51234", "peer": "10.0.0.5"}

with every ``extra={...}`` field of the call as a key of its own, and ``exception`` with
the traceback when there is one. ``levels`` sets a level per logger name
(``{"monitor.mllp" = "DEBUG"}``); a component inherits the nearest configured parent.
Alembic's INFO lines ("Context impl SQLiteImpl", "Will assume transactional DDL") are
hidden unless the root level is DEBUG.

What this module does not do is decide what is logged: the code never logs message
content, names, MRNs or birth dates (DESIGN.md invariant 5); a test holds it to that.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import IO, Any

from monitor.config import Settings

__all__ = ["JsonFormatter", "configure_logging"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

# Libraries that are chatty at INFO about things an operator does not act on.
QUIET_UNLESS_DEBUG = ("alembic", "apscheduler")  # their INFO lines narrate routine work


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in document:
                document[key] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json.dumps(document, default=str, ensure_ascii=False)


class _Handler(logging.StreamHandler[IO[str]]):
    """The handler :func:`configure_logging` installs (and replaces on the next call).

    Without a stream it writes to whatever ``sys.stderr`` is at the time of each record (as
    ``logging.lastResort`` does), so a replaced stderr never leaves it on a closed stream.
    """

    def __init__(self, stream: IO[str] | None, levels: tuple[str, ...]) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self.follow_stderr = stream is None
        self.levels = levels  # loggers whose level this configuration set

    def emit(self, record: logging.LogRecord) -> None:
        if self.follow_stderr:
            self.stream = sys.stderr
        super().emit(record)


def configure_logging(
    settings: Settings, *, level: str | None = None, stream: IO[str] | None = None
) -> logging.Handler:
    """Install one handler on the root logger (replacing the one a previous call installed)
    and set the levels; returns the handler. ``level`` overrides ``[logging] level``."""
    config = settings.logging
    root_level = (level or config.level).upper()
    handler = _Handler(stream, (*QUIET_UNLESS_DEBUG, *config.levels))
    handler.setFormatter(JsonFormatter() if config.format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
        old.close()
        for name in old.levels:
            logging.getLogger(name).setLevel(logging.NOTSET)
    root.addHandler(handler)
    root.setLevel(root_level)
    for name in QUIET_UNLESS_DEBUG:
        logging.getLogger(name).setLevel(logging.NOTSET if root_level == "DEBUG" else logging.WARNING)
    for name, component_level in config.levels.items():
        logging.getLogger(name).setLevel(component_level.upper())
    return handler


def where(exc: BaseException) -> str:
    """``exc``'s type and innermost code location (file, line, function): code, never values.

    For logging an unexpected failure on the message path, where ``log.exception`` would
    print the exception's message and a database error's parameters, which can be PHI.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    return f"{type(exc).__name__} at {last.filename}:{last.lineno} in {last.name}"
