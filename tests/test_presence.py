"""Connections and room membership (src/roomcast/presence.py)."""

from __future__ import annotations

from dataclasses import replace

from roomcast.presence import ConnectionId, Member, Presence
from roomcast.rooms import TenantId

ACME = TenantId("acme")
GLOBEX = TenantId("globex")
LOBBY = "acme:chat.lobby"


def member(connection: str, user: str, tenant: TenantId | None, at: float) -> Member:
    return Member(ConnectionId(connection), user, tenant, at)


ALICE_1 = member("c1", "alice", ACME, 10.0)
ALICE_2 = member("c2", "alice", ACME, 5.0)  # connected earlier, registered later
BOB = member("c3", "bob", ACME, 20.0)
GLOBEX_ALICE = member("c4", "alice", GLOBEX, 1.0)
SERVICE = member("c5", "backend", None, 30.0)


def in_room(one: Member, at: float) -> Member:
    """A connection's entry in a room it joined at ``at``."""
    return replace(one, joined_at=at)


def connected(*members: Member) -> Presence:
    presence = Presence()
    for one in members:
        presence.connect(one)
    return presence


def test_connections_are_found_by_id() -> None:
    presence = connected(ALICE_1, BOB)
    assert presence.connection("c1") == ALICE_1
    assert presence.connection("c3") == BOB
    assert presence.connection("nope") is None
    assert presence.connection_count == 2


def test_a_users_connections_oldest_first_within_their_tenant() -> None:
    presence = connected(ALICE_1, ALICE_2, BOB, GLOBEX_ALICE, SERVICE)
    assert presence.connections_of(ACME, "alice") == ["c2", "c1"]
    assert presence.connections_of(GLOBEX, "alice") == ["c4"]
    assert presence.connections_of(None, "alice") == []
    assert presence.connections_of(None, "backend") == ["c5"]
    assert presence.connections_of(ACME, "carol") == []


def test_connections_by_tenant() -> None:
    presence = connected(ALICE_1, ALICE_2, BOB, GLOBEX_ALICE, SERVICE)
    assert presence.connections_by_tenant() == {ACME: 3, GLOBEX: 1, None: 1}
    assert Presence().connections_by_tenant() == {}


def test_join_reports_whether_the_connection_is_new_to_the_room() -> None:
    presence = connected(ALICE_1, BOB)
    assert presence.join(LOBBY, ALICE_1, 100.0) is True
    assert presence.join(LOBBY, ALICE_1, 200.0) is False
    assert presence.join(LOBBY, BOB, 300.0) is True
    assert presence.member_count(LOBBY) == 2
    assert presence.rooms_of(ConnectionId("c1")) == {LOBBY}
    # Joining again does not move the first join time.
    assert presence.members(LOBBY) == [in_room(ALICE_1, 100.0), in_room(BOB, 300.0)]


def test_members_are_listed_in_the_order_they_joined_the_room() -> None:
    presence = connected(ALICE_1, ALICE_2, BOB)
    # BOB connected last but joins first; ALICE_2 connected first but joins last.
    presence.join(LOBBY, BOB, 100.0)
    presence.join(LOBBY, ALICE_1, 101.0)
    presence.join(LOBBY, ALICE_2, 102.0)
    assert presence.members(LOBBY) == [
        in_room(BOB, 100.0),
        in_room(ALICE_1, 101.0),
        in_room(ALICE_2, 102.0),
    ]
    assert presence.members("acme:chat.empty") == []
    assert presence.member_count("acme:chat.empty") == 0


def test_joining_a_room_leaves_the_connection_record_alone() -> None:
    presence = connected(ALICE_1)
    presence.join(LOBBY, ALICE_1, 100.0)
    assert presence.connection("c1") == ALICE_1
    assert presence.connections_of(ACME, "alice") == ["c1"]


def test_leave_returns_the_entry_and_forgets_empty_rooms() -> None:
    presence = connected(ALICE_1, BOB)
    presence.join(LOBBY, ALICE_1, 100.0)
    presence.join(LOBBY, BOB, 101.0)
    presence.join("acme:chat.other", ALICE_1, 102.0)
    assert presence.leave(LOBBY, ConnectionId("c1")) == in_room(ALICE_1, 100.0)
    assert presence.leave(LOBBY, ConnectionId("c1")) is None
    assert presence.rooms_of(ConnectionId("c1")) == {"acme:chat.other"}
    assert sorted(presence.room_keys()) == [LOBBY, "acme:chat.other"]
    assert presence.leave(LOBBY, ConnectionId("c3")) == in_room(BOB, 101.0)
    assert presence.room_keys() == ["acme:chat.other"]
    assert presence.rooms_of(ConnectionId("c3")) == set()
    assert presence.leave("acme:chat.none", ConnectionId("c3")) is None


def test_a_connection_may_rejoin_after_leaving() -> None:
    presence = connected(ALICE_1)
    presence.join(LOBBY, ALICE_1, 100.0)
    presence.leave(LOBBY, ConnectionId("c1"))
    assert presence.join(LOBBY, ALICE_1, 150.0) is True
    assert presence.members(LOBBY) == [in_room(ALICE_1, 150.0)]


def test_rooms_of_returns_a_copy() -> None:
    presence = connected(ALICE_1)
    presence.join(LOBBY, ALICE_1, 100.0)
    rooms = presence.rooms_of(ConnectionId("c1"))
    rooms.add("acme:chat.fake")
    assert presence.rooms_of(ConnectionId("c1")) == {LOBBY}


def test_disconnect_leaves_every_room_and_reports_them_sorted() -> None:
    presence = connected(ALICE_1, ALICE_2, BOB)
    for at, key in enumerate(("acme:chat.z", "acme:chat.a", "global.news")):
        presence.join(key, ALICE_1, float(at))
    presence.join("acme:chat.a", BOB, 9.0)
    left = presence.disconnect(ConnectionId("c1"))
    assert left == [
        ("acme:chat.a", in_room(ALICE_1, 1.0)),
        ("acme:chat.z", in_room(ALICE_1, 0.0)),
        ("global.news", in_room(ALICE_1, 2.0)),
    ]
    assert presence.connection("c1") is None
    assert presence.connection_count == 2
    assert presence.connections_of(ACME, "alice") == ["c2"]
    assert presence.rooms_of(ConnectionId("c1")) == set()
    assert presence.room_keys() == ["acme:chat.a"]
    assert presence.members("acme:chat.a") == [in_room(BOB, 9.0)]


def test_disconnecting_a_users_last_connection_forgets_the_user() -> None:
    presence = connected(BOB)
    assert presence.disconnect(ConnectionId("c3")) == []
    assert presence.connections_of(ACME, "bob") == []
    assert presence.connections_by_tenant() == {}
    assert presence.connection_count == 0


def test_disconnecting_an_unknown_connection_is_harmless() -> None:
    presence = connected(BOB)
    assert presence.disconnect(ConnectionId("nope")) == []
    assert presence.connection_count == 1


def test_a_connection_left_explicitly_is_not_reported_again_on_disconnect() -> None:
    presence = connected(ALICE_1)
    presence.join("acme:chat.a", ALICE_1, 1.0)
    presence.join("acme:chat.b", ALICE_1, 2.0)
    presence.leave("acme:chat.a", ConnectionId("c1"))
    assert presence.disconnect(ConnectionId("c1")) == [("acme:chat.b", in_room(ALICE_1, 2.0))]
    assert presence.room_keys() == []
