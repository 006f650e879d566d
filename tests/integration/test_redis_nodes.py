"""Two real `roomcast serve --broker redis://…` processes acting as one platform.

The nodes share a `redis-server` this module starts; clients are real
grpcio channels, one to each node.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator

import grpc
import pytest
from support.cluster import prefixed
from support.grpc import Stream, bearer, payload
from support.redis import RedisProcess, start_redis
from support.server import ServerProcess, start_server

from roomcast.v1 import admin_pb2, admin_pb2_grpc, realtime_pb2, realtime_pb2_grpc


@pytest.fixture(scope="module")
def redis_for_nodes() -> Iterator[RedisProcess]:
    """The Redis both nodes use."""
    with start_redis() as server:
        yield server


@pytest.fixture(scope="module")
def nodes(redis_for_nodes: RedisProcess) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Node A and node B, one platform through Redis."""
    url = prefixed(redis_for_nodes.url)
    a = start_server("--broker", url)
    try:
        b = start_server("--broker", url)
    except BaseException:
        a.stop()
        raise
    yield a, b
    assert a.stop() == 0, a.log
    assert b.stop() == 0, b.log


@pytest.fixture
async def channels(
    nodes: tuple[ServerProcess, ServerProcess],
) -> AsyncIterator[tuple[grpc.aio.Channel, grpc.aio.Channel]]:
    """A client channel to each node."""
    a, b = nodes
    async with a.channel() as to_a, b.channel() as to_b:
        yield to_a, to_b


async def test_a_publish_on_node_a_reaches_a_subscriber_on_node_b_in_order(
    nodes: tuple[ServerProcess, ServerProcess],
    channels: tuple[grpc.aio.Channel, grpc.aio.Channel],
    unique: Callable[[str], str],
) -> None:
    a, _ = nodes
    to_a, to_b = channels
    room = unique("global.cross")
    service = a.token("svc", "service")
    stream = await Stream(to_b, service, [room]).ready()
    publisher = realtime_pb2_grpc.RealtimeServiceStub(to_a)
    responses = [
        await publisher.Publish(
            realtime_pb2.PublishRequest(room=room, event="n", payload=payload(n=n)),
            metadata=bearer(service),
        )
        for n in range(30)
    ]
    events = await stream.wait_for(30)
    stream.cancel()
    assert [e.offset for e in events] == list(range(1, 31))
    assert [e.id for e in events] == [r.id for r in responses]
    assert [e.payload["n"] for e in events] == list(range(30))
    assert {e.epoch for e in events} == {responses[0].epoch}


async def test_since_on_node_b_recovers_what_node_a_published(
    nodes: tuple[ServerProcess, ServerProcess],
    channels: tuple[grpc.aio.Channel, grpc.aio.Channel],
    unique: Callable[[str], str],
) -> None:
    a, _ = nodes
    to_a, to_b = channels
    room = unique("global.resume")
    service = a.token("svc", "service")
    publisher = realtime_pb2_grpc.RealtimeServiceStub(to_a)
    batch = realtime_pb2.PublishBatchRequest(
        events=[
            realtime_pb2.PublishRequest(room=room, event="n", payload=payload(n=n))
            for n in range(8)
        ]
    )
    results = (await publisher.PublishBatch(batch, metadata=bearer(service))).results
    epoch = results[0].published.epoch
    stream = await Stream(to_b, service, [room], since={room: (3, epoch)}).ready()
    [recovery] = stream.recoveries
    assert recovery.recovered
    assert (recovery.position.offset, recovery.position.epoch) == (8, epoch)
    await publisher.Publish(
        realtime_pb2.PublishRequest(room=room, event="n", payload=payload(n=8)),
        metadata=bearer(service),
    )
    events = await stream.wait_for(6)
    stream.cancel()
    assert [e.offset for e in events] == [4, 5, 6, 7, 8, 9]
    stale = await Stream(to_b, service, [room], since={room: (3, "0badc0de")}).ready()
    stale.cancel()
    assert not stale.recoveries[0].recovered
    assert "epoch changed" in stale.recoveries[0].reason


async def test_both_nodes_publishing_at_once_share_one_sequence(
    nodes: tuple[ServerProcess, ServerProcess],
    channels: tuple[grpc.aio.Channel, grpc.aio.Channel],
    unique: Callable[[str], str],
) -> None:
    a, _ = nodes
    to_a, to_b = channels
    room = unique("global.busy")
    service = a.token("svc", "service")
    on_a = await Stream(to_a, service, [room]).ready()
    on_b = await Stream(to_b, service, [room]).ready()

    async def publish(channel: grpc.aio.Channel) -> list[int]:
        stub = realtime_pb2_grpc.RealtimeServiceStub(channel)
        offsets = []
        for _ in range(25):
            response = await stub.Publish(
                realtime_pb2.PublishRequest(room=room, event="e"), metadata=bearer(service)
            )
            offsets.append(response.offset)
        return offsets

    from_a, from_b = await asyncio.gather(publish(to_a), publish(to_b))
    assert sorted(from_a + from_b) == list(range(1, 51))
    for stream in (on_a, on_b):
        events = await stream.wait_for(50)
        stream.cancel()
        assert [e.offset for e in events] == list(range(1, 51))


async def test_patterns_and_history_work_across_nodes(
    nodes: tuple[ServerProcess, ServerProcess],
    channels: tuple[grpc.aio.Channel, grpc.aio.Channel],
    unique: Callable[[str], str],
) -> None:
    a, _ = nodes
    to_a, to_b = channels
    tenant = unique("t")
    service = a.token("svc", "service")
    follower = await Stream(to_b, service, [f"tenant.{tenant}.*"]).ready()
    publisher = realtime_pb2_grpc.RealtimeServiceStub(to_a)
    for room in (f"tenant.{tenant}.users", f"tenant.{tenant}.notifications", "global.elsewhere"):
        await publisher.Publish(
            realtime_pb2.PublishRequest(room=room, event="e"), metadata=bearer(service)
        )
    events = await follower.wait_for(2)
    follower.cancel()
    assert sorted(e.room for e in events) == [
        f"tenant.{tenant}.notifications",
        f"tenant.{tenant}.users",
    ]
    admin = admin_pb2_grpc.AdminServiceStub(to_b)
    history = await admin.GetHistory(
        admin_pb2.GetHistoryRequest(room=f"tenant.{tenant}.users", limit=10),
        metadata=bearer(service),
    )
    assert [e.offset for e in history.events] == [1]
    assert history.recovered
