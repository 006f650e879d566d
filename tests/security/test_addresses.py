"""Client addresses, trusted proxies and networks (src/roomcast/security/addresses.py)."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address

import pytest

from roomcast.errors import ConfigError
from roomcast.security.addresses import (
    MAX_FORWARDED_HOPS,
    TrustedProxies,
    network_of,
    normalize,
    parse_address,
    parse_networks,
    peer_address,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.7", "192.0.2.7"),
        (" 192.0.2.7 ", "192.0.2.7"),
        ("192.0.2.7:443", "192.0.2.7"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("[::ffff:192.0.2.7]:80", "192.0.2.7"),
    ],
)
def test_addresses_parse_with_or_without_a_port(text: str, expected: str) -> None:
    assert parse_address(text) == ip_address(expected)


@pytest.mark.parametrize("text", ["", "unknown", "192.0.2", "[2001:db8::1", "example.com:80"])
def test_non_addresses_are_none(text: str) -> None:
    assert parse_address(text) is None


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        ("ipv4:127.0.0.1:5555", "127.0.0.1"),
        ("ipv6:[::1]:5555", "::1"),
        ("ipv6:%5B::1%5D:5555", "::1"),
        ("ipv6:[::ffff:10.1.2.3]:5555", "10.1.2.3"),
    ],
)
def test_grpc_peers(peer: str, expected: str) -> None:
    assert peer_address(peer) == ip_address(expected)


@pytest.mark.parametrize("peer", ["unix:/tmp/roomcast.sock", "", "ipv4:nonsense"])
def test_grpc_peers_without_an_address(peer: str) -> None:
    assert peer_address(peer) is None


def test_networks_are_ipv4_24_and_ipv6_48() -> None:
    assert network_of(ip_address("192.0.2.200")) == IPv4Network("192.0.2.0/24")
    assert network_of(ip_address("2001:db8:1:2:3::4")) == IPv6Network("2001:db8:1::/48")
    assert network_of(ip_address("2001:db8:1:ffff::1")) == network_of(ip_address("2001:db8:1::9"))
    assert network_of(ip_address("2001:db8:2::1")) != network_of(ip_address("2001:db8:1::1"))


def test_ipv4_mapped_ipv6_is_the_ipv4_address() -> None:
    mapped = ip_address("::ffff:192.0.2.200")
    assert normalize(mapped) == ip_address("192.0.2.200")
    assert network_of(mapped) == IPv4Network("192.0.2.0/24")


def test_trusted_proxies_parse_from_a_comma_separated_list() -> None:
    assert parse_networks("") == ()
    assert parse_networks(" 10.0.0.0/8, 192.0.2.10 ,2001:db8::/32,") == (
        IPv4Network("10.0.0.0/8"),
        IPv4Network("192.0.2.10/32"),
        IPv6Network("2001:db8::/32"),
    )


def test_a_bad_trusted_proxy_entry_is_named() -> None:
    with pytest.raises(ConfigError, match=r"trusted_proxies: 'proxy\.example' is not"):
        parse_networks("10.0.0.1, proxy.example")


PROXY = ip_address("10.0.0.5")
CLIENT = ip_address("203.0.113.7")


def test_nobody_is_trusted_by_default() -> None:
    assert TrustedProxies().client(PROXY, ["198.51.100.1"]) == PROXY


def test_an_untrusted_peer_cannot_say_whom_it_forwards_for() -> None:
    proxies = TrustedProxies(parse_networks("10.0.0.0/8"))
    assert proxies.client(CLIENT, ["198.51.100.1"]) == CLIENT


def test_behind_a_trusted_proxy_the_right_most_untrusted_address_is_the_client() -> None:
    proxies = TrustedProxies(parse_networks("10.0.0.0/8"))
    # The client forged the left-most entry; the proxy appended the real one.
    assert proxies.client(PROXY, ["198.51.100.1, 203.0.113.7"]) == CLIENT
    # A chain of trusted proxies is walked through.
    assert proxies.client(PROXY, ["198.51.100.1, 203.0.113.7, 10.1.1.1, 10.2.2.2"]) == CLIENT
    # Several headers are one list, in order.
    assert proxies.client(PROXY, ["198.51.100.1", "203.0.113.7, 10.1.1.1"]) == CLIENT
    # Ports, brackets and IPv4-mapped forms are understood.
    assert proxies.client(PROXY, ["[::ffff:203.0.113.7]:1234"]) == CLIENT
    assert proxies.client(ip_address("::ffff:10.0.0.5"), ["203.0.113.7:80"]) == CLIENT


def test_without_a_forwarded_header_the_proxy_is_the_client() -> None:
    proxies = TrustedProxies(parse_networks("10.0.0.0/8"))
    assert proxies.client(PROXY, []) == PROXY
    assert proxies.client(PROXY, [" , "]) == PROXY


def test_all_trusted_gives_the_left_most_and_garbage_stops_the_walk() -> None:
    proxies = TrustedProxies(parse_networks("10.0.0.0/8"))
    assert proxies.client(PROXY, ["10.9.9.9, 10.1.1.1"]) == ip_address("10.9.9.9")
    # The garbage was written by whoever 10.1.1.1 forwarded for: 10.1.1.1 is
    # the last address a trusted proxy vouched for.
    assert proxies.client(PROXY, ["203.0.113.7, garbage, 10.1.1.1"]) == ip_address("10.1.1.1")
    assert proxies.client(PROXY, ["unknown"]) == PROXY


def test_only_the_right_most_hops_are_read() -> None:
    proxies = TrustedProxies(parse_networks("10.0.0.0/8"))
    within = ["203.0.113.7"] + ["10.0.0.1"] * (MAX_FORWARDED_HOPS - 1)
    assert proxies.client(PROXY, [", ".join(within)]) == CLIENT
    beyond = ["203.0.113.7"] + ["10.0.0.1"] * MAX_FORWARDED_HOPS
    assert proxies.client(PROXY, [", ".join(beyond)]) == ip_address("10.0.0.1")


def test_unknown_peers_stay_unknown() -> None:
    assert TrustedProxies(parse_networks("0.0.0.0/0")).client(None, ["203.0.113.7"]) is None
