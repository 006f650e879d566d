"""Live operations against a real server: metrics streamed into rooms, alerts
that fire and resolve, /metrics, GetMetrics, GetAlerts/ClearAlerts,
TrackActivity and DisconnectUser.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.grpc import Stream, bearer, payload
from support.server import ServerProcess, serving
from support.waiting import UNIT
from support.ws import WsClient

from roomcast.v1 import admin_pb2, admin_pb2_grpc, realtime_pb2, realtime_pb2_grpc

INTERVAL = 0.5


@pytest.fixture(scope="module")
def watched() -> Iterator[ServerProcess]:
    """A server that samples twice a second and alerts at 3 connections (2 per tenant)."""
    with serving(
        env={
            "ROOMCAST_METRICS_INTERVAL": str(INTERVAL),
            "ROOMCAST_ALERT_MAX_CONNECTIONS": "3",
            "ROOMCAST_ALERT_TENANT_CONNECTIONS": "2",
            "ROOMCAST_METRICS_TOKEN": "scrape-secret",
        }
    ) as server:
        yield server


async def confirmed(server: ServerProcess, sub: str, *roles: str, tenant: str | None) -> WsClient:
    client = await WsClient.connect(server, server.token(sub, *roles, tenant=tenant))
    await client.next("connection.confirmed")
    return client


async def test_a_super_admin_receives_snapshots_within_one_interval(watched: ServerProcess) -> None:
    root = await confirmed(watched, "root", "super_admin", tenant=None)
    assert (await root.request({"type": "join_room", "room": "performance.dashboard"}))[
        "type"
    ] == "room_joined"
    snapshot = await root.next("event", 3 * INTERVAL * UNIT + 1)
    assert (snapshot["room"], snapshot["event"]) == ("performance.dashboard", "metrics.snapshot")
    data = snapshot["payload"]
    assert data["connections"] >= 1
    assert {"cpu_percent", "memory_percent", "load_average", "process_rss_bytes"} <= set(
        data["system"]
    )
    assert {"p50", "p95", "p99", "count"} <= set(data["latency_ms"])
    assert {"calls_per_second", "error_rate", "subscribe_streams"} <= set(data["grpc"])
    assert snapshot["sender"] == {"user_id": "roomcast", "service": "roomcast"}
    await root.close()


async def test_tenant_users_cannot_watch_the_platform(watched: ServerProcess) -> None:
    alice = await confirmed(watched, "alice", "user", tenant="acme")
    for room in ("performance.dashboard", "platform.health", "platform.security"):
        refused = await alice.request({"type": "join_room", "room": room})
        assert (refused["type"], refused["code"]) == ("error", "forbidden")
    await alice.close()


async def test_connection_alerts_fire_once_and_resolve_once(watched: ServerProcess) -> None:
    async with watched.channel() as channel:
        ops = bearer(watched.token("ops", "service"))
        health = await Stream(channel, watched.token("ops", "service"), ["platform.health"]).ready()
        admins = await Stream(
            channel, watched.token("ops", "service"), ["tenant.acme.admins"], tenant_id="acme"
        ).ready()
        crowd = [await confirmed(watched, f"u{n}", "user", tenant="acme") for n in range(4)]

        def alerts(stream: Stream) -> list[dict[str, object]]:
            from google.protobuf.json_format import MessageToDict

            return [MessageToDict(e.payload) for e in stream.events if e.event == "platform.alert"]

        both = {"connections_high", "tenant_connections_high"}
        await health.until(lambda: {a["rule"] for a in alerts(health)} >= both, 10 * UNIT)
        await admins.until(lambda: alerts(admins), 10 * UNIT)
        tenant_alert = alerts(admins)[0]
        assert tenant_alert["rule"] == "tenant_connections_high"
        assert tenant_alert["tenant_id"] == "acme"
        assert tenant_alert["state"] == "firing"
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        listed = await admin.GetAlerts(admin_pb2.GetAlertsRequest(), metadata=ops)
        assert {a.rule for a in listed.firing} >= {"connections_high", "tenant_connections_high"}
        assert all(a.state == admin_pb2.ALERT_STATE_FIRING for a in listed.firing)
        # A tenant's admin sees its own tenant's alerts only.
        acme_admin = bearer(watched.token("carol", "tenant_admin", tenant="acme"))
        own = await admin.GetAlerts(admin_pb2.GetAlertsRequest(), metadata=acme_admin)
        assert {a.tenant_id for a in own.firing} == {"acme"}
        for client in crowd:
            await client.close()
        await health.until(
            lambda: sum(1 for a in alerts(health) if a["state"] == "resolved") >= 2, 15 * UNIT
        )
        await asyncio.sleep(3 * INTERVAL)
        states = [
            (a["rule"], a["state"]) for a in alerts(health) if a["rule"] == "connections_high"
        ]
        assert states == [("connections_high", "firing"), ("connections_high", "resolved")]
        cleared = await admin.ClearAlerts(admin_pb2.ClearAlertsRequest(), metadata=ops)
        assert cleared.cleared >= 2
        after = await admin.GetAlerts(admin_pb2.GetAlertsRequest(), metadata=ops)
        assert list(after.recent) == list(after.firing)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await admin.ClearAlerts(admin_pb2.ClearAlertsRequest(), metadata=acme_admin)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        health.cancel()
        admins.cancel()


def scrape(server: ServerProcess, token: str | None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://{server.http}/metrics")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5 * UNIT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_metrics_endpoint_needs_its_token_and_parses(watched: ServerProcess) -> None:
    assert scrape(watched, None)[0] == 401
    assert scrape(watched, "wrong")[0] == 401
    status, text = scrape(watched, "scrape-secret")
    assert status == 200
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {
        "roomcast_connections",
        "roomcast_messages_in",
        "roomcast_publish_deliver_seconds",
        "roomcast_grpc_calls",
        "roomcast_auth_failures",
        "process_cpu_seconds",
    } <= names


async def test_get_metrics_reports_calls_tenants_and_rooms(watched: ServerProcess) -> None:
    alice = await confirmed(watched, "alice", "user", tenant="acme")
    await alice.request({"type": "join_room", "room": "chat.metrics"})
    async with watched.channel() as channel:
        realtime = realtime_pb2_grpc.RealtimeServiceStub(channel)
        ops = bearer(watched.token("ops", "service"))
        # Publish through two whole sampling intervals.
        for _ in range(int(3 * INTERVAL / 0.05)):
            await realtime.Publish(
                realtime_pb2.PublishRequest(room="global.m", event="e.x", payload=payload()),
                metadata=ops,
            )
            await asyncio.sleep(0.05)
        metrics = await realtime.GetMetrics(realtime_pb2.GetMetricsRequest(), metadata=ops)
    assert metrics.connections_by_tenant["acme"] >= 1
    assert metrics.grpc_calls_per_second["Publish"] > 5
    assert metrics.messages_in_per_second > 5
    assert metrics.broker_publish.count > 5
    assert ("chat.metrics", "acme") in {(r.name, r.tenant_id) for r in metrics.largest_rooms}
    assert list(metrics.nodes) == [metrics.node_id]
    await alice.close()


async def test_track_activity_reaches_the_tenants_admins(watched: ServerProcess) -> None:
    carol = await confirmed(watched, "carol", "tenant_admin", tenant="acme")
    async with watched.channel() as channel:
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        root_stream = await Stream(
            channel, watched.token("root", "super_admin"), ["tenant.*.admins"]
        ).ready()
        request = admin_pb2.TrackActivityRequest(
            user_id="alice",
            action="document.open",
            session_id="s-1",
            ip_address="203.0.113.9",
            user_agent="Firefox",
        )
        request.details.update({"document": "d-42"})
        tracked = await admin.TrackActivity(
            request, metadata=bearer(watched.token("app", "service", tenant="acme"))
        )
        assert tracked.id
        event = await carol.next("event", 5 * UNIT)
        assert (event["room"], event["event"]) == ("tenant.acme.admins", "user.activity")
        assert event["payload"] == {
            "user_id": "alice",
            "tenant_id": "acme",
            "action": "document.open",
            "session_id": "s-1",
            "ip_address": "203.0.113.9",
            "user_agent": "Firefox",
            "details": {"document": "d-42"},
        }
        (seen,) = await root_stream.wait_for(1)
        assert seen.tenant_id == "acme"
        for bad, field in (
            (admin_pb2.TrackActivityRequest(user_id="alice", action="x y"), "action"),
            (
                admin_pb2.TrackActivityRequest(user_id="alice", action="a", ip_address="nope"),
                "ip_address",
            ),
            (admin_pb2.TrackActivityRequest(action="login"), "user_id"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await admin.TrackActivity(
                    bad, metadata=bearer(watched.token("app", "service", tenant="acme"))
                )
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert refused.value.details().startswith(field)
        with pytest.raises(grpc.aio.AioRpcError) as other_tenant:
            await admin.TrackActivity(
                admin_pb2.TrackActivityRequest(user_id="gus", tenant_id="globex", action="login"),
                metadata=bearer(watched.token("app", "service", tenant="acme")),
            )
        assert other_tenant.value.code() == grpc.StatusCode.PERMISSION_DENIED
        root_stream.cancel()
    await carol.close()


async def test_disconnect_user_closes_with_4001(watched: ServerProcess) -> None:
    first = await confirmed(watched, "mallory", "user", tenant="acme")
    second = await confirmed(watched, "mallory", "user", tenant="acme")
    async with watched.channel() as channel:
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        gus_service = bearer(watched.token("app", "service", tenant="globex"))
        other = await admin.DisconnectUser(
            admin_pb2.DisconnectUserRequest(user_id="mallory"), metadata=gus_service
        )
        assert other.connections == 0  # another tenant's mallory
        closed = await admin.DisconnectUser(
            admin_pb2.DisconnectUserRequest(user_id="mallory", reason="account locked"),
            metadata=bearer(watched.token("app", "service", tenant="acme")),
        )
        assert closed.connections == 2
    for client in (first, second):
        assert await client.closed() == 4001
        assert client.close_reason == "account locked"
