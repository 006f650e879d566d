"""New-location tracking (src/roomcast/security/locations.py)."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address

from roomcast.security.locations import DAY, NewLocations

ALICE = ("acme", "alice")
T0 = 1_700_000_000.0


def tracker(max_users: int = 100, max_networks: int = 32) -> NewLocations:
    return NewLocations(horizon=30 * DAY, max_users=max_users, max_networks=max_networks)


def test_the_first_connection_ever_is_recorded_silently() -> None:
    locations = tracker()
    assert locations.observe(ALICE, ip_address("203.0.113.7"), T0) is None
    assert locations.networks(ALICE) == [IPv4Network("203.0.113.0/24")]


def test_another_network_alerts_once() -> None:
    locations = tracker()
    locations.observe(ALICE, ip_address("203.0.113.7"), T0)
    assert locations.observe(ALICE, ip_address("203.0.113.250"), T0 + 1) is None  # same /24
    seen = locations.observe(ALICE, ip_address("198.51.100.7"), T0 + 2)
    assert seen is not None
    assert seen.network == IPv4Network("198.51.100.0/24")
    assert seen.known_networks == 1
    assert seen.payload() == {
        "type": "new_location",
        "user_id": "alice",
        "tenant_id": "acme",
        "ip_address": "198.51.100.7",
        "network": "198.51.100.0/24",
        "known_networks": 1,
        "seen_at": T0 + 2,
    }
    assert locations.observe(ALICE, ip_address("198.51.100.8"), T0 + 3) is None
    assert locations.observe(ALICE, ip_address("203.0.113.7"), T0 + 4) is None


def test_ipv6_networks_are_48s() -> None:
    locations = tracker()
    locations.observe(ALICE, ip_address("2001:db8:1:2::1"), T0)
    assert locations.observe(ALICE, ip_address("2001:db8:1:ffff::9"), T0 + 1) is None
    seen = locations.observe(ALICE, ip_address("2001:db8:2::1"), T0 + 2)
    assert seen is not None
    assert seen.network == IPv6Network("2001:db8:2::/48")


def test_ipv4_mapped_ipv6_is_the_ipv4_network() -> None:
    locations = tracker()
    locations.observe(ALICE, ip_address("203.0.113.7"), T0)
    assert locations.observe(ALICE, ip_address("::ffff:203.0.113.9"), T0 + 1) is None
    seen = locations.observe(ALICE, ip_address("::ffff:198.51.100.7"), T0 + 2)
    assert seen is not None
    assert str(seen.ip_address) == "198.51.100.7"


def test_a_network_not_seen_for_the_horizon_is_new_again() -> None:
    locations = tracker()
    locations.observe(ALICE, ip_address("203.0.113.7"), T0)
    locations.observe(ALICE, ip_address("198.51.100.7"), T0 + 1)
    # Alice keeps using 198.51.100.0/24; 203.0.113.0/24 is last seen at T0.
    assert locations.observe(ALICE, ip_address("198.51.100.7"), T0 + 20 * DAY) is None
    assert locations.observe(ALICE, ip_address("203.0.113.7"), T0 + 29 * DAY) is None
    assert locations.observe(ALICE, ip_address("198.51.100.7"), T0 + 49 * DAY) is None
    seen = locations.observe(ALICE, ip_address("203.0.113.7"), T0 + 59 * DAY + 1)
    assert seen is not None
    assert seen.known_networks == 1


def test_users_of_different_tenants_are_different_users() -> None:
    locations = tracker()
    locations.observe(ALICE, ip_address("203.0.113.7"), T0)
    assert locations.observe(("globex", "alice"), ip_address("198.51.100.7"), T0 + 1) is None
    assert locations.observe(("", "alice"), ip_address("198.51.100.7"), T0 + 1) is None
    assert locations.observe(ALICE, ip_address("198.51.100.7"), T0 + 2) is not None


def test_users_are_capped_least_recently_connected_first() -> None:
    locations = tracker(max_users=3)
    for n in range(3):
        locations.observe(("acme", f"u{n}"), ip_address("203.0.113.7"), T0 + n)
    locations.observe(("acme", "u0"), ip_address("203.0.113.7"), T0 + 3)  # u0 is recent again
    locations.observe(("acme", "u3"), ip_address("203.0.113.7"), T0 + 4)  # evicts u1
    assert len(locations) == 3
    assert locations.networks(("acme", "u1")) == []
    # An evicted user is a first sighting again: silent, never a false alert.
    assert locations.observe(("acme", "u1"), ip_address("198.51.100.7"), T0 + 5) is None
    assert locations.observe(("acme", "u0"), ip_address("198.51.100.7"), T0 + 6) is not None


def test_networks_per_user_are_capped_least_recently_seen_first() -> None:
    locations = tracker(max_networks=4)
    for n in range(10):
        locations.observe(ALICE, ip_address(f"10.0.{n}.1"), T0 + n)
    assert locations.networks(ALICE) == [IPv4Network(f"10.0.{n}.0/24") for n in range(6, 10)]


def test_horizon_zero_turns_it_off() -> None:
    locations = NewLocations(horizon=0, max_users=10)
    for n in range(5):
        assert locations.observe(ALICE, ip_address(f"10.0.{n}.1"), T0 + n) is None
    assert len(locations) == 0
