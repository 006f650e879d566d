"""Reconnecting with ``since`` over the WebSocket bridge loses nothing.

A publisher sends 1,000 sequenced events while a client drops its connection
three times and comes back each time with the last position it saw: it must
end up with every event exactly once, in order.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from support.grpc import bearer, payload
from support.server import ServerProcess, serving
from support.waiting import UNIT
from support.ws import WsClient

from roomcast.v1 import realtime_pb2, realtime_pb2_grpc

EVENTS = 1_000
ROOM = "feed.orders"
POLICY = """
[[rooms]]
pattern = "feed.{id}"
scope = "tenant"
subscribe = ["tenant_member"]
publish = ["tenant_service"]
history_size = 2000
"""


async def publish_all(server: ServerProcess, done: asyncio.Event) -> None:
    token = bearer(server.token("orders", "service", tenant="acme"))
    async with server.channel() as channel:
        stub = realtime_pb2_grpc.RealtimeServiceStub(channel)
        for start in range(1, EVENTS + 1, 10):
            await stub.PublishBatch(
                realtime_pb2.PublishBatchRequest(
                    events=[
                        realtime_pb2.PublishRequest(
                            room=ROOM, event="order.created", payload=payload(n=n)
                        )
                        for n in range(start, start + 10)
                    ]
                ),
                metadata=token,
            )
            await asyncio.sleep(0.005)
    done.set()


async def test_reconnect_with_since_loses_nothing_across_1000_events(tmp_path: Path) -> None:
    policy = tmp_path / "rooms.toml"
    policy.write_text(POLICY)
    with serving("--policy", str(policy)) as server:
        token = server.token("alice", "user", tenant="acme")
        seen: list[dict[str, object]] = []
        position: dict[str, object] | None = None
        done = asyncio.Event()
        publisher: asyncio.Task[None] | None = None
        replayed = 0
        for attempt in range(4):
            client = await WsClient.connect(server, token)
            await client.next("connection.confirmed")
            joined = await client.request(
                {"type": "join_room", "room": ROOM, **({"since": position} if position else {})}
            )
            assert joined["type"] == "room_joined"
            assert joined["recovered"] is True, joined
            seen += joined["missed"]
            replayed += len(joined["missed"])
            if publisher is None:
                publisher = asyncio.create_task(publish_all(server, done))
            # Read live events for a while (to the end on the last attempt).
            wanted = EVENTS - len(seen) if attempt == 3 else min(150, EVENTS - len(seen))
            await client.wait(
                lambda wanted=wanted, client=client: (
                    True if len(client.of_type("event")) >= wanted else None
                ),
                30 * UNIT,
            )
            seen += client.of_type("event")
            last = seen[-1] if seen else None
            position = {"offset": last["offset"], "epoch": last["epoch"]} if last else None
            client.websocket.transport.abort()  # drop without a goodbye
            await asyncio.sleep(0.1 * UNIT)  # events keep coming meanwhile
        await asyncio.wait_for(done.wait(), 30 * UNIT)
        assert [event["payload"]["n"] for event in seen] == list(range(1, EVENTS + 1))
        assert [event["offset"] for event in seen] == list(range(1, EVENTS + 1))
        assert replayed > 0  # some came back through recovery, not live
