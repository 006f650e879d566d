"""Publish and Subscribe round trips against a real server."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from support.grpc import Stream, bearer, payload
from support.server import ServerProcess

from roomcast.v1 import realtime_pb2, realtime_pb2_grpc


async def test_publish_reaches_subscriber_with_sender_attached(
    server: ServerProcess,
    channel: grpc.aio.Channel,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
) -> None:
    room = unique("chat.r")
    alice = server.token("alice", "user", tenant="acme")
    service = server.token("billing", "service", tenant="acme")
    stream = await Stream(channel, alice, [room]).ready()
    response = await realtime.Publish(
        realtime_pb2.PublishRequest(
            room=room, event="user.notification", payload=payload(text="hi", sender="forged")
        ),
        metadata=bearer(service),
    )
    [event] = await stream.wait_for(1)
    stream.cancel()
    assert response.offset == 1
    assert event.room == room
    assert event.tenant_id == "acme"
    assert event.event == "user.notification"
    assert event.payload["text"] == "hi"
    assert event.offset == response.offset
    assert event.epoch == response.epoch
    assert event.id == response.id
    assert event.sender.user_id == "billing"
    assert event.sender.service == "billing"
    assert event.sender.tenant_id == "acme"
    assert event.time.seconds > 0


async def test_offsets_are_consecutive_and_ordered(
    server: ServerProcess,
    channel: grpc.aio.Channel,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
) -> None:
    room = unique("global.seq")
    service = server.token("svc", "service")
    stream = await Stream(channel, service, [room]).ready()
    for n in range(50):
        await realtime.Publish(
            realtime_pb2.PublishRequest(room=room, event="n", payload=payload(n=n)),
            metadata=bearer(service),
        )
    events = await stream.wait_for(50)
    stream.cancel()
    assert [e.offset for e in events] == list(range(1, 51))
    assert [int(e.payload["n"]) for e in events] == list(range(50))


async def test_patterns_follow_matching_rooms_only(
    server: ServerProcess,
    channel: grpc.aio.Channel,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
) -> None:
    service = server.token("svc", "service")
    tenant = unique("t")
    one = Stream(channel, service, [f"tenant.{tenant}.*"])
    deep = Stream(channel, service, [f"tenant.{tenant}.**"])
    await one.ready()
    await deep.ready()
    for room in (f"tenant.{tenant}.users", f"tenant.{tenant}.notifications", "global.other"):
        await realtime.Publish(
            realtime_pb2.PublishRequest(room=room, event="e"), metadata=bearer(service)
        )
    assert {e.room for e in await one.wait_for(2)} == {
        f"tenant.{tenant}.users",
        f"tenant.{tenant}.notifications",
    }
    assert len(await deep.wait_for(2)) == 2
    one.cancel()
    deep.cancel()
    assert all(e.room != "global.other" for e in one.events + deep.events)


async def test_since_replays_history_then_goes_live(
    server: ServerProcess,
    channel: grpc.aio.Channel,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
) -> None:
    room = unique("global.replay")
    service = server.token("svc", "service")
    first = None
    for n in range(10):
        first = first or await realtime.Publish(
            realtime_pb2.PublishRequest(room=room, event="n", payload=payload(n=n)),
            metadata=bearer(service),
        )
        if n:
            await realtime.Publish(
                realtime_pb2.PublishRequest(room=room, event="n", payload=payload(n=n)),
                metadata=bearer(service),
            )
    assert first is not None
    stream = await Stream(channel, service, [room], since={room: (4, first.epoch)}).ready()
    [recovery] = stream.recoveries
    assert recovery.recovered
    assert recovery.room == room
    assert recovery.position.offset == 10
    await realtime.Publish(
        realtime_pb2.PublishRequest(room=room, event="n", payload=payload(n=10)),
        metadata=bearer(service),
    )
    events = await stream.wait_for(7)
    stream.cancel()
    assert [e.offset for e in events] == list(range(5, 12))


@pytest.mark.parametrize(
    ("position", "reason"),
    [
        ((3, "not-the-epoch"), "epoch"),
        ((99, ""), "needs its epoch"),
        ((5000, None), "ahead"),
    ],
)
async def test_since_that_cannot_be_served_says_not_recovered(
    server: ServerProcess,
    channel: grpc.aio.Channel,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
    position: tuple[int, str | None],
    reason: str,
) -> None:
    room = unique("global.lost")
    service = server.token("svc", "service")
    published = await realtime.Publish(
        realtime_pb2.PublishRequest(room=room, event="e"), metadata=bearer(service)
    )
    offset, epoch = position
    since = {room: (offset, published.epoch if epoch is None else epoch)}
    stream = await Stream(channel, service, [room], since=since).ready()
    [recovery] = stream.recoveries
    stream.cancel()
    assert not recovery.recovered
    assert reason in recovery.reason
    assert recovery.position.offset == 1
    assert stream.events == []


async def test_since_older_than_history_is_not_recovered(
    server: ServerProcess,
    channel: grpc.aio.Channel,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
) -> None:
    room = unique("global.old")
    service = server.token("svc", "service")
    batch = realtime_pb2.PublishBatchRequest(
        events=[realtime_pb2.PublishRequest(room=room, event="e") for _ in range(150)]
    )
    results = (await realtime.PublishBatch(batch, metadata=bearer(service))).results
    epoch = results[0].published.epoch
    lost = await Stream(channel, service, [room], since={room: (10, epoch)}).ready()
    kept = await Stream(channel, service, [room], since={room: (50, epoch)}).ready()
    lost.cancel()
    kept.cancel()
    assert not lost.recoveries[0].recovered
    assert "no longer reaches" in lost.recoveries[0].reason
    assert kept.recoveries[0].recovered
    assert [e.offset for e in kept.events] == list(range(51, 151))


async def test_idempotency_key_publishes_once(
    server: ServerProcess,
    channel: grpc.aio.Channel,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
) -> None:
    room = unique("global.idem")
    service = server.token("svc", "service")
    stream = await Stream(channel, service, [room]).ready()
    request = realtime_pb2.PublishRequest(room=room, event="e", idempotency_key="order-42")
    first = await realtime.Publish(request, metadata=bearer(service))
    second = await realtime.Publish(request, metadata=bearer(service))
    other = await realtime.Publish(
        realtime_pb2.PublishRequest(room=room, event="e", idempotency_key="order-43"),
        metadata=bearer(service),
    )
    events = await stream.wait_for(2)
    stream.cancel()
    assert not first.duplicate
    assert second.duplicate
    assert (second.offset, second.epoch, second.id) == (first.offset, first.epoch, first.id)
    assert other.offset == first.offset + 1
    assert [e.offset for e in events] == [1, 2]


async def test_skip_history_delivers_live_only(
    server: ServerProcess,
    channel: grpc.aio.Channel,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
) -> None:
    room = unique("global.live")
    service = server.token("svc", "service")
    stream = await Stream(channel, service, [room]).ready()
    skipped = await realtime.Publish(
        realtime_pb2.PublishRequest(room=room, event="e", skip_history=True),
        metadata=bearer(service),
    )
    kept = await realtime.Publish(
        realtime_pb2.PublishRequest(room=room, event="e"), metadata=bearer(service)
    )
    events = await stream.wait_for(2)
    stream.cancel()
    assert skipped.offset == 0
    assert kept.offset == 1
    assert [e.offset for e in events] == [0, 1]
    replay = await Stream(channel, service, [room], since={room: (0, "")}).ready()
    replay.cancel()
    assert [e.offset for e in replay.events] == [1]


async def test_publish_batch_answers_each_item_in_order(
    server: ServerProcess,
    channel: grpc.aio.Channel,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
) -> None:
    room = unique("chat.batch")
    service = server.token("svc", "service", tenant="acme")
    stream = await Stream(channel, service, [room]).ready()
    batch = realtime_pb2.PublishBatchRequest(
        events=[
            realtime_pb2.PublishRequest(room=room, event="a"),
            realtime_pb2.PublishRequest(room="bad room", event="b"),
            realtime_pb2.PublishRequest(room="platform.admins", event="c"),
            realtime_pb2.PublishRequest(room=room, event="d"),
        ]
    )
    results = (await realtime.PublishBatch(batch, metadata=bearer(service))).results
    events = await stream.wait_for(2)
    stream.cancel()
    assert [r.WhichOneof("result") for r in results] == ["published", "error", "error", "published"]
    assert (results[0].published.offset, results[3].published.offset) == (1, 2)
    assert results[1].error.code == "INVALID_ARGUMENT"
    assert "room" in results[1].error.message
    assert results[2].error.code == "PERMISSION_DENIED"
    assert "platform.admins" in results[2].error.message
    assert [e.event for e in events] == ["a", "d"]


async def test_publish_batch_payloads_arrive_as_sent(
    server: ServerProcess,
    channel: grpc.aio.Channel,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
) -> None:
    # The server embeds a batch's payload encodings without decoding them
    # (rpc/payloads.py): every JSON kind must come out as it went in.
    room = unique("chat.batch")
    service = server.token("svc", "service", tenant="acme")
    stream = await Stream(channel, service, [room]).ready()
    sent = [
        {"text": "héllo ✓", "n": 1.5, "ok": True, "none": None},
        {"nested": {"list": [1, "two", {"three": [3.0]}]}, "empty": {}},
        {},
    ]
    batch = realtime_pb2.PublishBatchRequest(
        events=[
            realtime_pb2.PublishRequest(room=room, event="e", payload=payload(**p)) for p in sent
        ]
    )
    await realtime.PublishBatch(batch, metadata=bearer(service))
    events = await stream.wait_for(3)
    stream.cancel()
    assert [e.payload for e in events] == [payload(**p) for p in sent]


async def test_publish_batch_with_a_payload_that_is_no_struct_is_refused_whole(
    server: ServerProcess,
    channel: grpc.aio.Channel,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
) -> None:
    room = unique("chat.batch")
    service = server.token("svc", "service", tenant="acme")
    good = realtime_pb2.PublishRequest(room=room, event="good").SerializeToString()
    not_utf8_key = b"\x0a\x06\x0a\x02\xff\xfe\x12\x00"  # Struct keys are strings
    bad = realtime_pb2.PublishRequest(room=room, event="bad").SerializeToString()
    bad += b"\x1a" + bytes((len(not_utf8_key),)) + not_utf8_key
    body = b"".join(b"\x0a" + bytes((len(item),)) + item for item in (good, bad))
    raw = channel.unary_unary(
        "/roomcast.v1.RealtimeService/PublishBatch",
        request_serializer=lambda data: data,
        response_deserializer=realtime_pb2.PublishBatchResponse.FromString,
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await raw(body, metadata=bearer(service))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid PublishBatchRequest" in (refused.value.details() or "")
    # Nothing of the batch was published: the room's first event takes offset 1.
    after = await realtime.Publish(
        realtime_pb2.PublishRequest(room=room, event="after"), metadata=bearer(service)
    )
    assert after.offset == 1


async def test_many_events_arrive_coalesced_but_complete(
    server: ServerProcess,
    channel: grpc.aio.Channel,
    realtime: realtime_pb2_grpc.RealtimeServiceStub,
    unique: Callable[[str], str],
) -> None:
    room = unique("global.bulk")
    service = server.token("svc", "service")
    stream = await Stream(channel, service, [room]).ready()
    batch = realtime_pb2.PublishBatchRequest(
        events=[
            realtime_pb2.PublishRequest(room=room, event="e", payload=payload(n=n))
            for n in range(5000)
        ]
    )
    await realtime.PublishBatch(batch, metadata=bearer(service))
    events = await stream.wait_for(5000)
    stream.cancel()
    assert [e.offset for e in events] == list(range(1, 5001))
    assert stream.messages < 5000  # several events travelled per message


@pytest.mark.parametrize(
    ("method", "streaming"),
    [("Publish", False), ("JoinRoom", False), ("GetMetrics", False), ("Subscribe", True)],
)
async def test_undecodable_requests_are_invalid_arguments(
    server: ServerProcess, channel: grpc.aio.Channel, method: str, streaming: bool
) -> None:
    service = server.token("svc", "service", tenant="acme")
    path = f"/roomcast.v1.RealtimeService/{method}"
    garbage = b"\x0a\xff\xff\xff"  # a field whose length runs past the end

    async def call() -> None:
        if streaming:
            stream = channel.unary_stream(path, request_serializer=lambda data: data)
            async for _ in stream(garbage, metadata=bearer(service)):
                pass
        else:
            unary = channel.unary_unary(path, request_serializer=lambda data: data)
            await unary(garbage, metadata=bearer(service))

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"not a valid {method}Request" in (refused.value.details() or "")
