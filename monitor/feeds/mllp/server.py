"""The MLLP listener: asyncio streams around :class:`~monitor.feeds.mllp.framing.FrameDecoder`.

The listener decides nothing about HL7: it hands each complete frame to a
:class:`MessageHandler` and writes back whatever ACK the handler returns. What it owns is
the connection: who may connect, how long a frame may take, ordering, shutdown, counters.

Per connection, frames are handled strictly one after another: the handler is called for
the next frame only after the previous frame's ACK has been written (HL7 v2 original-mode
acknowledgment, HL7 v2 chapter 2, keeps one message in flight; a sender that pipelines
anyway is served in order). While the handler runs, the connection is not read, so a fast
sender is held back by TCP flow control rather than by memory. Connections run concurrently.

Logs go to ``monitor.mllp`` and never contain message bytes (they are PHI): only the peer,
connection id, sizes, counts and timings. For the same reason a handler exception is logged
by type and code location, never by its message text. A connection opening, closing or
idling out is routine (an interface engine may connect once per message): DEBUG; what an
operator acts on (a refused peer, a broken or late frame, a failed connection, a handler
error) is WARNING or ERROR; INFO is only the listener starting and closing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from monitor.config import ConfigError, MllpSettings
from monitor.feeds.mllp.framing import BrokenFrame, Event, Frame, FrameDecoder, Oversize, frame
from monitor.logs import where
from monitor.runtime import Liveness

log = logging.getLogger("monitor.mllp")

READ_SIZE = 65536
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Peer:
    """The sender of a message: its address and the listener's id for the connection."""

    host: str
    port: int
    connection_id: int


class MessageHandler(Protocol):
    """What the listener calls; deciding code (its exceptions cost the sender a retry, nothing more)."""

    async def on_message(self, message: bytes, peer: Peer) -> bytes | None:
        """Process one complete message; return its ACK (unframed), or None to send no ACK.

        No ACK means the sender times out and resends, which is how "store down" must be
        answered if an AR cannot be built. An exception is logged (by type) and treated as None.
        """
        ...

    async def on_oversize(self, head: bytes, size: int, peer: Peer) -> bytes | None:
        """A message of ``size`` bytes exceeded the limit and was discarded; ``head`` is its start.

        Return an AR ACK built from the MSH in ``head``, or None to send nothing.
        """
        ...


@dataclass(slots=True)
class ListenerStats:
    """Counters for metrics, updated in place by the listener; read them, never write them."""

    connections_open: int = 0
    connections_total: int = 0
    frames: int = 0
    garbage_bytes: int = 0
    oversize: int = 0
    broken_frames: int = 0  # cut off by a new start block, or by the peer disconnecting
    timeouts: int = 0  # idle or message deadline
    rejected_peers: int = 0


@dataclass(frozen=True, slots=True)
class SenderPresence:
    """A sending system as this listener last saw it (for the operations check)."""

    host: str
    connections: int  # open now
    left_at: float | None  # wall-clock seconds when its last connection closed (None: connected)


class _Senders:
    """Which hosts have delivered a message here and whether they are connected now.

    Only a host that has sent a message counts: a load balancer's health probe that
    connects and leaves is not a sender. Written on the feed's loop, read by the scheduler's
    thread: a lock keeps the two apart."""

    def __init__(self, wall: Callable[[], float]) -> None:
        self._wall = wall
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}
        self._left: dict[str, float] = {}
        self._known: set[str] = set()

    def opened(self, host: str) -> None:
        with self._lock:
            self._open[host] = self._open.get(host, 0) + 1
            self._left.pop(host, None)

    def delivered(self, host: str) -> None:
        if host not in self._known:
            with self._lock:
                self._known.add(host)

    def closed(self, host: str) -> None:
        with self._lock:
            left = self._open.get(host, 1) - 1
            self._open[host] = left
            if left <= 0:
                self._open.pop(host, None)
                self._left[host] = self._wall()

    def snapshot(self) -> list[SenderPresence]:
        with self._lock:
            return [
                SenderPresence(host, self._open.get(host, 0), self._left.get(host))
                for host in sorted(self._known)
            ]


@dataclass(eq=False, slots=True)
class _Connection:
    peer: Peer
    decoder: FrameDecoder
    task: asyncio.Task[object] | None
    busy: bool = False  # in a handler call or writing its ACK: close() lets it finish
    cancelled_by_close: bool = False
    garbage_bytes: int = 0  # this connection's share of ListenerStats.garbage_bytes


def parse_allowed_senders(entries: tuple[str, ...] | list[str]) -> tuple[IpNetwork, ...]:
    """Turn ``mllp.allowed_senders`` (addresses or CIDR networks) into networks.

    Raises :class:`~monitor.config.ConfigError` naming the entry that is neither.
    """
    networks: list[IpNetwork] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as exc:
            raise ConfigError(f"mllp.allowed_senders: {entry!r} is not an IP address or network") from exc
    return tuple(networks)


def build_tls_context(settings: MllpSettings) -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2 or newer) from the settings' PEM files; with
    ``tls_client_ca``, one that asks every sender for a certificate that CA signed.

    Raises :class:`~monitor.config.ConfigError` when a file cannot be read, does not hold a
    matching certificate and key, or the client settings do not fit together.
    """
    if bool(settings.tls_certificate) != bool(settings.tls_private_key):
        raise ConfigError("mllp.tls_certificate and mllp.tls_private_key must be set together")
    if settings.tls_client_ca and not settings.tls_certificate:
        raise ConfigError("mllp.tls_client_ca needs mllp.tls_certificate and tls_private_key (TLS itself)")
    if settings.tls_allowed_clients and not settings.tls_client_ca:
        raise ConfigError(
            "mllp.tls_allowed_clients needs mllp.tls_client_ca: a certificate's subject means "
            "nothing unless a CA you trust signed it"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_certificate, settings.tls_private_key)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise ConfigError(
                "mllp.tls_private_key does not match mllp.tls_certificate (they are not a pair)"
            ) from None
        raise ConfigError(f"mllp.tls_certificate/tls_private_key: cannot load: {exc.reason or exc}") from None
    except OSError as exc:
        raise ConfigError(f"mllp.tls_certificate/tls_private_key: cannot load: {exc}") from None
    if settings.tls_client_ca:
        try:
            context.load_verify_locations(cafile=settings.tls_client_ca)
        except (ssl.SSLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, ssl.SSLError) and exc.reason else exc
            raise ConfigError(f"mllp.tls_client_ca: cannot load {settings.tls_client_ca}: {reason}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_names(certificate: dict[str, Any] | None) -> tuple[str, ...]:
    """The names a sender's verified certificate carries: its subject CNs and DNS names."""
    if not certificate:
        return ()
    names = [value for entry in certificate.get("subject", ()) for key, value in entry if key == "commonName"]
    names += [value for kind, value in certificate.get("subjectAltName", ()) if kind == "DNS"]
    return tuple(names)


def client_allowed(names: tuple[str, ...], allowed: tuple[str, ...]) -> bool:
    """Whether one of a certificate's ``names`` is listed (case-insensitive; none listed: any)."""
    if not allowed:
        return True
    listed = {entry.strip().lower() for entry in allowed}
    return any(name.lower() in listed for name in names)


def _is_allowed(host: str, networks: tuple[IpNetwork, ...]) -> bool:
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
    return any(address in network for network in networks)


class MllpServer:
    """An MLLP listener bound to ``settings.host``/``settings.port``, feeding ``handler``.

    Lifecycle: ``await start()`` binds (raises :class:`OSError` if the address is taken,
    :class:`~monitor.config.ConfigError` for unusable TLS files); ``port`` is then the bound
    port (useful with port 0); ``await close(grace)`` shuts down. Constructing it raises
    ConfigError for a bad ``allowed_senders`` entry or a TLS certificate without a key.

    Per connection:

    - a peer outside ``allowed_senders`` is closed as soon as it is accepted, before any of
      its bytes are decoded (and before a TLS handshake);
    - with TLS configured, the handshake must finish within ``message_deadline_seconds``;
    - no bytes at all for ``idle_timeout_seconds`` closes the connection;
    - a frame not complete within ``message_deadline_seconds`` of its start block closes
      the connection (a trickling sender is cut off; the partial frame is dropped);
    - an oversize frame gets ``on_oversize``'s ACK and the connection stays open, since
      framing recovers at the next start block;
    - broken frames and bytes outside frames are counted and logged, never handled;
    - a disconnect mid-frame drops the partial frame: it was never acknowledged, so the
      sender resends it.

    ``on_ack(ack, seconds)``, if given, is told of every ACK written: the time from the read
    that completed its frame to the ACK drained (frames pipelined in one read include their
    wait behind the earlier ones). Observing code: its exceptions are logged and ignored.
    """

    def __init__(
        self,
        settings: MllpSettings,
        handler: MessageHandler,
        *,
        on_ack: Callable[[bytes, float], None] | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._senders = _Senders(wall)
        self._handler = handler
        self._on_ack = on_ack
        self._networks = parse_allowed_senders(settings.allowed_senders)
        # Built here, not on start: a key that is not the certificate's stops ``run`` before
        # anything has started, with the one-line ConfigError.
        self._tls: ssl.SSLContext | None = (
            build_tls_context(settings)
            if settings.tls_certificate
            or settings.tls_private_key
            or settings.tls_client_ca
            or settings.tls_allowed_clients
            else None
        )
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._ids = itertools.count(1)
        self._closing = False
        self._closed = asyncio.Event()
        self.stats = ListenerStats()

    def senders(self) -> list[SenderPresence]:
        """The hosts that have delivered messages here, connected or since when not (thread-safe)."""
        return self._senders.snapshot()

    @property
    def port(self) -> int:
        """The bound port (the first socket's, if the host resolved to several). Raises before start."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("MllpServer.port is known only after start()")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Bind and start accepting connections. Raises RuntimeError if started or closed before."""
        if self._server is not None or self._closing:
            raise RuntimeError("MllpServer.start() called twice, or after close()")
        settings = self._settings
        self._server = await asyncio.start_server(self._accept, settings.host, settings.port)
        log.info(
            "mllp listening on %s port %d%s",
            settings.host,
            self.port,
            " (TLS)" if self._tls else "",
        )

    def liveness(self) -> Liveness:
        """Up while bound and accepting connections (not before start, not once close began)."""
        if self._server is None:
            return Liveness(False, "not started")
        if self._closing or not self._server.is_serving():
            return Liveness(False, "closed")
        return Liveness(True, f"port {self.port}, {self.stats.connections_open} connection(s) open")

    async def serve_forever(self) -> None:
        """Wait until :meth:`close` has finished (start first if needed)."""
        if self._server is None:
            await self.start()
        await self._closed.wait()

    async def close(self, grace: float) -> None:
        """Stop listening, let messages in flight finish, then close every connection.

        New connections are refused at once. A connection waiting for bytes is closed at
        once; frames it had only partly sent are dropped (never acknowledged). A connection
        whose handler is running gets up to ``grace`` seconds to finish and write its ACK,
        and is then closed without starting another message. After ``grace`` the remaining
        handlers are cancelled (their messages stay unacknowledged, so the sender resends).
        Safe to call more than once; never raises for a misbehaving connection.
        """
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        if self._server is None:
            self._closed.set()
            return
        self._server.close()
        for connection in self._connections:
            if not connection.busy:
                self._cancel(connection)
        tasks = [c.task for c in self._connections if c.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            if pending:
                log.warning(
                    "mllp close: cancelling %d message(s) still in flight after %.1f s", len(pending), grace
                )
                for connection in self._connections:
                    self._cancel(connection)
                await asyncio.wait(pending)
        await self._server.wait_closed()
        self._closed.set()
        log.info("mllp listener closed")

    def _client_admitted(self, peer: Peer, writer: asyncio.StreamWriter) -> bool:
        """With ``tls_allowed_clients``: whether the sender's certificate (verified against
        ``tls_client_ca`` in the handshake) names a listed client. Checked before a byte of
        the sender's is read; a refusal is logged with the certificate's names (system
        names, not patient data) and the connection closed without an answer."""
        allowed = self._settings.tls_allowed_clients
        if not allowed:
            return True
        names = client_names(writer.get_extra_info("peercert"))
        if client_allowed(names, allowed):
            return True
        self.stats.rejected_peers += 1
        log.warning(
            "mllp conn=%d rejected %s:%d: certificate %s not in mllp.tls_allowed_clients",
            *_ids(peer),
            ", ".join(names) or "(no names)",
        )
        return False

    @staticmethod
    def _cancel(connection: _Connection) -> None:
        if connection.task is not None:
            connection.cancelled_by_close = True
            connection.task.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = Peer(str(peername[0]), int(peername[1]), next(self._ids))
        if self._closing:
            writer.close()
            return
        # Checked before the first await: nothing from this peer has been decoded, and with
        # TLS the handshake has not started (start_tls pauses reading before any await).
        if not _is_allowed(peer.host, self._networks):
            self.stats.rejected_peers += 1
            log.warning("mllp conn=%d rejected %s:%d: not in mllp.allowed_senders", *_ids(peer))
            writer.close()
            return
        decoder = FrameDecoder(self._settings.max_message_bytes)
        connection = _Connection(peer, decoder, asyncio.current_task())
        admitted = False
        self._connections.add(connection)
        self.stats.connections_open += 1
        self.stats.connections_total += 1
        log.debug("mllp conn=%d opened from %s:%d", *_ids(peer))
        try:
            if self._tls is not None:
                await writer.start_tls(
                    self._tls, ssl_handshake_timeout=self._settings.message_deadline_seconds
                )
                if not self._client_admitted(peer, writer):
                    return
            self._senders.opened(peer.host)
            admitted = True
            await self._serve(connection, reader, writer)
        except (OSError, TimeoutError) as exc:
            # ssl.SSLError is an OSError; none of these carry message content.
            log.warning(
                "mllp conn=%d %s:%d: connection failed: %s; dropped %d unacknowledged bytes",
                *_ids(peer),
                type(exc).__name__,
                decoder.pending_bytes,
            )
            if decoder.in_frame:
                self.stats.broken_frames += 1
        except asyncio.CancelledError:
            if not connection.cancelled_by_close:
                raise
            # close() ended this connection on purpose. Returning normally matters on 3.11,
            # where asyncio's client_connected_cb callback reports a cancelled task as an error.
        finally:
            self._connections.discard(connection)
            self.stats.connections_open -= 1
            if admitted:
                self._senders.closed(peer.host)
            if connection.cancelled_by_close:
                writer.transport.abort()  # no TLS close_notify wait for a connection cut off by close()
            else:
                writer.close()
            log.debug(
                "mllp conn=%d closed (%d bytes outside frames, %d end blocks without CR)",
                peer.connection_id,
                connection.garbage_bytes,
                decoder.bare_end_blocks,
            )

    async def _serve(
        self, connection: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Read, decode and handle frames until the peer leaves, a timer fires or close() starts."""
        loop = asyncio.get_running_loop()
        settings = self._settings
        decoder = connection.decoder
        peer = connection.peer
        # Loop time by which the frame in progress must end. It is armed once the read that
        # started the frame has been handled, so a slow handler for the previous frame in that
        # read does not eat into the next frame's time.
        frame_deadline: float | None = None
        while not self._closing:
            idle_at = loop.time() + settings.idle_timeout_seconds
            by_deadline = frame_deadline is not None and frame_deadline < idle_at
            try:
                async with asyncio.timeout_at(frame_deadline if by_deadline else idle_at):
                    data = await reader.read(READ_SIZE)
            except TimeoutError:
                self.stats.timeouts += 1
                if by_deadline:
                    log.warning(
                        "mllp conn=%d %s:%d: frame not complete within %.1f s (%d bytes so far); closing",
                        *_ids(peer),
                        settings.message_deadline_seconds,
                        decoder.pending_bytes,
                    )
                else:
                    log.debug(
                        "mllp conn=%d: idle for %.0f s; closing",
                        peer.connection_id,
                        settings.idle_timeout_seconds,
                    )
                return
            if not data:
                if decoder.in_frame:
                    self.stats.broken_frames += 1
                    log.warning(
                        "mllp conn=%d %s:%d: peer closed mid-frame; dropped %d unacknowledged bytes",
                        *_ids(peer),
                        decoder.pending_bytes,
                    )
                return
            events = decoder.feed(data)
            if events:
                decoded_at = time.perf_counter()
                frame_deadline = None
                connection.busy = True
                try:
                    for event in events:
                        if not await self._dispatch(event, connection, writer, decoded_at) or self._closing:
                            return
                finally:
                    connection.busy = False
            if frame_deadline is None and decoder.in_frame:
                frame_deadline = loop.time() + settings.message_deadline_seconds

    async def _dispatch(
        self, event: Event, connection: _Connection, writer: asyncio.StreamWriter, decoded_at: float
    ) -> bool:
        """Act on one decoder event; False when the connection is no longer usable."""
        peer = connection.peer
        if isinstance(event, Frame):
            ack = await self._on_frame(event.message, peer)
        elif isinstance(event, Oversize):
            ack = await self._on_oversize(event, peer)
        elif isinstance(event, BrokenFrame):
            self.stats.broken_frames += 1
            log.warning(
                "mllp conn=%d %s:%d: frame of %d bytes had no end block; dropped", *_ids(peer), event.size
            )
            return True
        else:
            self.stats.garbage_bytes += event.size
            # A sender that appends a newline after every frame would flood the log: warn on
            # the first skip, then debug; the connection's total is logged when it closes.
            level = logging.DEBUG if connection.garbage_bytes else logging.WARNING
            connection.garbage_bytes += event.size
            log.log(level, "mllp conn=%d %s:%d: skipped %d bytes outside a frame", *_ids(peer), event.size)
            return True
        if ack is None:
            return True
        sent = await self._send(ack, peer, writer)
        if sent and self._on_ack is not None:
            try:
                self._on_ack(ack, time.perf_counter() - decoded_at)
            except Exception as exc:  # a broken metric never costs a message (STYLE.md)
                log.debug("mllp on_ack observer raised %s", type(exc).__name__)
        return sent

    async def _on_frame(self, message: bytes, peer: Peer) -> bytes | None:
        self.stats.frames += 1
        self._senders.delivered(peer.host)
        started = time.perf_counter()
        try:
            ack = await self._handler.on_message(message, peer)
        except Exception as exc:
            log.error(
                "mllp conn=%d: handler raised %s for a %d-byte message; no ACK sent",
                peer.connection_id,
                where(exc),
                len(message),
            )
            return None
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "mllp conn=%d: %d-byte message handled in %.1f ms, ACK %s",
                peer.connection_id,
                len(message),
                (time.perf_counter() - started) * 1000,
                "withheld" if ack is None else "sent",
            )
        return ack

    async def _on_oversize(self, event: Oversize, peer: Peer) -> bytes | None:
        self.stats.oversize += 1
        log.warning(
            "mllp conn=%d %s:%d: %d-byte message exceeds mllp.max_message_bytes=%d; discarded",
            *_ids(peer),
            event.size,
            self._settings.max_message_bytes,
        )
        try:
            return await self._handler.on_oversize(event.head, event.size, peer)
        except Exception as exc:
            log.error(
                "mllp conn=%d: oversize handler raised %s; no ACK sent",
                peer.connection_id,
                where(exc),
            )
            return None

    async def _send(self, ack: bytes, peer: Peer, writer: asyncio.StreamWriter) -> bool:
        """Write one framed ACK; a peer that stops reading for the idle timeout is dropped."""
        try:
            writer.write(frame(ack))
            # drain() only when the socket did not take it all at once, or is going away (it
            # raises then): its timeout context costs more than the write itself.
            transport = writer.transport
            if transport.get_write_buffer_size() or transport.is_closing():
                async with asyncio.timeout(self._settings.idle_timeout_seconds):
                    await writer.drain()
        except ValueError:
            log.error(
                "mllp conn=%d: handler returned an ACK containing MLLP block bytes; not sent",
                peer.connection_id,
            )
            return True
        except (OSError, TimeoutError) as exc:
            log.warning("mllp conn=%d %s:%d: ACK not delivered: %s", *_ids(peer), type(exc).__name__)
            return False
        return True


def _ids(peer: Peer) -> tuple[int, str, int]:
    return peer.connection_id, peer.host, peer.port
