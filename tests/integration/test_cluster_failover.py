"""A node killed with SIGKILL: its presence expires, its clients resume on another node.

Two nodes of their own (A survives, K is killed) share the session's Redis
under a fresh prefix, with presence entries valid for 3 s without a refresh
(``support.cluster.FAST``) and heartbeats every 0.5 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from support.cluster import FAST, metrics, node_id, prefixed, start_nodes, stop_nodes
from support.grpc import bearer, payload
from support.redis import RedisProcess
from support.server import ServerProcess
from support.waiting import UNIT, eventually
from support.ws import WsClient, join, websockets

from roomcast.v1 import admin_pb2, admin_pb2_grpc, realtime_pb2, realtime_pb2_grpc

PRESENCE_TTL = float(FAST["ROOMCAST_PRESENCE_TTL"])


@pytest.fixture
def nodes(platform_redis: RedisProcess) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Node A (survives) and node K (killed by the test)."""
    a, k = start_nodes(2, prefixed(platform_redis.url))
    yield a, k
    code, _ = stop_nodes([a, k])  # K is dead (or, if the test failed early, stopped)
    assert code == 0, a.log


def offsets(client: WsClient, room: str) -> list[int]:
    return [int(f["offset"]) for f in client.of_type("event") if f["room"] == room]


async def test_a_killed_nodes_members_expire_and_its_clients_resume_elsewhere(
    nodes: tuple[ServerProcess, ServerProcess], unique: Callable[[str], str]
) -> None:
    a, k = nodes
    room = unique("chat.kill")
    service = bearer(a.token("backend", "service", tenant="acme"))
    async with websockets() as connect, a.channel() as channel:
        stub = realtime_pb2_grpc.RealtimeServiceStub(channel)
        admin = admin_pb2_grpc.AdminServiceStub(channel)

        async def publish(first: int, count: int) -> None:
            for n in range(first, first + count):
                await stub.Publish(
                    realtime_pb2.PublishRequest(room=room, event="n", payload=payload(n=n)),
                    metadata=service,
                )

        async def members() -> set[str]:
            reply = await admin.GetPresence(
                admin_pb2.GetPresenceRequest(room=room, tenant_id="acme"), metadata=service
            )
            return {m.connection_id for m in reply.members}

        alice = await connect(a, "alice")
        on_k = [await connect(k, "bob"), await connect(k, "carol")]
        for client in (alice, *on_k):
            await join(client, room)
        lost = {client.frames[0]["connection_id"] for client in on_k}
        epoch = (await join(alice, room))["epoch"]  # joined already: the room's position
        await publish(1, 50)
        for client in on_k:
            await client.wait(lambda c=client: len(offsets(c, room)) >= 50 or None)
        assert lost <= await members()

        k.process.kill()
        killed = time.monotonic()
        for client in on_k:
            assert await client.closed(5 * UNIT) == 1006  # no close frame: the node died
        await publish(51, 50)  # while K's clients are away
        assert lost <= await members()  # until their entries expire

        async def expired() -> bool:
            return not lost & await members()

        await eventually(expired, PRESENCE_TTL + 5 * UNIT)
        # Entries expire PRESENCE_TTL after the last refresh, which was before the kill.
        assert time.monotonic() - killed <= PRESENCE_TTL + 2 * UNIT

        # K's clients come back on A and pick up where they were.
        for old in on_k:
            seen = offsets(old, room)
            back = await connect(a, old.frames[0]["user_id"])
            joined = await join(back, room, since={"offset": seen[-1], "epoch": epoch})
            assert joined["recovered"] is True
            assert seen + [int(e["offset"]) for e in joined["missed"]] == list(range(1, 101))
        await publish(101, 10)
        await alice.wait(lambda: len(offsets(alice, room)) >= 110 or None)
        assert offsets(alice, room) == list(range(1, 111))

        # And K leaves the registry once its last heartbeat is stale.
        async def unregistered() -> bool:
            return node_id(k) not in (await metrics(a, cluster=True)).nodes

        await eventually(unregistered, 15 * UNIT)
        assert list((await metrics(a, cluster=True)).nodes) == [node_id(a)]
