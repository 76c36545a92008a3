"""MLLP load client for the benchmarks: N connections, each sending and waiting for its ACK.

Runs in its own process so that the client's CPU does not share the server's GIL.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

START, END = b"\x0b", b"\x1c\r"


@dataclass
class LoadResult:
    sent: int = 0
    acks: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    reconnects: int = 0


async def _connection(
    host: str, port: int, messages: list[bytes], rate: float | None, t0: float, result: LoadResult
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    for index, message in enumerate(messages):
        intended = t0 + index / rate if rate else time.perf_counter()
        if rate:
            delay = intended - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        for _attempt in range(2):
            try:
                writer.write(START + message + END)
                await writer.drain()
                ack = await reader.readuntil(END)
                break
            except (asyncio.IncompleteReadError, ConnectionError):
                # hl7apy's MLLPServer closes the connection after every message.
                result.reconnects += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
        else:
            raise RuntimeError("no ACK after reconnecting")
        result.latencies.append(time.perf_counter() - intended)
        code = ack.split(b"MSA|", 1)[1][:2].decode() if b"MSA|" in ack else "??"
        result.acks[code] = result.acks.get(code, 0) + 1
        result.sent += 1
    writer.close()


async def _run(host: str, port: int, per_connection: list[list[bytes]], rate: float | None) -> LoadResult:
    result = LoadResult()
    t0 = time.perf_counter()
    await asyncio.gather(*(_connection(host, port, msgs, rate, t0, result) for msgs in per_connection))
    result.elapsed = time.perf_counter() - t0
    return result


def run_load(
    host: str, port: int, per_connection: list[list[bytes]], rate_per_connection: float | None = None
) -> LoadResult:
    """Send every connection's messages; with a rate, each connection paces itself (open loop)."""
    return asyncio.run(_run(host, port, per_connection, rate_per_connection))
