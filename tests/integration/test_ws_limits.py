"""Limits and backpressure on the WebSocket bridge: rate limits, abuse,
oversize frames, room counts, a stalled reader, and shutdown.
"""

from __future__ import annotations

import asyncio
import time

from support.grpc import bearer, payload
from support.server import ServerProcess, serving, start_server
from support.waiting import UNIT
from support.ws import WsClient, confirmed

from roomcast.v1 import realtime_pb2, realtime_pb2_grpc


async def test_rate_limit_refuses_frames_but_keeps_the_connection(server: ServerProcess) -> None:
    client = await confirmed(server)
    for n in range(80):  # far past the burst of 50 at 20 a second
        await client.send({"type": "ping", "id": n})
    await client.wait(lambda: True if len(client.frames) >= 81 else None)
    errors = client.of_type("error")
    assert errors
    assert {e["code"] for e in errors} == {"rate_limited"}
    assert len(client.of_type("pong")) >= 50
    await asyncio.sleep(1.5)  # the bucket refills
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    await client.close()


async def test_sustained_abuse_closes_with_4101() -> None:
    with serving(env={"ROOMCAST_WS_ABUSE_LIMIT": "5", "ROOMCAST_WS_RATE_BURST": "100"}) as server:
        client = await confirmed(server)
        for _ in range(20):
            await client.send({"type": "no-such-frame"})
        assert await client.closed() == 4101
        # Five refusals are allowed; the sixth is answered, then the connection closed.
        assert len(client.of_type("error")) == 6


async def test_malformed_frames_get_bad_request(server: ServerProcess) -> None:
    client = await confirmed(server)
    for text in ("not json", "[1, 2]", '{"type": 3}', '{"type": "join_room", "room": 7}'):
        await client.websocket.send(text)
    await client.wait(lambda: True if len(client.of_type("error")) >= 4 else None)
    assert [e["code"] for e in client.of_type("error")] == ["bad_request"] * 4
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    await client.close()


async def test_oversize_frame_closes_with_1009(server: ServerProcess) -> None:
    client = await confirmed(server)
    big = {
        "type": "send_message",
        "event": "e.x",
        "rooms": ["chat.x"],
        "payload": {"t": "x" * 140_000},  # over the 128 KiB frame limit
    }
    await client.send(big)
    assert await client.closed() == 1009


async def test_payload_over_64_kib_encoded_is_refused_not_closed(server: ServerProcess) -> None:
    client = await confirmed(server)
    await client.request({"type": "join_room", "room": "chat.big"})
    reply = await client.request(
        {
            "type": "send_message",
            "event": "e.x",
            "rooms": ["chat.big"],
            "payload": {"t": "x" * 70_000},  # under the frame limit, over the payload's
        }
    )
    assert (reply["type"], reply["code"]) == ("error", "too_large")
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    await client.close()


async def test_rooms_per_connection_are_limited() -> None:
    with serving(env={"ROOMCAST_WS_MAX_ROOMS": "6"}) as server:  # 4 own rooms + 2
        client = await confirmed(server)
        for name in ("chat.a", "chat.b"):
            assert (await client.request({"type": "join_room", "room": name}))["type"] == (
                "room_joined"
            )
        refused = await client.request({"type": "join_room", "room": "chat.c"})
        assert (refused["type"], refused["code"]) == ("error", "rate_limited")
        await client.request({"type": "leave_room", "room": "chat.a"})
        assert (await client.request({"type": "join_room", "room": "chat.c"}))["type"] == (
            "room_joined"
        )
        await client.close()


async def test_a_stalled_reader_is_closed_with_4100_and_others_keep_up() -> None:
    with serving(env={"ROOMCAST_WS_SEND_BUFFER_BYTES": "262144"}) as server:
        # The stalled client reads nothing: with max_queue=1 its library stops
        # reading the socket once one message waits, so the server's buffer grows.
        stalled = await WsClient.connect(
            server, server.token("slow", "user", tenant="acme"), max_queue=1
        )
        stalled._task.cancel()  # and nothing reads its messages either
        healthy = await confirmed(server, "fast")
        await healthy.request({"type": "join_room", "room": "global.firehose"})
        await stalled.send({"type": "join_room", "room": "global.firehose"})
        await asyncio.sleep(0.2 * UNIT)
        service = bearer(server.token("backend", "service"))
        # 24 MB in all: more than the kernel's socket buffers can hide.
        events = 3000
        async with server.channel() as channel:
            stub = realtime_pb2_grpc.RealtimeServiceStub(channel)
            started = time.monotonic()
            for batch in range(events // 50):
                await stub.PublishBatch(
                    realtime_pb2.PublishBatchRequest(
                        events=[
                            realtime_pb2.PublishRequest(
                                room="global.firehose",
                                event="bulk",
                                payload=payload(n=batch * 50 + i, blob="x" * 8_000),
                            )
                            for i in range(50)
                        ]
                    ),
                    metadata=service,
                )
        await healthy.wait(
            lambda: True if len(healthy.of_type("event")) >= events else None, 10 * UNIT
        )
        elapsed = time.monotonic() - started
        assert [e["payload"]["n"] for e in healthy.of_type("event")] == list(range(events))
        assert elapsed < 10 * UNIT
        # The stalled client now reads what was sent before the cut, then the close.
        close_code = None
        try:
            async for _ in stalled.websocket:
                pass
        except Exception:
            pass
        close_code = stalled.websocket.close_code
        assert close_code == 4100
        await healthy.close()


async def test_shutdown_closes_every_connection_with_4200() -> None:
    server = start_server()
    clients = [await confirmed(server, f"u{n}") for n in range(3)]
    # In a thread: the clients must be free to answer the server's close frames.
    assert await asyncio.to_thread(server.stop) == 0
    for client in clients:
        assert await client.closed(10 * UNIT) == 4200
        assert "restarting" in client.close_reason
