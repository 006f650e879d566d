"""Rooms over the WebSocket bridge: joining, sending, receiving, presence,
typing and cursor signals, and backends moving connections with JoinRoom and
LeaveRoom. gRPC and WebSocket reach the same rooms in both directions.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from support.grpc import Stream, bearer, payload
from support.server import ServerProcess
from support.waiting import UNIT
from support.ws import Open, join, websockets

from roomcast.v1 import realtime_pb2, realtime_pb2_grpc


@pytest.fixture
async def connect(server: ServerProcess) -> AsyncIterator[Open]:
    """``await connect(sub, *roles, tenant=…)``: confirmed clients, closed after the test."""
    async with websockets() as open_client:
        yield functools.partial(open_client, server)


async def test_grpc_publish_reaches_websocket_members(
    server: ServerProcess,
    connect: Open,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
) -> None:
    room = unique("chat.r")
    alice = await connect("alice")
    await join(alice, room)
    published = await realtime.Publish(
        realtime_pb2.PublishRequest(room=room, event="chat.message", payload=payload(text="hi")),
        metadata=bearer(server.token("backend", "service", tenant="acme")),
    )
    event = await alice.next("event")
    assert event == {
        "type": "event",
        "room": room,
        "event": "chat.message",
        "payload": {"text": "hi"},
        "offset": published.offset,
        "epoch": published.epoch,
        "id": published.id,
        "time": event["time"],
        "sender": {"user_id": "backend", "tenant_id": "acme", "service": "backend"},
    }
    assert event["time"].endswith("Z")


async def test_websocket_message_reaches_grpc_subscribers_with_the_senders_identity(
    server: ServerProcess,
    connect: Open,
    channel: grpc.aio.Channel,
    unique: Callable[[str], str],
) -> None:
    room = unique("chat.r")
    stream = await Stream(
        channel, server.token("backend", "service", tenant="acme"), [room]
    ).ready()
    alice = await connect("alice")
    joined = await join(alice, room)
    sent = await alice.request(
        {
            "type": "send_message",
            "event": "chat.message",
            "payload": {"text": "hello", "sender": "forged"},
            "rooms": [room],
        }
    )
    assert sent["type"] == "message_sent"
    assert sent["offsets"] == {room: 1}
    (event,) = await stream.wait_for(1)
    assert (event.room, event.event, event.offset, event.epoch) == (
        room,
        "chat.message",
        1,
        joined["epoch"],
    )
    assert event.sender.user_id == "alice"
    assert event.sender.tenant_id == "acme"
    assert event.sender.connection_id == (await alice.next("event"))["sender"]["connection_id"]
    assert event.payload["sender"] == "forged"  # payload is data, identity is the sender
    stream.cancel()


async def test_signals_never_reach_grpc_subscribers(
    server: ServerProcess,
    connect: Open,
    channel: grpc.aio.Channel,
    unique: Callable[[str], str],
) -> None:
    room = unique("chat.r")
    stream = await Stream(
        channel, server.token("backend", "service", tenant="acme"), [room]
    ).ready()
    alice, bob = await connect("alice"), await connect("bob")
    await join(alice, room)
    await join(bob, room)
    await alice.send({"type": "typing", "room": room, "state": True})
    await bob.next("typing")
    await alice.request({"type": "send_message", "event": "e.x", "rooms": [room]})
    events = await stream.wait_for(1)
    await asyncio.sleep(0.2 * UNIT)
    assert [e.event for e in events] == ["e.x"]
    stream.cancel()


async def test_send_to_several_rooms_checks_all_first(
    connect: Open, unique: Callable[[str], str]
) -> None:
    first, second = unique("chat.a"), unique("chat.b")
    alice = await connect("alice")
    await join(alice, first)
    refused = await alice.request(
        {"type": "send_message", "event": "e.x", "rooms": [first, second]}
    )
    assert (refused["type"], refused["code"]) == ("error", "not_member")
    assert second in refused["message"]
    await join(alice, second)
    sent = await alice.request({"type": "send_message", "event": "e.x", "rooms": [first, second]})
    assert sent["offsets"] == {first: 1, second: 1}  # the refused attempt published nothing


@pytest.mark.parametrize(
    ("room", "code"),
    [
        ("tenant.acme.users", "forbidden"),  # members may read, only services and admins publish
        ("user.alice.private", "forbidden"),
    ],
)
async def test_clients_publish_only_where_members_may(connect: Open, room: str, code: str) -> None:
    alice = await connect("alice")
    refused = await alice.request({"type": "send_message", "event": "e.x", "rooms": [room]})
    assert (refused["type"], refused["code"]) == ("error", code)
    typing = await alice.request({"type": "typing", "room": room, "state": True})
    assert (typing["type"], typing["code"]) == ("error", code)


async def test_leave_stops_delivery_and_leaving_twice_is_refused(
    server: ServerProcess,
    connect: Open,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
) -> None:
    room = unique("chat.r")
    alice = await connect("alice")
    await join(alice, room)
    left = await alice.request({"type": "leave_room", "room": room})
    assert left["type"] == "room_left"
    again = await alice.request({"type": "leave_room", "room": room})
    assert again["code"] == "not_member"
    await realtime.Publish(
        realtime_pb2.PublishRequest(room=room, event="e.x"),
        metadata=bearer(server.token("backend", "service", tenant="acme")),
    )
    await alice.request({"type": "ping"})
    await asyncio.sleep(0.2 * UNIT)
    assert alice.of_type("event") == []


async def test_presence_is_announced_on_join_leave_and_disconnect(
    connect: Open, unique: Callable[[str], str]
) -> None:
    room = unique("chat.r")
    alice, bob, carol = [await connect(name) for name in ("alice", "bob", "carol")]
    await join(alice, room)
    joined = await join(bob, room)
    assert [m["user_id"] for m in joined["presence"]] == ["alice", "bob"]
    assert (await alice.next("presence.join"))["user"]["user_id"] == "bob"
    await join(carol, room)
    assert (await alice.next("presence.join"))["user"]["user_id"] == "carol"
    await bob.request({"type": "leave_room", "room": room})
    assert (await alice.next("presence.leave"))["user"]["user_id"] == "bob"
    carol.websocket.transport.abort()  # abrupt: no closing handshake
    left = await alice.next("presence.leave")
    assert left["user"]["user_id"] == "carol"
    members = await alice.request({"type": "presence", "room": room})
    assert [m["user_id"] for m in members["members"]] == ["alice"]
    assert alice.of_type("presence.join")[0]["user"]["user_id"] == "bob"  # never its own


async def test_presence_is_not_announced_in_own_rooms(connect: Open) -> None:
    alice = await connect("alice")
    await connect("bob")  # both are in tenant.acme.users
    await alice.request({"type": "ping"})
    await asyncio.sleep(0.2 * UNIT)
    assert alice.of_type("presence.join") == []
    members = await alice.request({"type": "presence", "room": "tenant.acme.users"})
    assert {"alice", "bob"} <= {m["user_id"] for m in members["members"]}  # but tracked


async def test_typing_goes_to_the_others_and_only_on_change(
    connect: Open, unique: Callable[[str], str]
) -> None:
    room = unique("chat.r")
    alice, bob = await connect("alice"), await connect("bob")
    await join(alice, room)
    await join(bob, room)
    for state in (True, True, True, False, False, True):
        await alice.send({"type": "typing", "room": room, "state": state})
    await alice.request({"type": "ping"})
    await bob.wait(lambda: True if len(bob.of_type("typing")) >= 3 else None)
    await asyncio.sleep(0.2 * UNIT)
    typing = bob.of_type("typing")
    assert [t["state"] for t in typing] == [True, False, True]
    assert typing[0]["user"]["user_id"] == "alice"
    assert alice.of_type("typing") == []


async def test_cursor_updates_are_coalesced_latest_wins(
    connect: Open, unique: Callable[[str], str]
) -> None:
    room = unique("document.d") + ".collaboration"
    alice, bob = await connect("alice"), await connect("bob")
    await join(alice, room)
    await join(bob, room)
    started = time.monotonic()
    for column in range(40):
        await alice.send({"type": "cursor", "room": room, "position": {"column": column}})
    elapsed = time.monotonic() - started
    last = await bob.wait(
        lambda: next((c for c in bob.of_type("cursor") if c["position"] == {"column": 39}), None),
        5 * UNIT,
    )
    await asyncio.sleep(0.2 * UNIT)
    cursors = bob.of_type("cursor")
    assert cursors[-1] == last  # the latest position always arrives, last
    # At most one per 50 ms window (plus the first, sent at once).
    assert len(cursors) <= elapsed / 0.05 + 2, (len(cursors), elapsed)
    assert len(cursors) < 40
    columns = [c["position"]["column"] for c in cursors]
    assert columns == sorted(columns)
    assert alice.of_type("cursor") == []


async def test_join_room_from_a_backend_moves_live_connections(
    server: ServerProcess,
    connect: Open,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
) -> None:
    room = unique("chat.r")
    service = bearer(server.token("backend", "service", tenant="acme"))
    first, second = await connect("erin"), await connect("erin")
    joined = await realtime.JoinRoom(
        realtime_pb2.JoinRoomRequest(room=room, user_id="erin"), metadata=service
    )
    assert joined.connections == 2
    for client in (first, second):
        notice = await client.next("room_joined")
        assert notice["room"] == room
        assert "id" not in notice
    again = await realtime.JoinRoom(
        realtime_pb2.JoinRoomRequest(room=room, user_id="erin"), metadata=service
    )
    assert again.connections == 0  # already in
    sent = await first.request({"type": "send_message", "event": "e.x", "rooms": [room]})
    assert sent["type"] == "message_sent"  # a member now
    assert (await second.next("event"))["event"] == "e.x"
    connection_id = first.of_type("connection.confirmed")[0]["connection_id"]
    left = await realtime.LeaveRoom(
        realtime_pb2.LeaveRoomRequest(room=room, connection_id=connection_id), metadata=service
    )
    assert left.connections == 1
    assert (await first.next("room_left"))["room"] == room


async def test_join_room_never_crosses_tenants(
    server: ServerProcess,
    connect: Open,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
) -> None:
    room = unique("chat.r")
    gus = await connect("gus", tenant="globex")
    connection_id = gus.of_type("connection.confirmed")[0]["connection_id"]
    # acme's service finds neither globex's user nor its connection.
    acme = bearer(server.token("backend", "service", tenant="acme"))
    by_user = await realtime.JoinRoom(
        realtime_pb2.JoinRoomRequest(room=room, user_id="gus"), metadata=acme
    )
    assert by_user.connections == 0
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await realtime.JoinRoom(
            realtime_pb2.JoinRoomRequest(room=room, connection_id=connection_id), metadata=acme
        )
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    # A platform service naming the wrong tenant cannot reach it either.
    platform = bearer(server.token("ops", "service"))
    with pytest.raises(grpc.aio.AioRpcError) as wrong_tenant:
        await realtime.JoinRoom(
            realtime_pb2.JoinRoomRequest(room=room, tenant_id="acme", connection_id=connection_id),
            metadata=platform,
        )
    assert wrong_tenant.value.code() == grpc.StatusCode.NOT_FOUND
    await gus.request({"type": "ping"})
    await asyncio.sleep(0.1 * UNIT)
    assert gus.of_type("room_joined") == []
