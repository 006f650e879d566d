"""Node, the façade both shells call (src/roomcast/node.py).

A real node on the memory broker (:mod:`support.local_node`); recipients and
connections are :class:`~support.local_node.FakeConnection` s recording what
the core does with them.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from google.protobuf.struct_pb2 import Struct
from support.inputs import item
from support.local_node import FakeConnection, local_node
from support.tokens import principal, user

from roomcast.brokers import Publication
from roomcast.errors import (
    Forbidden,
    InvalidArgument,
    NotFound,
    Overloaded,
    ServerBusy,
    TooLarge,
    Unavailable,
)
from roomcast.history import Position
from roomcast.node import Node
from roomcast.operations import CONTROL, DISCONNECT
from roomcast.presence import ConnectionId
from roomcast.reading import event_offset
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


# -- publishing and fan-out ------------------------------------------------------------

BACKEND = principal("backend", "service")  # a service of acme


class Broken:
    """A recipient with a bug: it fails on every delivery."""

    def deliver(self, publications: Sequence[Publication]) -> None:
        raise RuntimeError("recipient bug")


async def test_events_reach_subscribers_of_the_room_and_of_patterns_in_their_tenant() -> None:
    node = await local_node()
    exact, pattern = FakeConnection(ConnectionId("e")), FakeConnection(ConnectionId("p"))
    await node.subscribe(user("alice"), exact, ["chat.x"], {})
    await node.subscribe(user("alice"), pattern, ["chat.*"], {})
    assert node.streams == 2
    await node.publish(BACKEND, item("chat.x"))
    await node.publish(BACKEND, item("chat.y"))
    await node.publish(principal("backend", "service", tenant="globex"), item("chat.x"))
    assert [p.room.key for p in exact.delivered] == [ROOM.key]
    assert [p.room.key for p in pattern.delivered] == [ROOM.key, "acme:chat.y"]


async def test_a_failing_recipient_costs_the_others_nothing() -> None:
    node = await local_node()
    watcher = FakeConnection(ConnectionId("w"))
    node.hub.add(ROOM, Broken())
    node.hub.add(ROOM, watcher)
    result = await node.publish(BACKEND, item("chat.x"))
    assert result.offset == 1
    assert [p.offset for p in watcher.delivered] == [1]
    assert node.metrics.counters.internal_errors == 1


# -- subscribing -----------------------------------------------------------------------


async def test_a_subscription_is_all_or_nothing() -> None:
    node = await local_node()
    recipient = FakeConnection(ConnectionId("r"))
    with pytest.raises(Forbidden):
        await node.subscribe(user("alice"), recipient, ["chat.x", "tenant.globex.users"], {})
    with pytest.raises(InvalidArgument, match=r"since: room 'chat\.y'"):
        await node.subscribe(user("alice"), recipient, ["chat.x"], {"chat.y": Position(0, "")})
    assert not list(node.hub.recipients(ROOM))
    assert node.streams == 0


@pytest.mark.parametrize(
    ("rooms", "error"),
    [([], InvalidArgument), (["chat.a", "chat.b", "chat.c"], TooLarge)],
)
async def test_a_subscription_names_one_room_or_more_up_to_the_limit(
    rooms: list[str], error: type[Exception]
) -> None:
    node = await local_node(max_subscribe_rooms=2)
    with pytest.raises(error):
        await node.subscribe(user("alice"), FakeConnection(ConnectionId("r")), rooms, {})


async def test_unsubscribing_stops_delivery_once_and_for_all() -> None:
    node = await local_node()
    recipient = FakeConnection(ConnectionId("r"))
    subscription = await node.subscribe(user("alice"), recipient, ["chat.x", "chat.*"], {})
    await node.unsubscribe(subscription)
    await node.unsubscribe(subscription)
    await node.publish(BACKEND, item("chat.x"))
    assert recipient.delivered == []
    assert node.streams == 0


async def test_a_platform_pattern_needs_no_tenant_and_a_tenant_caller_names_only_its_own() -> None:
    node = await local_node()
    everywhere = FakeConnection(ConnectionId("ops"))
    await node.subscribe(principal("ops", "service", tenant=None), everywhere, ["chat.*"], {})
    await node.publish(BACKEND, item("chat.x"))
    await node.publish(principal("backend", "service", tenant="globex"), item("chat.x"))
    assert {p.room.tenant for p in everywhere.delivered} == {"acme", "globex"}
    with pytest.raises(Forbidden, match="tenant_id"):
        await node.subscribe(user("alice"), FakeConnection(ConnectionId("a")), ["chat.*"], {}, "g")


# -- reading ---------------------------------------------------------------------------


async def test_history_is_read_in_pages_by_callers_who_may_subscribe() -> None:
    node = await local_node()
    for _ in range(5):
        await node.publish(BACKEND, item("chat.x"))
    page = await node.history(user("alice"), "chat.x", "", None, 2, 1 << 20)
    assert [event_offset(data) for data in page.items] == [1, 2]
    assert page.more
    assert page.top.offset == 5
    everything = await node.history(user("alice"), "chat.x", "", page.top, 0, 1 << 20)
    assert everything.items == []
    assert not everything.more
    start = Position(2, page.top.epoch)
    rest = await node.history(user("alice"), "chat.x", "", start, 0, 1 << 20)
    assert [event_offset(data) for data in rest.items] == [3, 4, 5]
    with pytest.raises(Forbidden):
        await node.history(user("eve", "globex"), "chat.x", "acme", None, 0, 1 << 20)


async def test_a_replay_from_a_lost_position_replays_nothing() -> None:
    node = await local_node()
    for _ in range(3):
        await node.publish(BACKEND, item("chat.x"))
    resolved = node.policy.resolve(user("alice"), "chat.x")
    page = await node.replay(user("alice"), resolved, Position(1, "an0ther"), 1 << 20)
    assert (page.items, page.recovered, page.top.offset) == ((), False, 3)


async def test_a_replay_goes_on_page_by_page_up_to_where_it_began() -> None:
    node = await local_node()
    for _ in range(6):
        await node.publish(BACKEND, item("chat.x", data={"pad": "x" * 100}))
    resolved = node.policy.resolve(user("alice"), "chat.x")
    first = await node.replay(user("alice"), resolved, Position(0, ""), 300)
    until = first.top
    for _ in range(3):  # published after the replay began: not the replay's to send
        await node.publish(BACKEND, item("chat.x"))
    offsets = [event_offset(data) for data in first.items]
    page = first
    while page.more:
        page = await node.replay_next(user("alice"), resolved, page, until, 300)
        assert page.recovered
        offsets += [event_offset(data) for data in page.items]
    assert offsets == [1, 2, 3, 4, 5, 6]


async def test_expensive_reads_are_refused_over_the_memory_budget_but_publishing_goes_on() -> None:
    node = await local_node()
    node.guard.observe(node.guard.limit + 1)
    with pytest.raises(Overloaded):
        await node.history(user("alice"), "chat.x", "", None, 0, 1 << 20)
    with pytest.raises(Overloaded):
        await node.members(user("alice"), "chat.x", "")
    with pytest.raises(ServerBusy):
        node.admit_connection()
    assert node.metrics.counters.overloaded == 3
    assert (await node.publish(BACKEND, item("chat.x"))).offset == 1
    node.guard.observe(0)
    assert len((await node.history(user("alice"), "chat.x", "", None, 0, 1 << 20)).items) == 1


async def test_reads_in_flight_are_bounded_per_caller() -> None:
    node = await local_node(max_reads_in_flight=1)
    with node.expensive_read(user("alice"), "history"):
        with pytest.raises(Overloaded):
            await node.history(user("alice"), "chat.x", "", None, 0, 1 << 20)
        await node.history(user("bob"), "chat.x", "", None, 0, 1 << 20)  # another caller
    await node.history(user("alice"), "chat.x", "", None, 0, 1 << 20)
    assert node.metrics.counters.overloaded == 1


async def test_members_of_a_room_are_listed_to_callers_who_may_subscribe() -> None:
    node = await local_node()
    for name in ("alice", "bob"):
        connection = FakeConnection(ConnectionId(name))
        await node.sessions.connect(connection, user(name))
        await node.sessions.join(connection.id, "chat.x", None, 1 << 18)
    members = await node.members(BACKEND, "chat.x", "")
    assert [m.user_id for m in members] == ["alice", "bob"]
    with pytest.raises(Forbidden):
        await node.members(user("eve", "globex"), "chat.x", "acme")


# -- JoinRoom and LeaveRoom ------------------------------------------------------------


async def connected(
    node: Node, sub: str, tenant: str = "acme", count: int = 1
) -> list[FakeConnection]:
    connections = [FakeConnection(ConnectionId(f"{tenant}-{sub}-{n}")) for n in range(count)]
    for connection in connections:
        await node.sessions.connect(connection, user(sub, tenant))
    return connections


async def test_a_service_moves_a_users_connections_into_a_room_and_out() -> None:
    node = await local_node()
    alice = await connected(node, "alice", count=2)
    assert await node.join(BACKEND, "chat.x", "", "alice", "") == 2
    assert await node.join(BACKEND, "chat.x", "", "alice", "") == 0  # in it already
    assert [[j.room.key for j in c.joins] for c in alice] == [[ROOM.key]] * 2
    assert len(list(node.hub.recipients(ROOM))) == 2
    assert await node.leave(BACKEND, "chat.x", "", "alice", alice[0].id) == 1
    assert [c.lefts for c in alice] == [[ROOM], []]
    with pytest.raises(Forbidden, match="for services"):
        await node.join(user("alice"), "chat.x", "", "alice", "")


async def test_join_moves_only_connections_of_the_rooms_tenant() -> None:
    node = await local_node()
    (ours,) = await connected(node, "alice")
    (theirs,) = await connected(node, "alice", "globex")
    platform = principal("ops", "service", tenant=None)
    assert await node.join(platform, "chat.x", "acme", "alice", "") == 1
    assert [c.joins != [] for c in (ours, theirs)] == [True, False]
    with pytest.raises(NotFound):
        await node.join(platform, "chat.x", "acme", "", theirs.id)


async def test_a_draining_node_refuses_new_work_but_lets_connections_leave() -> None:
    node = await local_node()
    (alice,) = await connected(node, "alice")
    await node.join(BACKEND, "chat.x", "", "alice", "")
    node.begin_drain()
    with pytest.raises(Unavailable):
        await node.subscribe(user("alice"), FakeConnection(ConnectionId("r")), ["chat.x"], {})
    with pytest.raises(Unavailable):
        await node.join(BACKEND, "chat.y", "", "alice", "")
    assert await node.leave(BACKEND, "chat.x", "", "alice", "") == 1
    assert alice.lefts == [ROOM]
