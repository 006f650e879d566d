"""RealtimeService over a node in the test's process (src/roomcast/rpc/realtime.py).

The servicer is registered on real grpcio inside the process
(:mod:`support.grpc_local`) over a node on the memory broker
(:mod:`support.local_node`); clients are the generated stubs and
:class:`support.grpc.Stream`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from support.grpc import Stream, bearer, payload
from support.grpc_local import grpc_channel
from support.local_node import FakeConnection, local_node
from support.nesting import nested_objects
from support.tokens import token, user
from support.waiting import UNIT, eventually

from roomcast.node import Node
from roomcast.presence import ConnectionId
from roomcast.rpc.realtime import RealtimeServicer, add_realtime_service
from roomcast.v1 import realtime_pb2, realtime_pb2_grpc

ALICE = token("alice")
BACKEND = token("backend", "service")  # a service of acme
OPS = token("ops", "service", tenant=None)  # a platform service


@asynccontextmanager
async def serving(
    **settings: Any,
) -> AsyncIterator[tuple[Node, RealtimeServicer, realtime_pb2_grpc.RealtimeServiceStub, Any]]:
    """A node, its servicer, a stub, and the channel (for streams)."""
    node = await local_node(**settings)
    servicer = RealtimeServicer(node)
    async with grpc_channel(lambda server: add_realtime_service(servicer, server)) as channel:
        yield node, servicer, realtime_pb2_grpc.RealtimeServiceStub(channel), channel


def publish_request(room: str = "chat.x", **values: Any) -> realtime_pb2.PublishRequest:
    return realtime_pb2.PublishRequest(room=room, event="said", payload=payload(**values))


async def status_of(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value.code(), raised.value.details() or ""


# -- Publish and PublishBatch -------------------------------------------------------------


async def test_publish_answers_where_the_event_landed() -> None:
    async with serving() as (node, _, stub, _):
        first = await stub.Publish(publish_request(text="hi"), metadata=bearer(BACKEND))
        second = await stub.Publish(publish_request(text="again"), metadata=bearer(BACKEND))
        assert (first.offset, second.offset) == (1, 2)
        assert first.epoch == second.epoch
        assert first.id != second.id
        page = await node.history(user("alice"), "chat.x", "", None, 0, 1 << 20)
        assert len(page.items) == 2
        assert node.metrics.calls[("Publish", "OK")] == 2


async def test_publish_refusals_carry_their_status_and_publish_nothing() -> None:
    async with serving() as (node, _, stub, _):
        deep = realtime_pb2.PublishRequest(room="chat.x", event="said")
        deep.payload.update(nested_objects(40))
        code, details = await status_of(stub.Publish(deep, metadata=bearer(BACKEND)))
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert "nested" in details
        code, details = await status_of(
            stub.Publish(publish_request("tenant.acme.users"), metadata=bearer(ALICE))
        )
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert "tenant.acme.users" in details
        code, _ = await status_of(stub.Publish(publish_request()))
        assert code is grpc.StatusCode.UNAUTHENTICATED
        assert not (await node.history(user("alice"), "chat.x", "", None, 0, 1 << 20)).items


async def test_undecodable_bytes_are_an_invalid_argument() -> None:
    async with serving() as (_, _, _, channel):
        raw = channel.unary_unary("/roomcast.v1.RealtimeService/Publish")
        code, details = await status_of(raw(b"\x0a\xff", metadata=bearer(BACKEND)))
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith("request: not a valid PublishRequest")


async def test_a_batch_answers_each_item_in_its_place() -> None:
    async with serving() as (_, _, stub, _):
        request = realtime_pb2.PublishBatchRequest(
            events=[publish_request(), publish_request("chat..x"), publish_request()]
        )
        response = await stub.PublishBatch(request, metadata=bearer(BACKEND))
        kinds = [result.WhichOneof("result") for result in response.results]
        assert kinds == ["published", "error", "published"]
        assert [response.results[i].published.offset for i in (0, 2)] == [1, 2]
        assert response.results[1].error.code == "INVALID_ARGUMENT"
        assert "chat..x" in response.results[1].error.message


# -- Subscribe ------------------------------------------------------------------------------


async def test_a_subscriber_gets_what_is_published_after_it_subscribed() -> None:
    async with serving() as (node, _, stub, channel):
        await stub.Publish(publish_request(n=0), metadata=bearer(BACKEND))
        stream = await Stream(channel, ALICE, ["chat.x"]).ready()
        assert node.streams == 1
        for n in range(1, 4):
            await stub.Publish(publish_request(n=n), metadata=bearer(BACKEND))
        events = await stream.wait_for(3)
        assert [(e.offset, e.payload["n"]) for e in events] == [(2, 1), (3, 2), (4, 3)]
        stream.cancel()
        await eventually(lambda: node.streams == 0, 2 * UNIT)
        assert not list(node.hub.rooms())


async def test_a_resumed_subscription_replays_in_pages_before_it_is_live() -> None:
    async with serving(max_frame_bytes=400) as (_, _, stub, channel):
        first = await stub.Publish(publish_request(n=1), metadata=bearer(BACKEND))
        for n in range(2, 11):
            await stub.Publish(publish_request(n=n, pad="x" * 100), metadata=bearer(BACKEND))
        stream = Stream(channel, ALICE, ["chat.x"], since={"chat.x": (1, first.epoch)})
        await stream.ready()
        (recovery,) = stream.recoveries
        assert recovery.recovered
        assert recovery.position.offset == 10
        assert recovery.room == "chat.x"
        assert stream.messages >= 4  # several pages, a recovery, subscribed
        await stub.Publish(publish_request(n=11), metadata=bearer(BACKEND))
        events = await stream.wait_for(10)
        assert [e.offset for e in events] == list(range(2, 12))
        stream.cancel()


async def test_a_subscription_from_a_lost_position_replays_nothing() -> None:
    async with serving() as (_, _, stub, channel):
        await stub.Publish(publish_request(), metadata=bearer(BACKEND))
        stream = Stream(channel, ALICE, ["chat.x"], since={"chat.x": (1, "an0ther")})
        await stream.ready()
        (recovery,) = stream.recoveries
        assert not recovery.recovered
        assert "epoch changed" in recovery.reason
        assert stream.events == []
        stream.cancel()


async def test_a_subscriber_that_falls_behind_is_ended_with_resource_exhausted() -> None:
    async with serving(subscriber_buffer_bytes=2048) as (node, _, stub, channel):
        stream = await Stream(channel, ALICE, ["chat.x"]).ready()
        batch = realtime_pb2.PublishBatchRequest(
            events=[publish_request(pad="x" * 100) for _ in range(50)]
        )
        await stub.PublishBatch(batch, metadata=bearer(BACKEND))
        error = await stream.ended()
        assert error is not None
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "resubscribe with since" in (error.details() or "")
        assert node.metrics.counters.slow_consumers == 1
        await eventually(lambda: node.streams == 0, 2 * UNIT)


async def test_streams_end_unavailable_when_the_server_stops_them() -> None:
    async with serving() as (node, servicer, _, channel):
        stream = await Stream(channel, ALICE, ["chat.x"]).ready()
        servicer.stop_streams()
        error = await stream.ended()
        assert error is not None
        assert error.code() is grpc.StatusCode.UNAVAILABLE
        await eventually(lambda: node.streams == 0, 2 * UNIT)


async def test_a_subscription_naming_too_many_rooms_to_resume_is_refused() -> None:
    async with serving(max_subscribe_since=1) as (node, _, _, channel):
        since = {"chat.a": (0, ""), "chat.b": (0, "")}
        stream = Stream(channel, ALICE, ["chat.a", "chat.b"], since=since)
        error = await stream.ended()
        assert error is not None
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert node.streams == 0
        assert not list(node.hub.rooms())


# -- JoinRoom, LeaveRoom, GetMetrics ------------------------------------------------------


async def test_join_and_leave_move_a_users_live_connections() -> None:
    async with serving() as (node, _, stub, _):
        alice = FakeConnection(ConnectionId("a"))
        await node.sessions.connect(alice, user("alice"))
        join = realtime_pb2.JoinRoomRequest(room="chat.x", user_id="alice")
        assert (await stub.JoinRoom(join, metadata=bearer(BACKEND))).connections == 1
        assert [j.room.name for j in alice.joins] == ["chat.x"]
        leave = realtime_pb2.LeaveRoomRequest(room="chat.x", user_id="alice")
        assert (await stub.LeaveRoom(leave, metadata=bearer(BACKEND))).connections == 1
        code, _ = await status_of(stub.JoinRoom(join, metadata=bearer(ALICE)))
        assert code is grpc.StatusCode.PERMISSION_DENIED


async def test_metrics_are_for_platform_callers() -> None:
    async with serving() as (node, _, stub, _):
        request = realtime_pb2.GetMetricsRequest()
        response = await stub.GetMetrics(request, metadata=bearer(OPS))
        assert response.node_id == node.settings.node_id
        code, _ = await status_of(stub.GetMetrics(request, metadata=bearer(BACKEND)))
        assert code is grpc.StatusCode.PERMISSION_DENIED
