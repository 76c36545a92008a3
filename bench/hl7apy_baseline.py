"""The baseline the MLLP benchmark compares against: hl7apy's own ``MLLPServer``.

Its handler parses each message fully with hl7apy (``find_groups=True``, as a plain hl7apy
integration would), stores the raw message in SQLite the same way hiro-monitor does
(WAL, synchronous=FULL, one commit per message) and answers with an ACK built by hl7apy.

    python bench/hl7apy_baseline.py DB_PATH     # prints "port N", serves until killed
"""

from __future__ import annotations

import sqlite3
import sys
import threading
from datetime import UTC, datetime

from hl7apy.core import Message
from hl7apy.mllp import AbstractHandler, MLLPServer
from hl7apy.parser import parse_message

_lock = threading.Lock()
_db: sqlite3.Connection


class StoreAndAck(AbstractHandler):  # type: ignore[misc]
    def reply(self) -> str:
        message = parse_message(self.incoming_message, find_groups=True)
        control_id = message.msh.msh_10.value
        with _lock:
            _db.execute(
                "INSERT INTO messages (control_id, received_at, payload) VALUES (?, ?, ?)",
                (control_id, datetime.now(UTC).isoformat(), self.incoming_message.encode()),
            )
            _db.commit()
        ack = Message("ACK", version=message.msh.msh_12.value)
        ack.msh.msh_3 = message.msh.msh_5.value
        ack.msh.msh_5 = message.msh.msh_3.value
        ack.msa.msa_1 = "AA"
        ack.msa.msa_2 = control_id
        return str(ack.to_mllp())


def main() -> None:
    global _db
    _db = sqlite3.connect(sys.argv[1], check_same_thread=False, isolation_level="DEFERRED")
    _db.execute("PRAGMA journal_mode=WAL")
    _db.execute("PRAGMA synchronous=FULL")
    _db.execute(
        "CREATE TABLE IF NOT EXISTS messages"
        " (id INTEGER PRIMARY KEY, control_id TEXT, received_at TEXT, payload BLOB)"
    )
    handlers = {f"SIU^S{n}^SIU_S{n}": (StoreAndAck,) for n in (12, 13, 14, 15, 26)}
    server = MLLPServer("127.0.0.1", 0, handlers)
    print(f"port {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
