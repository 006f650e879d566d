"""Node: what it does with the bursts the broker delivers (node.py)."""

from __future__ import annotations

from google.protobuf.struct_pb2 import Struct
from support.local_node import FakeConnection, local_node
from support.tokens import user

from roomcast.brokers import Publication
from roomcast.node import Node
from roomcast.operations import CONTROL, DISCONNECT
from roomcast.presence import ConnectionId
from roomcast.rooms import Room, RoomName, TenantId
from roomcast.v1.event_pb2 import Event

ROOM = Room.of(RoomName("chat.x"), TenantId("acme"))


def event(offset: int) -> Publication:
    data = Event(room=ROOM.name, event="e", offset=offset).SerializeToString()
    return Publication(ROOM, offset, "ep", 0, data)


def command(origin: str, user_id: str = "mallory") -> Publication:
    payload = Struct()
    payload.update(
        {
            "tenant_id": "acme",
            "user_id": user_id,
            "connection_id": "",
            "reason": "locked",
            "origin": origin,
        }
    )
    data = Event(room=CONTROL.name, event=DISCONNECT, payload=payload).SerializeToString()
    return Publication(CONTROL, 0, "ep", 0, data)


async def watched_node() -> tuple[Node, FakeConnection, FakeConnection]:
    """A node with a watcher of ROOM and a connection of mallory's."""
    node = await local_node()
    watcher = FakeConnection(ConnectionId("w"))
    node.hub.add(ROOM, watcher)
    mallory = FakeConnection(ConnectionId("m"))
    await node.sessions.connect(mallory, user("mallory"))
    mallory.delivered.clear()
    return node, watcher, mallory


async def test_a_command_amid_a_burst_is_carried_out_and_the_events_delivered() -> None:
    node, watcher, mallory = await watched_node()
    node._fan_out([event(1), event(2), command("other"), event(3)])
    assert [p.offset for p in watcher.delivered] == [1, 2, 3]
    assert mallory.closed == (4001, "locked")


async def test_a_command_first_in_a_burst_holds_back_no_event() -> None:
    node, watcher, mallory = await watched_node()
    node._fan_out([command("other"), event(1), event(2)])
    assert [p.offset for p in watcher.delivered] == [1, 2]
    assert mallory.closed == (4001, "locked")


async def test_a_nodes_own_command_is_not_carried_out_twice() -> None:
    node, watcher, mallory = await watched_node()
    node._fan_out([command(node.settings.node_id), event(1)])
    assert mallory.closed is None
    assert [p.offset for p in watcher.delivered] == [1]
