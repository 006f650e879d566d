"""A subscriber that stops reading is cut off; everyone else keeps receiving."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import psutil
import pytest
from support.grpc import Stream, bearer, payload
from support.server import ServerProcess, serving
from support.waiting import UNIT

from roomcast.v1 import realtime_pb2, realtime_pb2_grpc

BUFFER = 256 * 1024


@pytest.fixture(scope="module")
async def small_buffer_server() -> AsyncIterator[ServerProcess]:
    with serving(env={"ROOMCAST_SUBSCRIBER_BUFFER_BYTES": str(BUFFER)}) as process:
        yield process


async def test_stalled_reader_is_ended_and_memory_stays_bounded(
    small_buffer_server: ServerProcess,
) -> None:
    server = small_buffer_server
    service = server.token("svc", "service")
    room = "global.firehose"
    async with server.channel() as fast_channel, server.channel() as slow_channel:
        realtime = realtime_pb2_grpc.RealtimeServiceStub(fast_channel)
        healthy = await Stream(fast_channel, service, [room]).ready()
        # The stalled subscriber: a call that is never read from.
        stalled = realtime_pb2_grpc.RealtimeServiceStub(slow_channel).Subscribe(
            realtime_pb2.SubscribeRequest(rooms=[room]), metadata=bearer(service)
        )
        first = await stalled.read()
        assert first.HasField("subscribed")
        rss_before = psutil.Process(server.process.pid).memory_info().rss
        blob = "x" * 1000
        total = 0
        for _ in range(200):  # 200 x 50 events of ~1 KB: 40x the buffer
            batch = realtime_pb2.PublishBatchRequest(
                events=[
                    realtime_pb2.PublishRequest(
                        room=room, event="e", payload=payload(blob=blob), skip_history=True
                    )
                    for _ in range(50)
                ]
            )
            await realtime.PublishBatch(batch, metadata=bearer(service))
            total += 50
        events = await healthy.wait_for(total, within=30 * UNIT)
        rss_after = psutil.Process(server.process.pid).memory_info().rss
        healthy.cancel()
        received = 0

        async def drain() -> None:
            nonlocal received
            while (message := await stalled.read()) is not grpc.aio.EOF:
                received += len(message.events)

        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await drain()
    assert healthy.error is None, healthy.error
    assert len(events) == total
    assert ended.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "fell behind" in (ended.value.details() or "")
    assert received < total
    # ~10 MB went through; a server buffering for the stalled reader would grow by that much.
    assert rss_after - rss_before < 8 * 1024 * 1024
