"""Events across nodes: gRPC and WebSocket publishers on one node, members on the others.

Nodes A, B and C are separate `roomcast serve --broker redis://…` processes
sharing one `redis-server` (the session's ``three_nodes``); clients are real
WebSocket and grpcio clients, each connected to one node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from support.grpc import Stream, bearer, payload
from support.server import ServerProcess
from support.waiting import UNIT
from support.ws import WsClient, join, websockets

from roomcast.v1 import realtime_pb2, realtime_pb2_grpc

EVENTS = 300


def received(client: WsClient, room: str) -> list[dict[str, object]]:
    """The events of ``room`` a client got so far, in arrival order."""
    return [f for f in client.of_type("event") if f["room"] == room]


@pytest.mark.parametrize("nodes", [2, 3])
async def test_a_grpc_publish_on_a_reaches_websocket_members_on_the_other_nodes_in_order(
    three_nodes: list[ServerProcess], unique: Callable[[str], str], nodes: int
) -> None:
    a, *others = three_nodes[:nodes]
    room = unique("chat.seq")
    service = bearer(a.token("backend", "service", tenant="acme"))
    async with websockets() as connect, a.channel() as channel:
        members = [await connect(node, f"m{i}") for i, node in enumerate(others)]
        members.append(await connect(a, "local"))
        for member in members:
            await join(member, room)
        stub = realtime_pb2_grpc.RealtimeServiceStub(channel)
        # One by one, then the rest in one batch: both publishing paths.
        single = EVENTS // 2
        responses = [
            await stub.Publish(
                realtime_pb2.PublishRequest(room=room, event="n", payload=payload(n=n)),
                metadata=service,
            )
            for n in range(single)
        ]
        batch = await stub.PublishBatch(
            realtime_pb2.PublishBatchRequest(
                events=[
                    realtime_pb2.PublishRequest(room=room, event="n", payload=payload(n=n))
                    for n in range(single, EVENTS)
                ]
            ),
            metadata=service,
        )
        ids = [r.id for r in responses] + [r.published.id for r in batch.results]
        for member in members:
            await member.wait(lambda m=member: len(received(m, room)) >= EVENTS or None, 10 * UNIT)
            events = received(member, room)
            assert [e["offset"] for e in events] == list(range(1, EVENTS + 1))
            assert [e["payload"]["n"] for e in events] == list(range(EVENTS))  # type: ignore[index]
            assert [e["id"] for e in events] == ids
            assert {e["epoch"] for e in events} == {responses[0].epoch}


async def test_a_websocket_message_on_b_reaches_a_member_on_c_and_a_stream_on_a(
    three_nodes: list[ServerProcess], unique: Callable[[str], str]
) -> None:
    a, b, c = three_nodes
    room = unique("chat.talk")
    async with websockets() as connect, a.channel() as channel:
        stream = await Stream(
            channel, a.token("backend", "service"), [room], tenant_id="acme"
        ).ready()
        alice, bob = await connect(b, "alice"), await connect(c, "bob")
        await join(alice, room)
        await join(bob, room)
        offsets = []
        for n in range(20):
            message = {"type": "send_message", "event": "chat.message", "payload": {"n": n}}
            sent = await alice.request({**message, "rooms": [room]})
            assert sent["type"] == "message_sent", sent
            offsets.append(sent["offsets"][room])
        assert offsets == list(range(1, 21))
        await bob.wait(lambda: len(received(bob, room)) >= 20 or None)
        await stream.wait_for(20)
        stream.cancel()
        alice_id = (await alice.next("event"))["sender"]["connection_id"]
        for event in received(bob, room):
            assert event["sender"] == {
                "user_id": "alice",
                "tenant_id": "acme",
                "connection_id": alice_id,
            }
        assert [e["payload"]["n"] for e in received(bob, room)] == list(range(20))  # type: ignore[index]
        assert [(e.offset, e.sender.user_id, e.sender.connection_id) for e in stream.events] == [
            (n, "alice", alice_id) for n in range(1, 21)
        ]


async def test_members_sending_on_two_nodes_at_once_share_one_sequence(
    three_nodes: list[ServerProcess], unique: Callable[[str], str]
) -> None:
    _, b, c = three_nodes
    room = unique("chat.busy")
    async with websockets() as connect:
        alice, bob = await connect(b, "alice"), await connect(c, "bob")
        await join(alice, room)
        await join(bob, room)

        async def send(client: WsClient, who: str) -> list[int]:
            offsets = []
            for n in range(20):  # within the per-connection burst of 50 frames
                sent = await client.request(
                    {"type": "send_message", "event": "m", "payload": {who: n}, "rooms": [room]}
                )
                offsets.append(sent["offsets"][room])
            return offsets

        from_alice, from_bob = await asyncio.gather(send(alice, "alice"), send(bob, "bob"))
        assert sorted(from_alice + from_bob) == list(range(1, 41))
        for client in (alice, bob):
            await client.wait(lambda c=client: len(received(c, room)) >= 40 or None)
            assert [e["offset"] for e in received(client, room)] == list(range(1, 41))
        # Both saw the same events in the same order, whoever sent them.
        assert [e["id"] for e in received(alice, room)] == [e["id"] for e in received(bob, room)]
