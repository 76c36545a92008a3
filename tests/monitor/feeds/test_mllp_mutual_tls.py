"""Mutual TLS on the MLLP listener, over real sockets: a sender must show a certificate the
configured CA signed, and, with an allowed list, one that names a listed system."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest

from monitor.config import ConfigError, MllpSettings
from monitor.feeds.mllp import MllpServer
from tests.monitor.feeds.test_mllp_server import (
    MSG,
    Recorder,
    ack_for,
    connect,
    frame,
    read_ack,
    read_until_closed,
    run,
    send,
    serving,
)
from tests.tls import make_certificate


def _folder(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir()
    return folder


def _client(server_cert: Path, identity: tuple[Path, Path] | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(server_cert))
    if identity is not None:
        context.load_cert_chain(str(identity[0]), str(identity[1]))
    return context


async def _refused(server: MllpServer, context: ssl.SSLContext) -> bool:
    """Whether the listener ends the connection without answering a message."""
    try:
        reader, writer = await connect(server, tls=context)
        await send(writer, frame(MSG))
        answer = await read_until_closed(reader)
        writer.close()
    except (ssl.SSLError, ConnectionError):
        return True
    return answer == b""


def test_only_senders_with_a_certificate_of_the_ca_and_a_listed_name_are_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = make_certificate(_folder(tmp_path, "server"))
    bridge = make_certificate(_folder(tmp_path, "bridge"), common_name="epic-bridge.hospital.org")
    other_system = make_certificate(_folder(tmp_path, "other"), common_name="lab-engine.hospital.org")
    stranger = make_certificate(_folder(tmp_path, "stranger"), common_name="epic-bridge.hospital.org")
    client_ca = tmp_path / "clients.pem"  # the CA bundle: the two hospital systems, not the stranger
    client_ca.write_bytes(bridge[0].read_bytes() + other_system[0].read_bytes())
    handler = Recorder()

    async def body() -> None:
        async with serving(
            handler, tls_certificate=str(cert), tls_private_key=str(key), tls_client_ca=str(client_ca),
            tls_allowed_clients=("EPIC-BRIDGE.hospital.org",),
        ) as server:  # fmt: skip
            reader, writer = await connect(server, tls=_client(cert, bridge))
            await send(writer, frame(MSG))
            assert await read_ack(reader) == ack_for(MSG)
            writer.close()
            assert await _refused(server, _client(cert, None))  # no certificate
            assert await _refused(server, _client(cert, stranger))  # the right name, another CA
            assert await _refused(server, _client(cert, other_system))  # the CA's, not listed
            assert server.stats.rejected_peers == 1  # the last one: the others failed the handshake

    caplog.set_level(logging.WARNING, logger="monitor.mllp")
    run(body)
    assert [message for message, _ in handler.messages] == [MSG]
    assert "lab-engine.hospital.org not in mllp.tls_allowed_clients" in caplog.text


def test_a_client_ca_alone_serves_any_sender_it_signed(tmp_path: Path) -> None:
    cert, key = make_certificate(_folder(tmp_path, "server"))
    bridge = make_certificate(_folder(tmp_path, "bridge"), common_name="any-name")
    handler = Recorder()

    async def body() -> None:
        async with serving(
            handler, tls_certificate=str(cert), tls_private_key=str(key), tls_client_ca=str(bridge[0])
        ) as server:
            reader, writer = await connect(server, tls=_client(cert, bridge))
            await send(writer, frame(MSG))
            assert await read_ack(reader) == ack_for(MSG)
            writer.close()
            assert await _refused(server, _client(cert, None))

    run(body)
    assert len(handler.messages) == 1


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"tls_allowed_clients": ("epic-bridge",)}, "tls_allowed_clients needs mllp.tls_client_ca"),
        ({"tls_client_ca": "CA"}, "tls_client_ca needs mllp.tls_certificate"),
        ({"tls_client_ca": "missing.pem", "tls_certificate": "CERT", "tls_private_key": "KEY"},
         "mllp.tls_client_ca: cannot load"),
    ],
)  # fmt: skip
def test_client_settings_that_do_not_fit_stop_the_listener_naming_the_key(
    tmp_path: Path, settings: dict[str, object], named: str
) -> None:
    cert, key = make_certificate(tmp_path)
    given = {
        name: str(cert) if value == "CERT" else str(key) if value == "KEY" else value
        for name, value in settings.items()
    }
    if given.get("tls_client_ca") == "CA":
        given["tls_client_ca"] = str(cert)
    with pytest.raises(ConfigError, match=named):
        MllpServer(MllpSettings(port=0, **given), Recorder())  # type: ignore[arg-type]
