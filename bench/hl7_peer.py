"""The honest baseline for the MLLP benchmark (issue 15): a small python-hl7 asyncio server.

What an integration engineer would write in an afternoon: python-hl7's asyncio MLLP server,
each message parsed with ``hl7.parse``, its raw text and one exam row (upserted by SCH-2,
status from the trigger, start from SCH-11) stored in SQLite (WAL, synchronous=FULL), the
ACK sent only after the commit. Group commit: one writer task takes whatever messages have
queued up, commits them in one transaction on a thread, then answers each.

    python bench/hl7_peer.py DB_PATH     # prints "port N", serves until killed
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from datetime import UTC, datetime

import hl7
import hl7.mllp

_STATUS = {"S12": "scheduled", "S13": "scheduled", "S14": "scheduled", "S15": "cancelled", "S26": "noshow"}


def _open(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level="DEFERRED")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS messages"
        " (id INTEGER PRIMARY KEY, control_id TEXT, received_at TEXT, payload BLOB)"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS exams (id INTEGER PRIMARY KEY, appointment TEXT UNIQUE,"
        " mrn TEXT, status TEXT, start_at TEXT, updated_at TEXT)"
    )
    return db


def _store(db: sqlite3.Connection, batch: list[tuple[str, hl7.Message]]) -> None:
    now = datetime.now(UTC).isoformat()
    with db:  # one transaction, one fsync, for the whole batch
        for raw, message in batch:
            db.execute(
                "INSERT INTO messages (control_id, received_at, payload) VALUES (?, ?, ?)",
                (str(message.segment("MSH")[10]), now, raw.encode()),
            )
            sch, pid = message.segment("SCH"), message.segment("PID")
            trigger = str(message.segment("MSH")[9][0][1])
            db.execute(
                "INSERT INTO exams (appointment, mrn, status, start_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (appointment) DO UPDATE SET"
                " mrn = excluded.mrn, status = excluded.status, start_at = excluded.start_at,"
                " updated_at = excluded.updated_at",
                (str(sch[2]), str(pid[3][0][0]), _STATUS.get(trigger, "scheduled"), str(sch[11]), now),
            )


async def main() -> None:
    db = _open(sys.argv[1])
    queue: asyncio.Queue[tuple[str, hl7.Message, asyncio.Future[None]]] = asyncio.Queue()

    async def writer() -> None:
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            await asyncio.to_thread(_store, db, [(raw, message) for raw, message, _ in batch])
            for _, _, done in batch:
                done.set_result(None)

    async def connection(reader: hl7.mllp.HL7StreamReader, writer_: hl7.mllp.HL7StreamWriter) -> None:
        try:
            while not reader.at_eof():
                message = await reader.readmessage()
                done = asyncio.get_running_loop().create_future()
                await queue.put((str(message), message, done))
                await done
                writer_.writemessage(message.create_ack())
                await writer_.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer_.close()

    task = asyncio.create_task(writer())
    server = await hl7.mllp.start_hl7_server(connection, "127.0.0.1", 0)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()
    task.cancel()


if __name__ == "__main__":
    asyncio.run(main())
