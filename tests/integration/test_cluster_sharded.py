"""Two nodes on a 3-master Redis Cluster, with rooms spread across the shards.

The module starts its own cluster (``redis-server --cluster-enabled yes``
three times and ``redis-cli --cluster create``); the nodes use
``redis+cluster://`` with every master as a seed. A room's keys and shard
channel live on the shard its name hashes to, so rooms are picked until
every master holds some.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from support.cluster import metrics, node_id, prefixed, start_nodes, stop_nodes
from support.grpc import bearer, payload
from support.redis import RedisClusterProcesses, start_cluster
from support.server import ServerProcess
from support.waiting import eventually
from support.ws import WsClient, join, websockets

from roomcast.brokers.redis.keys import KeySpace, slot_of
from roomcast.rooms import Room, RoomName, TenantId
from roomcast.v1 import admin_pb2, admin_pb2_grpc, realtime_pb2, realtime_pb2_grpc

EVENTS = 30


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterProcesses]:
    """A Redis Cluster of 3 masters of this module's own."""
    with start_cluster(3) as redis:
        yield redis


@pytest.fixture(scope="module")
def nodes(cluster: RedisClusterProcesses) -> Iterator[tuple[list[ServerProcess], str]]:
    """Nodes A and B on the cluster, and their key prefix."""
    url = prefixed(cluster.url)
    started = start_nodes(2, url)
    yield started, url.rsplit("prefix=", 1)[1]
    assert stop_nodes(started) == [0, 0], "\n".join(node.log for node in started)


def owners(cluster: RedisClusterProcesses) -> list[tuple[int, int, int]]:
    """(first slot, last slot, port) of every master's slot ranges."""
    ranges = []
    for line in cluster.nodes[0].command("CLUSTER", "NODES").splitlines():
        fields = line.split()
        port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
        for part in fields[8:]:
            first, _, last = part.partition("-")
            ranges.append((int(first), int(last or first), port))
    return ranges


def spread_rooms(
    cluster: RedisClusterProcesses, prefix: str, unique: Callable[[str], str]
) -> dict[int, str]:
    """One room name (of tenant acme) per master, by the master's port."""
    keys, ranges, rooms = KeySpace(prefix), owners(cluster), {}
    for n in range(200):
        name = unique(f"chat.s{n}x")
        slot = slot_of(keys.meta(Room.of(RoomName(name), TenantId("acme")).key).encode())
        port = next(port for first, last, port in ranges if first <= slot <= last)
        rooms.setdefault(port, name)
        if len(rooms) == len(cluster.nodes):
            return rooms
    raise AssertionError("no room name found for every shard")


def events(client: WsClient, room: str) -> list[dict[str, object]]:
    return [f for f in client.of_type("event") if f["room"] == room]


async def test_rooms_on_every_shard_reach_members_on_the_other_node_with_presence(
    cluster: RedisClusterProcesses,
    nodes: tuple[list[ServerProcess], str],
    unique: Callable[[str], str],
) -> None:
    (a, b), prefix = nodes
    rooms = spread_rooms(cluster, prefix, unique)
    service = bearer(a.token("backend", "service", tenant="acme"))
    async with websockets() as connect, a.channel() as channel:
        alice, bob = await connect(a, "alice"), await connect(b, "bob")
        for room in rooms.values():
            await join(alice, room)
            joined = await join(bob, room)
            assert [m["user_id"] for m in joined["presence"]] == ["alice", "bob"]
            assert (await alice.next("presence.join"))["room"] == room
        stub = realtime_pb2_grpc.RealtimeServiceStub(channel)
        for n in range(EVENTS):
            for room in rooms.values():
                await stub.Publish(
                    realtime_pb2.PublishRequest(room=room, event="n", payload=payload(n=n)),
                    metadata=service,
                )
        # What B's member gets from A, and what B's member sends, room by room.
        for room in rooms.values():
            await bob.wait(lambda r=room: len(events(bob, r)) >= EVENTS or None)
            assert [e["offset"] for e in events(bob, room)] == list(range(1, EVENTS + 1))
            sent = await bob.request(
                {"type": "send_message", "event": "m", "payload": {}, "rooms": [room]}
            )
            assert sent["offsets"] == {room: EVENTS + 1}
            await alice.wait(lambda r=room: len(events(alice, r)) > EVENTS or None)
            assert events(alice, room)[-1]["sender"]["user_id"] == "bob"
        # Each master holds the room that hashes to it.
        for port, room in rooms.items():
            found = next(node for node in cluster.nodes if node.port == port).command(
                "--scan", "--pattern", f"{prefix}:{{acme:{room}}}:*"
            )
            assert {line.rsplit(":", 1)[1] for line in found.split()} >= {"meta", "log", "presence"}

        # Presence from either node, and leaves announced across.
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        for room in rooms.values():
            reply = await admin.GetPresence(
                admin_pb2.GetPresenceRequest(room=room, tenant_id="acme"), metadata=service
            )
            assert [m.user_id for m in reply.members] == ["alice", "bob"]
        await bob.close()
        left = [await alice.next("presence.leave") for _ in rooms]
        assert sorted(f["room"] for f in left) == sorted(rooms.values())
        assert {f["user"]["user_id"] for f in left} == {"bob"}

        async def gone() -> bool:
            listed = await admin.ListRooms(
                admin_pb2.ListRoomsRequest(tenant_id="acme", prefix="chat."), metadata=service
            )
            return {r.name: r.members for r in listed.rooms if r.name in rooms.values()} == {
                room: 1 for room in rooms.values()
            }

        await eventually(gone)


async def test_registry_and_commands_work_on_a_cluster(
    nodes: tuple[list[ServerProcess], str],
) -> None:
    (a, b), _ = nodes

    async def registered() -> bool:
        return sorted((await metrics(b, cluster=True)).nodes) == sorted(map(node_id, (a, b)))

    await eventually(registered)
    async with websockets() as connect, b.channel() as channel:
        mallory = await connect(a, "mallory")
        await admin_pb2_grpc.AdminServiceStub(channel).DisconnectUser(
            admin_pb2.DisconnectUserRequest(user_id="mallory"),
            metadata=bearer(b.token("app", "service", tenant="acme")),
        )
        assert await mallory.closed() == 4001
