"""Sessions: live connections, their rooms, and what they do there (src/roomcast/sessions.py).

A real node on the memory broker (:mod:`support.local_node`), with
:class:`~support.local_node.FakeConnection` s for the bridge's connections.
"""

from __future__ import annotations

import pytest
from support.inputs import item
from support.local_node import FakeConnection, FlakyBroker, local_node
from support.tokens import principal, user

from roomcast.auth import Principal
from roomcast.errors import (
    BrokerError,
    ConnectionLimit,
    Forbidden,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    NotMember,
)
from roomcast.gate import encode_json
from roomcast.history import Position
from roomcast.node import Node
from roomcast.presence import ConnectionId
from roomcast.reading import event_offset
from roomcast.rooms import Room, RoomName, TenantId
from roomcast.v1.event_pb2 import Event

CHAT = Room.of(RoomName("chat.x"), TenantId("acme"))
OTHER = Room.of(RoomName("chat.y"), TenantId("acme"))


async def test_a_disconnect_while_the_broker_is_down_leaves_every_room() -> None:
    broker = FlakyBroker()
    node = await local_node(broker, max_connections_per_user=1)
    carol = FakeConnection(ConnectionId("c"))
    await node.sessions.connect(carol, user("carol"))
    for room in (CHAT, OTHER):  # rooms that announce leaves: each needs the broker
        await node.sessions.join(carol.id, room.name, None, 1 << 18)
    broker.down = True
    await node.sessions.disconnect(carol.id)
    assert node.presence.entries() == []
    assert node.sessions.by_tenant() == {}
    assert not list(node.hub.recipients(CHAT))
    assert not list(node.hub.recipients(OTHER))
    # Her one connection allowed is free again.
    node.sessions.admit(user("carol"))


async def test_leaving_a_room_while_the_broker_is_down_leaves_it() -> None:
    broker = FlakyBroker()
    node = await local_node(broker)
    carol = FakeConnection(ConnectionId("c"))
    await node.sessions.connect(carol, user("carol"))
    await node.sessions.join(carol.id, CHAT.name, None, 1 << 18)
    broker.down = True
    assert await node.sessions.leave(carol.id, CHAT.name) == CHAT
    assert node.presence.members(CHAT.key) == []


BACKEND = principal("backend", "service")  # a service of acme


async def connected(node: Node, who: Principal, name: str) -> FakeConnection:
    connection = FakeConnection(ConnectionId(name))
    await node.sessions.connect(connection, who)
    return connection


def signals(connection: FakeConnection) -> list[tuple[str, str]]:
    """(kind, user) of the signals a connection was delivered."""
    found = [Event.FromString(p.data) for p in connection.delivered if p.signal]
    return [(event.event, event.sender.user_id) for event in found]


# -- connecting ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "rooms"),
    [
        (
            principal("alice", "user"),
            [
                "user.alice.private",
                "user.alice.notifications",
                "tenant.acme.users",
                "tenant.acme.notifications",
            ],
        ),
        (
            principal("ann", "tenant_admin"),
            [
                "user.ann.private",
                "user.ann.notifications",
                "tenant.acme.users",
                "tenant.acme.notifications",
                "tenant.acme.admins",
            ],
        ),
        (principal("root", "super_admin", tenant=None), ["platform.admins"]),
        (principal("ops", "service", tenant=None), []),
    ],
)
async def test_a_connection_joins_its_own_rooms(who: Principal, rooms: list[str]) -> None:
    node = await local_node()
    connection = FakeConnection(ConnectionId("c"))
    joined = await node.sessions.connect(connection, who)
    assert [j.room.name for j in joined] == rooms
    assert all(j.room.tenant == who.tenant for j in joined)
    assert sorted(node.presence.rooms_of(connection.id)) == sorted(j.room.key for j in joined)


async def test_connections_are_limited_per_user_and_per_tenant() -> None:
    node = await local_node(max_connections_per_user=2, max_connections_per_tenant=3)
    first = await connected(node, user("alice"), "a1")
    await connected(node, user("alice"), "a2")
    with pytest.raises(ConnectionLimit, match="user 'alice'"):
        await connected(node, user("alice"), "a3")
    await connected(node, user("bob"), "b1")
    with pytest.raises(ConnectionLimit, match="the tenant"):
        await connected(node, user("carl"), "c1")
    node.sessions.admit(user("dora", "globex"))  # another tenant counts apart
    await node.sessions.disconnect(first.id)
    node.sessions.admit(user("alice"))
    assert node.sessions.by_tenant() == {"acme": 2}


async def test_a_refreshed_token_must_be_for_the_same_identity() -> None:
    node = await local_node()
    alice = await connected(node, user("alice"), "a")
    node.sessions.reauthenticate(alice.id, user("alice"))
    with pytest.raises(Forbidden):
        node.sessions.reauthenticate(alice.id, user("alice", "globex"))
    assert node.sessions.principal(alice.id).tenant == "acme"


# -- joining and leaving -----------------------------------------------------------------


async def test_a_join_answers_with_the_position_and_the_events_missed_since() -> None:
    node = await local_node()
    for _ in range(5):
        await node.publish(BACKEND, item("chat.x"))
    epoch = (await node.history(BACKEND, "chat.x", "", None, 1, 1 << 20)).top.epoch
    alice = await connected(node, user("alice"), "a")
    joined = await node.sessions.join(alice.id, "chat.x", Position(2, epoch), 1 << 18)
    assert (joined.room, joined.position, joined.recovered) == (CHAT, Position(5, epoch), True)
    assert [event_offset(data) for data in joined.missed] == [3, 4, 5]
    assert not joined.more
    assert CHAT.key in alice.held  # live events wait for the answer
    assert alice in set(node.hub.recipients(CHAT))


async def test_a_join_pages_missed_events_by_bytes() -> None:
    node = await local_node()
    for _ in range(10):
        await node.publish(BACKEND, item("chat.x", data={"pad": "x" * 200}))
    epoch = (await node.history(BACKEND, "chat.x", "", None, 1, 1 << 20)).top.epoch
    alice = await connected(node, user("alice"), "a")
    joined = await node.sessions.join(alice.id, "chat.x", Position(0, epoch), 700)
    assert 1 <= len(joined.missed) < 10
    assert sum(len(data) for data in joined.missed) <= 700 or len(joined.missed) == 1
    assert joined.more
    assert joined.resolved is not None


async def test_a_join_from_a_lost_position_is_not_recovered() -> None:
    node = await local_node()
    await node.publish(BACKEND, item("chat.x"))
    alice = await connected(node, user("alice"), "a")
    joined = await node.sessions.join(alice.id, "chat.x", Position(1, "an0ther"), 1 << 18)
    assert (joined.recovered, joined.missed, joined.position.offset) == (False, (), 1)
    assert "epoch changed" in joined.reason


async def test_a_refused_join_leaves_no_trace() -> None:
    node = await local_node()
    alice = await connected(node, user("alice"), "a")
    before = node.presence.rooms_of(alice.id)
    with pytest.raises(Forbidden):
        await node.sessions.join(alice.id, "user.bob.private", None, 1 << 18)
    with pytest.raises(Forbidden):
        await node.sessions.join(alice.id, "tenant.globex.users", None, 1 << 18)
    assert node.presence.rooms_of(alice.id) == before
    assert alice.held == set(before)  # only its own rooms, held since it connected


async def test_a_join_that_fails_midway_is_undone() -> None:
    broker = FlakyBroker()
    node = await local_node(broker)
    alice = await connected(node, user("alice"), "a")
    broker.down = True  # announcing the join (chat rooms have presence) fails
    with pytest.raises(BrokerError):
        await node.sessions.join(alice.id, "chat.x", None, 1 << 18)
    assert node.presence.members(CHAT.key) == []
    assert alice not in set(node.hub.recipients(CHAT))
    assert (CHAT.key, None) in alice.released
    assert CHAT.key not in alice.held
    with pytest.raises(NotMember):
        node.sessions.room(alice.id, "chat.x")


async def test_a_connection_may_be_in_a_limited_number_of_rooms() -> None:
    node = await local_node(ws_max_rooms=5)  # its 4 own rooms, and one more
    alice = await connected(node, user("alice"), "a")
    await node.sessions.join(alice.id, "chat.a", None, 1 << 18)
    await node.sessions.join(alice.id, "chat.a", None, 1 << 18)  # a rejoin takes no room
    with pytest.raises(LimitExceeded, match="5 rooms"):
        await node.sessions.join(alice.id, "chat.b", None, 1 << 18)


async def test_joins_and_leaves_of_presence_rooms_are_announced_to_the_members() -> None:
    node = await local_node()
    alice = await connected(node, user("alice"), "a")
    bob = await connected(node, user("bob"), "b")
    await node.sessions.join(alice.id, "chat.x", None, 1 << 18)
    joined = await node.sessions.join(bob.id, "chat.x", None, 1 << 18)
    assert [m.user_id for m in joined.members] == ["alice", "bob"]
    assert await node.sessions.leave(bob.id, "chat.x") == CHAT
    assert signals(alice) == [
        ("presence.join", "alice"),
        ("presence.join", "bob"),
        ("presence.leave", "bob"),
    ]
    with pytest.raises(NotMember):
        await node.sessions.leave(bob.id, "chat.x")
    # Rooms whose rule has presence off announce nothing and list no members.
    before = signals(alice)
    carol = await connected(node, user("carol"), "c")  # into tenant.acme.users, as alice
    assert signals(alice) == before
    assert not (await node.sessions.join(carol.id, "tenant.acme.users", None, 1 << 18)).members


# -- acting in rooms ----------------------------------------------------------------------


async def test_send_publishes_to_every_room_named_as_the_client() -> None:
    node = await local_node()
    alice = await connected(node, user("alice"), "a")
    for room in ("chat.a", "chat.b"):
        await node.sessions.join(alice.id, room, None, 1 << 18)
    payload = encode_json({"text": "hi"})
    sent = await node.sessions.send(alice.id, "said", payload, ["chat.a", "chat.b"])
    assert [(room, result.offset) for room, result in sent] == [("chat.a", 1), ("chat.b", 1)]
    events = [Event.FromString(p.data) for p in alice.delivered if not p.signal]
    assert [(e.room, e.sender.connection_id) for e in events] == [("chat.a", "a"), ("chat.b", "a")]


@pytest.mark.parametrize(
    ("rooms", "error"),
    [
        ([], InvalidArgument),
        (["chat.a", "chat.a"], InvalidArgument),
        (["chat.a", "chat.b"], NotMember),  # chat.b not joined
        (["chat.a", "tenant.acme.users"], Forbidden),  # joined, but only services publish
    ],
)
async def test_send_publishes_nothing_unless_every_room_may_take_it(
    rooms: list[str], error: type[Exception]
) -> None:
    node = await local_node()
    alice = await connected(node, user("alice"), "a")
    for room in ("chat.a", "tenant.acme.users"):
        await node.sessions.join(alice.id, room, None, 1 << 18)
    with pytest.raises(error):
        await node.sessions.send(alice.id, "said", encode_json({}), rooms)
    assert not [p for p in alice.delivered if not p.signal]
    assert node.metrics.counters.messages_in == 0


async def test_signals_go_to_rooms_the_client_joined_and_may_publish_in() -> None:
    node = await local_node()
    alice = await connected(node, user("alice"), "a")
    await node.sessions.join(alice.id, "chat.x", None, 1 << 18)
    await node.sessions.signal(alice.id, "chat.x", "typing", {"state": True})
    assert signals(alice)[-1] == ("typing", "alice")
    with pytest.raises(NotMember):
        await node.sessions.signal(alice.id, "chat.y", "typing", {"state": True})
    await node.sessions.join(alice.id, "tenant.acme.users", None, 1 << 18)
    with pytest.raises(Forbidden):
        node.sessions.check_signal(alice.id, "tenant.acme.users")


# -- moved and closed by a backend ----------------------------------------------------------


async def test_targets_are_a_users_connections_or_one_of_the_rooms_tenant() -> None:
    node = await local_node()
    first = await connected(node, user("alice"), "a1")
    second = await connected(node, user("alice"), "a2")
    stranger = await connected(node, user("alice", "globex"), "g1")
    resolved = node.policy.resolve(BACKEND, "chat.x")
    acme = TenantId("acme")
    assert node.sessions.targets(resolved, acme, "alice", "") == [first.id, second.id]
    assert node.sessions.targets(resolved, acme, "", second.id) == [second.id]
    with pytest.raises(NotFound):
        node.sessions.targets(resolved, acme, "", stranger.id)
    with pytest.raises(InvalidArgument, match="user_id or connection_id"):
        node.sessions.targets(resolved, acme, "", "")
    with pytest.raises(InvalidArgument, match="user_id"):
        node.sessions.targets(resolved, acme, "al ice", "")


async def test_disconnect_user_closes_the_users_connections_with_4001() -> None:
    node = await local_node()
    first = await connected(node, user("alice"), "a1")
    second = await connected(node, user("alice"), "a2")
    stranger = await connected(node, user("alice", "globex"), "g1")
    acme = TenantId("acme")
    assert node.sessions.disconnect_user(acme, "alice", second.id, "") == 1
    assert (first.closed, second.closed) == (None, (4001, "disconnected by the server"))
    assert node.sessions.disconnect_user(acme, "alice", "", "locked") == 2
    assert first.closed == (4001, "locked")
    assert stranger.closed is None
