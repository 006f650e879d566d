"""Sessions: connections leave their rooms whatever the broker does (sessions.py)."""

from __future__ import annotations

from support.local_node import FakeConnection, FlakyBroker, local_node
from support.tokens import user

from roomcast.presence import ConnectionId
from roomcast.rooms import Room, RoomName, TenantId

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
