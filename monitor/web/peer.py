"""Who the peer is: the one place that decides which address a request came from.

The answer is the TCP peer of the connection, and only when that peer is one of
``[web] trusted_proxies``, the address the proxies appended to ``X-Forwarded-For``: the
entries are read from the right (the one the nearest proxy appended) and every entry
that is itself a trusted proxy is stepped over, so a chain of trusted proxies (a load
balancer in front of nginx) names the client in front of the first of them. Whatever a
client wrote further left is never read: ``X-Forwarded-For: 10.99.0.1`` sent straight to
the app port changes nothing, and neither does a forged entry that a proxy passed on
before appending the real address.

The SSO header, sign-in throttling and the audit trail all take their answer from here.
The ASGI server must hand over the real TCP peer: uvicorn's own ``proxy_headers`` rewrite
of the client address is switched off wherever the project starts uvicorn
(:func:`monitor.web.app.uvicorn_config`), because it trusts 127.0.0.1 by default and
rewrote the address before this check could run.

RFC 7239 ``Forwarded`` is not read: the documented proxies (``deploy/nginx.conf``) send
``X-Forwarded-For``, and reading two headers would give a client two ways to disagree.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

__all__ = ["Peer", "parse_networks", "resolve_peer"]


@dataclass(frozen=True, slots=True)
class Peer:
    """Where a request came from.

    ``connection`` is the TCP peer; ``client`` the address the request is attributed to
    (audit trail, throttling): the TCP peer itself unless ``via_trusted_proxy``.
    """

    connection: str
    client: str
    via_trusted_proxy: bool


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``trusted_proxies`` entries (addresses or CIDR networks) as networks.

    Raises ValueError naming the entry that is neither (the settings check it at load)."""
    networks: list[Network] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network (e.g. 10.0.0.0/24, ::1)") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    """An address from a peer or ``X-Forwarded-For`` entry: ``1.2.3.4``, ``1.2.3.4:5678``,
    ``::1``, ``[2001:db8::1]:443``; IPv4-mapped IPv6 as the IPv4 address; None otherwise."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # IPv4 with a port; IPv6 has two or more colons
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, networks: Sequence[Network]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def resolve_peer(connection: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> Peer:
    """Who sent the request that arrived from TCP peer ``connection``.

    ``forwarded_for`` is every ``X-Forwarded-For`` header of the request, in order (a
    proxy may add a second header rather than extend the first); ``trusted`` the parsed
    ``trusted_proxies``. An entry that is not an address ends the walk: the request is
    attributed to the last trusted hop before it.
    """
    peer = _address(connection)
    shown = str(peer) if peer is not None else connection[:80]
    if peer is None or not _trusted(peer, trusted):
        return Peer(shown, shown, False)
    client = peer
    entries = [entry for header in forwarded_for for entry in header.split(",") if entry.strip()]
    for entry in reversed(entries):
        hop = _address(entry)
        if hop is None:
            break
        client = hop
        if not _trusted(hop, trusted):
            break
    return Peer(shown, str(client), True)
