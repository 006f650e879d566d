"""Redis restarts mid-stream under two nodes with WebSocket and gRPC clients.

The module has a `redis-server` of its own, killed and started again on
the same port (it keeps nothing, as a Redis without persistence after a
crash). While it is down the nodes stay up and keep their connections, but
report it: ``/readyz`` 503, the gRPC health service NOT_SERVING, the
``broker_unreachable`` alert. A publish needs Redis (it gives the event its
offset), so it fails with UNAVAILABLE, or an ``unavailable`` error frame,
and the client retries. When Redis is back, health and cross-node delivery
return by themselves, and clients that resume with ``since`` are told the
room's history was lost (``recovered: false``) or get what it holds now.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import pytest
from google.protobuf.json_format import MessageToDict
from grpc_health.v1 import health_pb2
from support.cluster import health, metrics, node_id, prefixed, readyz, start_nodes, stop_nodes
from support.grpc import Stream, bearer, payload
from support.redis import RedisProcess, start_redis
from support.server import ServerProcess
from support.waiting import UNIT, eventually
from support.ws import WsClient, join, websockets

from roomcast.v1 import admin_pb2, admin_pb2_grpc, realtime_pb2, realtime_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisProcess]:
    """This module's own Redis: the tests kill it."""
    with start_redis() as server:
        yield server


@pytest.fixture(scope="module")
def nodes(redis: RedisProcess) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Nodes A and B on that Redis; broker calls give up after 1 s."""
    a, b = start_nodes(2, prefixed(redis.url), env={"ROOMCAST_PUBLISH_TIMEOUT": "1"})
    yield a, b
    assert stop_nodes([a, b]) == [0, 0], a.log + b.log


def events(client: WsClient, room: str) -> list[dict[str, object]]:
    return [f for f in client.of_type("event") if f["room"] == room]


async def test_nodes_survive_a_redis_restart_and_report_it(
    redis: RedisProcess,
    nodes: tuple[ServerProcess, ServerProcess],
    unique: Callable[[str], str],
) -> None:
    a, b = nodes
    room = unique("chat.outage")
    service = bearer(a.token("backend", "service", tenant="acme"))
    ops = bearer(a.token("ops", "service"))
    async with websockets() as connect, a.channel() as to_a, b.channel() as to_b:
        publisher = realtime_pb2_grpc.RealtimeServiceStub(to_a)

        async def publish(n: int) -> realtime_pb2.PublishResponse:
            return await publisher.Publish(
                realtime_pb2.PublishRequest(room=room, event="n", payload=payload(n=n)),
                metadata=service,
            )

        alice, bob = await connect(a, "alice"), await connect(b, "bob")
        carol = await connect(a, "carol")  # leaves while Redis is down
        for client in (alice, bob, carol):
            await join(client, room)
        aside = unique("chat.aside")
        await join(carol, aside)
        await join(bob, aside)
        stream = await Stream(to_b, b.token("ops", "service"), [room], tenant_id="acme").ready()
        before = [await publish(n) for n in range(20)]
        old_epoch = before[0].epoch
        await bob.wait(lambda: len(events(bob, room)) >= 20 or None)
        await stream.wait_for(20)
        assert await health(a) == await health(b) == SERVING
        assert readyz(a) == readyz(b) == 200

        redis.kill()

        # Both nodes tell load balancers and operators.
        for node in (a, b):
            await eventually(lambda n=node: readyz(n) == 503)
            await eventually(lambda n=node: _not_serving(n), 5 * UNIT)
        admin_a = admin_pb2_grpc.AdminServiceStub(to_a)

        async def alert_firing() -> bool:
            alerts = await admin_a.GetAlerts(admin_pb2.GetAlertsRequest(), metadata=ops)
            return "broker_unreachable" in {alert.rule for alert in alerts.firing}

        await eventually(alert_firing, 5 * UNIT)

        # Connections and streams stay open; publishing waits for Redis.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await publish(20)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        sent = await bob.request(
            {"type": "send_message", "event": "m", "payload": {}, "rooms": [room]}
        )
        assert (sent["type"], sent["code"]) == ("error", "unavailable")
        for client in (alice, bob):
            assert (await client.request({"type": "ping"}))["type"] == "pong"
        # A new connection cannot join its rooms (their positions are in
        # Redis): it is closed as a server error, to retry with backoff.
        late = await WsClient.connect(b, b.token("late", "user", tenant="acme"))
        assert await late.closed() == 1011
        assert late.close_reason == "the broker is unavailable; retry later"
        # Presence falls back to the node's own members.
        local = await alice.request({"type": "presence", "room": room})
        assert {m["user_id"] for m in local["members"]} == {"alice", "carol"}
        carol_id = carol.frames[0]["connection_id"]
        await carol.close()
        assert stream.error is None

        redis.start()  # same port, empty

        for node in (a, b):
            await eventually(lambda n=node: _serving(n), 15 * UNIT)
            await eventually(lambda n=node: readyz(n) == 200, 5 * UNIT)
        # Cross-node delivery resumes: the room starts a new epoch.
        first = await publish(100)
        assert first.offset == 1
        assert first.epoch != old_epoch
        await bob.wait(lambda: events(bob, room)[-1]["epoch"] == first.epoch or None)
        await stream.until(lambda: stream.events[-1].epoch == first.epoch)
        assert stream.error is None
        after = [await publish(n) for n in range(101, 105)]
        await bob.wait(lambda: len(events(bob, room)) >= 25 or None)
        assert [e["offset"] for e in events(bob, room)] == [*range(1, 21), *range(1, 6)]

        # A client resuming from before the restart is told it lost track;
        # one resuming from after it gets what history holds.
        dave = await connect(b, "dave")
        stale = await join(dave, room, since={"offset": 20, "epoch": old_epoch})
        assert stale["recovered"] is False
        assert "epoch" in stale["reason"]
        assert stale["missed"] == []
        eve = await connect(a, "eve")
        fresh = await join(eve, room, since={"offset": 2, "epoch": first.epoch})
        assert fresh["recovered"] is True
        assert [e["id"] for e in fresh["missed"]] == [r.id for r in after[1:]]

        # The member who left during the outage is gone everywhere, and the
        # nodes' shared presence is whole again (written again after the restart).
        async def present() -> list[str]:
            frame = await bob.request({"type": "presence", "room": room})
            return sorted(m["connection_id"] for m in frame["members"])

        ids = sorted(c.frames[0]["connection_id"] for c in (alice, bob, dave, eve))

        async def whole() -> bool:
            return await present() == ids

        await eventually(whole, 10 * UNIT)
        assert carol_id not in await present()
        aside_members = await bob.request({"type": "presence", "room": aside})
        assert [m["user_id"] for m in aside_members["members"]] == ["bob"]

        async def counted() -> bool:
            own = await metrics(a, channel=to_a)
            return own.connections_by_tenant["acme"] == 2  # alice and eve

        await eventually(counted, 5 * UNIT)

        # The alert that fired during the outage reached platform.health
        # (published once Redis was back), then resolved.
        history = admin_pb2_grpc.AdminServiceStub(to_b)

        async def alert_states() -> list[str]:
            page = await history.GetHistory(
                admin_pb2.GetHistoryRequest(room="platform.health", limit=1000), metadata=ops
            )
            return [
                MessageToDict(e.payload)["state"]
                for e in page.events
                if e.event == "platform.alert"
                and e.payload["rule"] == "broker_unreachable"
                and e.payload["node_id"] == node_id(a)
            ]

        async def reported() -> bool:
            return await alert_states() == ["firing", "resolved"]

        await eventually(reported, 10 * UNIT)
        stream.cancel()


async def _serving(node: ServerProcess) -> bool:
    admin = "roomcast.v1.AdminService"
    return await health(node) == SERVING and await health(node, admin) == SERVING


async def _not_serving(node: ServerProcess) -> bool:
    return (
        await health(node) == NOT_SERVING
        and await health(node, "roomcast.v1.RealtimeService") == NOT_SERVING
    )
