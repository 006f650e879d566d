"""Presence records shared between nodes (brokers/shared.py): pure, no Redis."""

from __future__ import annotations

import pytest

from roomcast.brokers.shared import decode_member, encode_member
from roomcast.presence import ConnectionId, Member
from roomcast.rooms import TenantId


def test_a_member_survives_the_round_trip() -> None:
    member = Member(ConnectionId("c-1_x"), "alice", TenantId("acme"), 1_700_000_000.25)
    record = encode_member(member, "node-abc123", 1_700_000_060_000)
    assert record == "1700000060000 node-abc123 1700000000.250 acme alice"
    assert decode_member("c-1_x", record) == (member, "node-abc123", 1_700_000_060_000)


def test_a_platform_member_has_no_tenant() -> None:
    member = Member(ConnectionId("c"), "root", None, 12.0)
    decoded = decode_member("c", encode_member(member, "n-w0", 5))
    assert decoded == (member, "n-w0", 5)


def test_joined_at_keeps_milliseconds() -> None:
    member = Member(ConnectionId("c"), "u", TenantId("t"), 1.23456)
    decoded = decode_member("c", encode_member(member, "n", 1))
    assert decoded is not None
    assert decoded[0].joined_at == pytest.approx(1.235)


@pytest.mark.parametrize(
    "record",
    [
        "",
        "1 n 2.0 acme",  # a field short
        "1 n 2.0 acme alice extra",  # a field too many
        "soon n 2.0 acme alice",  # expiry not a number
        "1 n yesterday acme alice",  # joined_at not a number
        "1.5 n 2.0 acme alice",  # expiry in whole milliseconds
    ],
)
def test_a_malformed_record_is_none(record: str) -> None:
    assert decode_member("c", record) is None
