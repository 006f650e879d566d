"""Operating the platform from any node: DisconnectUser and GetMetrics across nodes.

Runs on the session's ``three_nodes`` (A, B, C sharing one Redis); each
test works in a tenant of its own, so counts of other tests never mix in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from support.cluster import metrics, node_id
from support.grpc import bearer, payload
from support.server import ServerProcess
from support.waiting import UNIT, eventually
from support.ws import join, websockets

from roomcast.v1 import admin_pb2, admin_pb2_grpc, realtime_pb2, realtime_pb2_grpc


async def test_disconnect_user_on_a_closes_the_users_connections_on_every_node(
    three_nodes: list[ServerProcess], unique: Callable[[str], str]
) -> None:
    a, b, c = three_nodes
    tenant = unique("t")
    async with websockets() as connect, a.channel() as channel:
        mallory = [await connect(node, "mallory", tenant=tenant) for node in (b, c, c)]
        bob = await connect(b, "bob", tenant=tenant)
        same_name = await connect(b, "mallory", tenant=unique("other"))
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        closed = await admin.DisconnectUser(
            admin_pb2.DisconnectUserRequest(user_id="mallory", reason="account locked"),
            metadata=bearer(a.token("app", "service", tenant=tenant)),
        )
        assert closed.connections == 0  # none on A; B and C close theirs
        for client in mallory:
            assert await client.closed(5 * UNIT) == 4001
            assert client.close_reason == "account locked"
        # Another user, and a namesake of another tenant, stay connected.
        for client in (bob, same_name):
            assert (await client.request({"type": "ping"}))["type"] == "pong"


async def test_disconnect_user_names_one_connection_on_another_node(
    three_nodes: list[ServerProcess], unique: Callable[[str], str]
) -> None:
    a, b, _ = three_nodes
    tenant = unique("t")
    async with websockets() as connect, a.channel() as channel:
        first, second = [await connect(b, "eve", tenant=tenant) for _ in range(2)]
        await channel.channel_ready()
        await admin_pb2_grpc.AdminServiceStub(channel).DisconnectUser(
            admin_pb2.DisconnectUserRequest(
                user_id="eve",
                tenant_id=tenant,
                connection_id=second.frames[0]["connection_id"],
            ),
            metadata=bearer(a.token("ops", "service")),  # a platform service names the tenant
        )
        assert await second.closed(5 * UNIT) == 4001
        assert second.close_reason == "disconnected by the server"
        assert (await first.request({"type": "ping"}))["type"] == "pong"


async def test_commands_between_nodes_never_hold_up_events(
    three_nodes: list[ServerProcess], unique: Callable[[str], str]
) -> None:
    """A command arriving amid a burst of events: the events all arrive, the command runs."""
    a, b, _ = three_nodes
    tenant, room = unique("t"), unique("chat.burst")
    service = bearer(a.token("app", "service", tenant=tenant))
    async with websockets() as connect, a.channel() as channel:
        watcher = await connect(b, "watcher", tenant=tenant)
        await join(watcher, room)
        targets = [await connect(b, f"u{n}", tenant=tenant) for n in range(5)]
        stub = realtime_pb2_grpc.RealtimeServiceStub(channel)
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        batch = realtime_pb2.PublishBatchRequest(
            events=[
                realtime_pb2.PublishRequest(room=room, event="n", payload=payload(n=n))
                for n in range(200)
            ]
        )

        async def disconnect_all() -> None:
            for n in range(5):
                await admin.DisconnectUser(
                    admin_pb2.DisconnectUserRequest(user_id=f"u{n}"), metadata=service
                )

        await asyncio.gather(
            stub.PublishBatch(batch, metadata=service),
            stub.PublishBatch(batch, metadata=service),
            disconnect_all(),
        )
        for target in targets:
            assert await target.closed(5 * UNIT) == 4001
        await watcher.wait(lambda: len(watcher.of_type("event")) >= 400 or None)
        assert [e["offset"] for e in watcher.of_type("event")] == list(range(1, 401))


async def test_list_rooms_never_shows_the_nodes_own_room(
    three_nodes: list[ServerProcess], unique: Callable[[str], str]
) -> None:
    a, b, _ = three_nodes
    async with a.channel() as channel:
        await admin_pb2_grpc.AdminServiceStub(channel).DisconnectUser(
            admin_pb2.DisconnectUserRequest(user_id="nobody", tenant_id=unique("t")),
            metadata=bearer(a.token("ops", "service")),
        )
    async with b.channel() as channel:
        listed = await admin_pb2_grpc.AdminServiceStub(channel).ListRooms(
            admin_pb2.ListRoomsRequest(), metadata=bearer(b.token("ops", "service"))
        )
    assert not [r.name for r in listed.rooms if r.name.startswith("roomcast")]


async def test_cluster_metrics_list_every_node_and_add_up_their_connections(
    three_nodes: list[ServerProcess], unique: Callable[[str], str]
) -> None:
    a, b, c = three_nodes
    ids = sorted(node_id(node) for node in three_nodes)
    tenant = unique("t")
    async with websockets() as connect:
        for node, count in ((a, 1), (b, 2), (c, 3)):
            for n in range(count):
                await connect(node, f"u{n}", tenant=tenant)

        async def aggregated() -> bool:
            cluster = await metrics(a, cluster=True)
            return (
                sorted(cluster.nodes) == ids
                and cluster.connections_by_tenant.get(tenant) == 6
                and cluster.node_id == "cluster"
            )

        # Other nodes' figures are their last heartbeats (every 0.5 s here).
        await eventually(aggregated)
        # Without cluster=true a node answers for itself.
        for node, count in ((a, 1), (b, 2), (c, 3)):
            own = await metrics(node)
            assert list(own.nodes) == [own.node_id] == [node_id(node)]
            assert own.connections_by_tenant[tenant] == count

        async def adds_up() -> bool:
            cluster = await metrics(b, cluster=True)
            own = [await metrics(node) for node in three_nodes]
            return sorted(cluster.nodes) == ids and cluster.connections == sum(
                o.connections for o in own
            )

        await eventually(adds_up)
