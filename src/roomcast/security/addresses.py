"""Where a caller connects from: peers, ``X-Forwarded-For``, trusted proxies, networks.

Pure: strings in, :mod:`ipaddress` values out. An IPv4 address written as
IPv4-mapped IPv6 (``::ffff:192.0.2.7``, as a dual-stack socket reports it) is
the IPv4 address, everywhere, so one client never counts as two.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from urllib.parse import unquote

from ..errors import ConfigError

__all__ = [
    "IPV4_PREFIX",
    "IPV6_PREFIX",
    "MAX_FORWARDED_HOPS",
    "IPAddress",
    "IPNetwork",
    "TrustedProxies",
    "network_of",
    "normalize",
    "parse_address",
    "parse_networks",
    "peer_address",
]

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

# A network is what one site or one provider's customer usually holds: an
# IPv4 /24, an IPv6 /48 (RFC 6177 recommends /48 as the usual end-site
# assignment; a single address of a /64 changes with privacy extensions).
IPV4_PREFIX = 24
IPV6_PREFIX = 48
# X-Forwarded-For is read from the right, and only this far: a client can
# send any list it likes, and no real proxy chain is this long.
MAX_FORWARDED_HOPS = 32


def normalize(address: IPAddress) -> IPAddress:
    """``address``, or the IPv4 address an IPv4-mapped IPv6 address stands for."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_address(text: str) -> IPAddress | None:
    """An address as peers and proxies write it, with or without a port.

    Accepts ``192.0.2.7``, ``192.0.2.7:443``, ``2001:db8::1``,
    ``[2001:db8::1]`` and ``[2001:db8::1]:443``.

    Returns:
        The address (IPv4-mapped IPv6 as IPv4), or None when ``text`` is not one.
    """
    host = text.strip()
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return None
        host = host[1:end]
    elif host.count(":") == 1:  # IPv4 with a port; IPv6 has at least two colons
        host = host.partition(":")[0]
    try:
        return normalize(ipaddress.ip_address(host))
    except ValueError:
        return None


def peer_address(peer: str) -> IPAddress | None:
    """The address in gRPC's ``context.peer()``.

    grpc writes ``ipv4:127.0.0.1:5555`` and ``ipv6:[::1]:5555`` (some versions
    percent-encode the brackets); other transports (``unix:``) have none.
    """
    scheme, _, rest = peer.partition(":")
    if scheme not in ("ipv4", "ipv6"):
        return None
    return parse_address(unquote(rest))


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """Comma-separated addresses and CIDR networks, as ``trusted_proxies`` holds them.

    Peers are compared as IPv4 when they are IPv4-mapped, so IPv4 proxies are
    written as IPv4 (``10.0.0.0/8``), never as ``::ffff:10.0.0.0/104``.

    Raises:
        ConfigError: naming the entry that is neither.
    """
    networks: list[IPNetwork] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError as error:
            raise ConfigError(
                f"trusted_proxies: {entry[:60]!r} is not an IP address or CIDR network"
            ) from error
        networks.append(network)
    return tuple(networks)


def network_of(address: IPAddress) -> IPNetwork:
    """The network ``address`` belongs to: its IPv4 /24 or its IPv6 /48."""
    address = normalize(address)
    if isinstance(address, IPv4Address):
        return IPv4Network(f"{address}/{IPV4_PREFIX}", strict=False)
    return IPv6Network(f"{address}/{IPV6_PREFIX}", strict=False)


class TrustedProxies:
    """Which peers may say, in ``X-Forwarded-For``, whom they forward for.

    Args:
        networks: the trusted proxies' addresses and networks; empty trusts nobody.
    """

    def __init__(self, networks: Sequence[IPNetwork] = ()) -> None:
        self.networks = tuple(networks)

    def trusts(self, address: IPAddress) -> bool:
        """Whether ``address`` is one of the trusted proxies."""
        address = normalize(address)
        return any(address in network for network in self.networks)

    def client(self, peer: IPAddress | None, forwarded: Iterable[str]) -> IPAddress | None:
        """The client's address.

        The peer itself unless it is a trusted proxy. Behind trusted proxies,
        the right-most ``X-Forwarded-For`` entry that is not a trusted proxy:
        each proxy appends the address it received from, so entries to the
        left of the first untrusted one were written by the client and prove
        nothing. An entry that does not parse ends the walk at the last
        address a trusted proxy vouched for.

        Args:
            peer: the direct peer's address (None when unknown).
            forwarded: the ``X-Forwarded-For`` values, in the order received
                (several headers are one list, as RFC 9110 5.3 combines them).
        """
        if peer is None or not self.networks or not self.trusts(peer):
            return peer
        hops = [hop for value in forwarded for hop in value.split(",") if hop.strip()]
        client = peer
        for hop in reversed(hops[-MAX_FORWARDED_HOPS:]):
            address = parse_address(hop)
            if address is None:
                return client
            client = address
            if not self.trusts(address):
                return address
        return client
