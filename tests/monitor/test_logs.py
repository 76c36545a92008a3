"""Logging: JSON lines, levels per component, alembic kept quiet, and no PHI in any record."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.config import Settings
from monitor.daemon import Daemon
from monitor.feeds.mllp import frame
from monitor.logs import configure_logging
from monitor.store.database import make_engine, upgrade
from tests.monitor.hl7_messages import BIRTH_DATE, MRN, PATIENT_NAME, hold, siu

REPO = Path(__file__).resolve().parents[2]
END = b"\x1c\r"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    for name in ("monitor", "monitor.mllp", "monitor.intake", "alembic"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def _settings(**section: Any) -> Settings:
    return Settings.model_validate({"logging": section})


def _records(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_json_format_writes_one_object_per_line_with_extra_fields() -> None:
    buffer = io.StringIO()
    configure_logging(_settings(format="json"), stream=buffer)
    log = logging.getLogger("monitor.mllp")
    log.info("connection from %s", "10.0.0.5", extra={"peer": "10.0.0.5", "bytes": 512})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("handler failed")
    first, second = _records(buffer)
    assert first["level"] == "INFO" and first["logger"] == "monitor.mllp"
    assert first["message"] == "connection from 10.0.0.5"
    assert first["peer"] == "10.0.0.5" and first["bytes"] == 512
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exception"]


def test_a_component_level_applies_to_that_component_only() -> None:
    buffer = io.StringIO()
    configure_logging(
        _settings(format="json", level="WARNING", levels={"monitor.mllp": "DEBUG"}), stream=buffer
    )
    logging.getLogger("monitor.mllp").debug("frame of %d bytes", 300)
    logging.getLogger("monitor.mllp.tls").debug("a child inherits its parent's level")
    logging.getLogger("monitor.intake").info("not shown: the root level is WARNING")
    logging.getLogger("monitor.intake").warning("shown")
    assert [r["message"] for r in _records(buffer)] == [
        "frame of 300 bytes",
        "a child inherits its parent's level",
        "shown",
    ]


def test_the_command_line_level_overrides_the_settings() -> None:
    buffer = io.StringIO()
    configure_logging(_settings(level="ERROR"), level="DEBUG", stream=buffer)
    logging.getLogger("monitor.daemon").debug("visible")
    assert "visible" in buffer.getvalue()


def test_alembic_info_lines_are_hidden_unless_debug(tmp_path: Path) -> None:
    quiet, loud = io.StringIO(), io.StringIO()
    configure_logging(_settings(), stream=quiet)
    upgrade(make_engine(f"sqlite:///{tmp_path / 'a.db'}"))
    configure_logging(_settings(), level="DEBUG", stream=loud)
    upgrade(make_engine(f"sqlite:///{tmp_path / 'b.db'}"))
    assert "alembic" not in quiet.getvalue()
    assert "alembic.runtime.migration" in loud.getvalue()


def test_cli_writes_json_lines_when_configured(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "c.db"}"\n[logging]\nformat = "json"\n')
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitor.cli",
            "--config",
            str(config),
            "--log-level",
            "DEBUG",
            "db",
            "upgrade",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert lines and {line["logger"].split(".")[0] for line in lines} >= {"alembic"}


def test_no_record_carries_mrn_name_or_birth_date_while_a_message_is_processed(tmp_path: Path) -> None:
    buffer = io.StringIO()
    url = f"sqlite:///{tmp_path / 'phi.db'}"
    settings = Settings.model_validate(
        {"database": {"url": url}, "mllp": {"port": 0}, "logging": {"format": "json", "level": "DEBUG"}}
    )
    configure_logging(settings, stream=buffer)
    bad_time = siu(control_id="MSG0003", start="2026130199")  # unreadable start: answered AE
    payloads = [siu(), siu(), siu("S15", control_id="MSG0002", status="Cancelled"), bad_time, hold()]

    async def scenario() -> None:
        engine = make_engine(url)
        upgrade(engine)
        daemon = Daemon(settings, engine)
        await daemon.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", daemon.server.port)
            for payload in [*payloads, b"MSH|^~\\&|garbage|" + MRN.encode() + b"|" + PATIENT_NAME.encode()]:
                writer.write(frame(payload))
                await writer.drain()
                await asyncio.wait_for(reader.readuntil(END), 10)
            writer.close()
            await asyncio.sleep(0.5)  # the re-evaluation after the batch logs too
        finally:
            await daemon.stop()
            engine.dispose()

    asyncio.run(scenario())
    text = buffer.getvalue()
    assert len(_records(buffer)) >= 3, "the processing was logged"
    family, given = PATIENT_NAME.split("^")
    for value in (MRN, family, given, BIRTH_DATE, "1961-02-03", "02/03/1961"):
        assert value.lower() not in text.lower(), f"PHI value {value!r} in the log"


def test_log_lines_say_what_changed_in_words_not_python_reprs(
    database_url: str, caplog: pytest.CaptureFixture[str]
) -> None:
    """The scheduled evaluation's line used to read 'PlanChanges(added=2, moved=0, ...)'."""
    from monitor.clock import FixedClock
    from monitor.dispatch.scheduler import JobScheduler
    from monitor.store.database import make_engine
    from tests.monitor.trial_setup import NOW, load_examples

    engine = make_engine(database_url)
    load_examples(engine)
    settings = Settings.model_validate({"database": {"url": database_url}, "dispatch": {"enabled": False}})
    jobs = JobScheduler(engine, settings, clock=FixedClock(NOW))
    try:
        with caplog.at_level(logging.INFO):
            assert jobs.evaluate() is True
    finally:
        jobs.shutdown()
        engine.dispose()
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("evaluated ")]
    assert re.search(r"evaluated \d+ enrolment\(s\): \d+ added", line), line
    assert not re.search(r"\b[A-Z]\w+\(\w+=", caplog.text), caplog.text
