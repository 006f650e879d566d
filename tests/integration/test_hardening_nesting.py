"""Attacks with nesting, through real sockets: no input path stores what a client cannot decode.

A payload nested about 50 deep once got an offset over the WebSocket bridge,
then broke every reader of the room: live members never got it (a silent
gap), history and resumes failed with ``internal``, and Python grpcio
subscribers died with "Exception deserializing response!". Every input path
now passes one gate (src/roomcast/gate.py). Here each path is attacked at the
limit and around it while a grpcio subscriber, the Python client and a
WebSocket member watch the room: they must keep working, offsets must stay
without a gap, and the server must log no traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from google.protobuf.json_format import MessageToDict
from google.protobuf.struct_pb2 import Struct
from support.grpc import Stream, bearer
from support.nesting import depth, encoded_lists, encoded_objects, nested_lists, nested_objects
from support.server import ServerProcess, serving
from support.waiting import UNIT
from support.ws import WsClient

from roomcast.v1 import admin_pb2, admin_pb2_grpc, realtime_pb2
from roomcast.wire import field_bytes
from roomcast_client import Event, RoomcastClient

DEPTHS = (31, 32, 33, 34, 49, 50, 250, 900)
PUBLISH = "/roomcast.v1.RealtimeService/Publish"
PUBLISH_BATCH = "/roomcast.v1.RealtimeService/PublishBatch"
TRACK_ACTIVITY = "/roomcast.v1.AdminService/TrackActivity"


def shapes(levels: int) -> list[dict[str, Any]]:
    return [nested_objects(levels), nested_lists(levels)]


def struct(value: dict[str, Any]) -> Struct:
    message = Struct()
    message.update(value)
    return message


class Watchers:
    """Everyone who follows the attacked room, and what they received."""

    def __init__(
        self, stream: Stream, client: RoomcastClient, member: WsClient, received: list[Event]
    ) -> None:
        self.stream, self.client, self.member, self.received = stream, client, member, received
        self.arrived = asyncio.Event()  # set by the collector as events arrive

    async def saw(self, count: int) -> None:
        """Until every watcher has ``count`` events of the room."""
        await self.stream.wait_for(count, 10 * UNIT)
        await self.member.wait(
            lambda: True if len(self.member.of_type("event")) >= count else None, 10 * UNIT
        )
        async with asyncio.timeout(10 * UNIT):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()

    def check(self, count: int) -> None:
        """Each has exactly ``count`` events, offsets 1..count, none it could not read."""
        assert self.stream.error is None, self.stream.error
        assert [e.offset for e in self.stream.events] == list(range(1, count + 1))
        assert [e["offset"] for e in self.member.of_type("event")] == list(range(1, count + 1))
        assert [e.offset for e in self.received] == list(range(1, count + 1))


@pytest.fixture(scope="module")
def server() -> Any:
    with serving(
        env={"ROOMCAST_WS_ABUSE_LIMIT": "1000", "ROOMCAST_WS_RATE_BURST": "500"}
    ) as process:
        yield process


@pytest.fixture
async def watched(
    server: ServerProcess, unique: Callable[[str], str]
) -> AsyncIterator[tuple[str, Watchers, WsClient]]:
    """A chat room of acme, its watchers, and an attacker who joined it."""
    room = unique("chat.nest")
    service = server.token("backend", "service", tenant="acme")
    channel = server.channel()
    stream = await Stream(channel, service, ["chat.*"]).ready()
    client = RoomcastClient(server.target, service)
    received: list[Event] = []
    subscription = client.subscribe(room)
    await subscription.ready()

    async def collect() -> None:
        async for item in subscription:
            if isinstance(item, Event):
                received.append(item)
                watchers.arrived.set()

    collector = asyncio.create_task(collect())
    watchers = Watchers(stream, client, None, received)  # type: ignore[arg-type]
    member = await WsClient.connect(server, server.token("bob", "user", tenant="acme"))
    await member.next("connection.confirmed")
    await member.request({"type": "join_room", "room": room})
    attacker = await WsClient.connect(server, server.token("mallory", "user", tenant="acme"))
    await attacker.next("connection.confirmed")
    await attacker.request({"type": "join_room", "room": room})
    watchers.member = member
    yield room, watchers, attacker
    collector.cancel()
    await subscription.aclose()
    await client.close()
    stream.cancel()
    await channel.close()
    await member.close()
    await attacker.close()


def assert_no_traceback(server: ServerProcess) -> None:
    assert "Traceback" not in server.log, server.log[-3000:]
    assert "internal error" not in server.log


async def test_send_message_at_every_depth(
    server: ServerProcess, watched: tuple[str, Watchers, WsClient]
) -> None:
    room, watchers, attacker = watched
    stored = 0
    for levels in DEPTHS:
        for payload in shapes(levels):
            assert depth(payload) == levels
            reply = await attacker.request(
                {"type": "send_message", "event": "e", "rooms": [room], "payload": payload}
            )
            if levels <= 32:
                stored += 1
                assert reply["type"] == "message_sent", reply
                assert reply["offsets"] == {room: stored}
            else:
                assert (reply["type"], reply["code"]) == ("error", "bad_request"), reply
                assert reply["message"].startswith("payload: nested deeper than 32 levels")
    # A plain event after the refusals takes the next offset: nothing was skipped.
    reply = await attacker.request({"type": "send_message", "event": "e", "rooms": [room]})
    stored += 1
    assert reply["offsets"] == {room: stored}
    await watchers.saw(stored)
    watchers.check(stored)
    # The watchers got the deep payloads intact.
    deepest = [e for e in watchers.received if e.offset <= 4]
    assert [depth(e.payload) for e in deepest] == [31, 31, 32, 32]
    assert watchers.stream.events[3].payload == struct(nested_lists(32))
    await check_readers(server, room, stored)
    assert_no_traceback(server)


async def check_readers(server: ServerProcess, room: str, stored: int) -> None:
    """History, GetHistory and a resuming Subscribe all read the room whole."""
    reader = await WsClient.connect(server, server.token("carol", "user", tenant="acme"))
    await reader.next("connection.confirmed")
    history = await reader.request({"type": "history", "room": room, "limit": 1000})
    assert history["type"] == "history", history
    events = list(history["events"])
    while history["more"]:
        last = events[-1]
        since = {"offset": last["offset"], "epoch": last["epoch"]}
        history = await reader.request({"type": "history", "room": room, "since": since})
        events += history["events"]
    assert [e["offset"] for e in events] == list(range(1, stored + 1))
    joined = await reader.request(
        {"type": "join_room", "room": room, "since": {"offset": 0, "epoch": history["epoch"]}}
    )
    missed = list(joined["missed"])
    while joined["more"]:
        joined = await reader.next("missed")
        missed += joined["events"]
    assert [e["offset"] for e in missed] == list(range(1, stored + 1))
    await reader.close()
    service = bearer(server.token("backend", "service", tenant="acme"))
    async with server.channel() as channel:
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        page = await admin.GetHistory(admin_pb2.GetHistoryRequest(room=room), metadata=service)
        assert [e.offset for e in page.events] == list(range(1, stored + 1))
        epoch = page.position.epoch
        stream = await Stream(
            channel,
            server.token("backend", "service", tenant="acme"),
            [room],
            since={room: (0, epoch)},
        ).ready()
        await stream.wait_for(stored)
        assert [e.offset for e in stream.events] == list(range(1, stored + 1))
        assert stream.recoveries[0].recovered
        stream.cancel()


async def test_cursor_positions_at_every_depth(
    server: ServerProcess, watched: tuple[str, Watchers, WsClient]
) -> None:
    room, watchers, attacker = watched
    for levels in DEPTHS:
        # A cursor has no reply: only a refusal echoes the id.
        await attacker.send(
            {"type": "cursor", "room": room, "position": nested_objects(levels), "id": levels}
        )
    assert (await attacker.request({"type": "ping"}))["type"] == "pong"
    # Positions travel inside {"position": ...}: 31 levels of their own at most.
    errors = attacker.of_type("error")
    assert sorted(e["id"] for e in errors) == [d for d in DEPTHS if d > 31]
    assert all(e["message"].startswith("position: nested deeper than 32") for e in errors)
    cursor = await watchers.member.next("cursor")
    assert depth(cursor["position"]) == 31
    assert_no_traceback(server)


def raw_call(channel: grpc.aio.Channel, method: str, response: Any) -> Any:
    """A unary call that sends request bytes as they are."""
    return channel.unary_unary(
        method, request_serializer=lambda data: data, response_deserializer=response.FromString
    )


def encoded_shapes(levels: int) -> list[bytes]:
    return [encoded_objects(levels), encoded_lists(levels)]


async def test_grpc_publish_and_batch_at_every_depth(
    server: ServerProcess, watched: tuple[str, Watchers, WsClient]
) -> None:
    room, watchers, _ = watched
    service = bearer(server.token("backend", "service", tenant="acme"))
    head = realtime_pb2.PublishRequest(room=room, event="e").SerializeToString()
    stored = 0
    async with server.channel() as channel:
        publish = raw_call(channel, PUBLISH, realtime_pb2.PublishResponse)
        for levels in DEPTHS:
            for payload in encoded_shapes(levels):
                request = head + field_bytes(3, payload)
                if levels <= 32:
                    stored += 1
                    assert (await publish(request, metadata=service)).offset == stored
                    continue
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await publish(request, metadata=service)
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                # Past 100 protobuf levels no runtime decodes the request at all.
                assert refused.value.details().startswith(
                    ("payload: nested deeper than 32 levels", "request: not a valid PublishRequest")
                ), refused.value.details()
        # A batch: each item on its own, refusals in their places.
        batch = b"".join(
            field_bytes(1, head + field_bytes(3, payload))
            for payload in (
                encoded_objects(30),
                encoded_lists(33),
                encoded_objects(32),
                encoded_objects(33),
                encoded_lists(32),
            )
        )
        response = await raw_call(channel, PUBLISH_BATCH, realtime_pb2.PublishBatchResponse)(
            batch, metadata=service
        )
        kinds = [r.WhichOneof("result") for r in response.results]
        assert kinds == ["published", "error", "published", "error", "published"]
        published = [r.published.offset for r in response.results if r.HasField("published")]
        assert published == [stored + 1, stored + 2, stored + 3]
        assert response.results[1].error.code == "INVALID_ARGUMENT"
        assert response.results[3].error.message.startswith("payload: nested deeper than 32")
        stored += 3
    await watchers.saw(stored)
    watchers.check(stored)
    await check_readers(server, room, stored)
    assert_no_traceback(server)


async def test_track_activity_details_at_every_depth(server: ServerProcess) -> None:
    service = bearer(server.token("backend", "service", tenant="acme"))
    admin_token = server.token("ada", "tenant_admin", tenant="acme")
    head = admin_pb2.TrackActivityRequest(user_id="alice", action="login").SerializeToString()
    async with server.channel() as channel:
        watcher = await Stream(channel, admin_token, ["tenant.acme.admins"]).ready()
        track = raw_call(channel, TRACK_ACTIVITY, admin_pb2.TrackActivityResponse)
        accepted = 0
        for levels in DEPTHS:
            for details in encoded_shapes(levels):
                request = head + field_bytes(7, details)
                # The details sit at level 2 of the event's payload.
                if levels <= 31:
                    await track(request, metadata=service)
                    accepted += 1
                    continue
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await track(request, metadata=service)
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert refused.value.details().startswith(
                    ("details: nested deeper than 32", "request: not a valid TrackActivityRequest")
                ), refused.value.details()
        await watcher.until(
            lambda: len([e for e in watcher.events if e.event == "user.activity"]) >= accepted
        )
        assert watcher.error is None
        assert max(depth(MessageToDict(e.payload)) for e in watcher.events) == 32
        watcher.cancel()
    assert_no_traceback(server)
