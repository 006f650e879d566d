"""AdminService over a node in the test's process (src/roomcast/rpc/admin.py).

The servicer is registered on real grpcio inside the process
(:mod:`support.grpc_local`) over a node on the memory broker
(:mod:`support.local_node`); the client is the generated stub.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from google.protobuf.json_format import MessageToDict
from support.grpc import bearer, payload
from support.grpc_local import grpc_channel
from support.inputs import item
from support.local_node import FakeConnection, local_node
from support.tokens import principal, token, user

from roomcast.node import Node
from roomcast.presence import ConnectionId
from roomcast.rooms import Room, RoomName, TenantId
from roomcast.rpc.admin import AdminServicer, add_admin_service
from roomcast.v1 import admin_pb2, admin_pb2_grpc, event_pb2

BACKEND = token("backend", "service")  # a service of acme
OPS = token("ops", "service", tenant=None)  # a platform service
ALICE = token("alice")


@asynccontextmanager
async def serving(
    **settings: Any,
) -> AsyncIterator[tuple[Node, admin_pb2_grpc.AdminServiceStub, Any]]:
    """A node, a stub of its AdminService, and the channel."""
    node = await local_node(**settings)
    servicer = AdminServicer(node)
    async with grpc_channel(lambda server: add_admin_service(servicer, server)) as channel:
        yield node, admin_pb2_grpc.AdminServiceStub(channel), channel


async def status_of(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value.code(), raised.value.details() or ""


async def publish(node: Node, count: int, room: str = "chat.x", size: int = 10) -> None:
    for n in range(count):
        await node.publish(
            principal("backend", "service"), item(room, data={"n": n, "pad": "x" * size})
        )


async def test_list_rooms_shows_a_tenants_service_its_rooms_only() -> None:
    async with serving() as (node, stub, _):
        await publish(node, 2)
        await node.publish(principal("b", "service", tenant="globex"), item("chat.y"))
        response = await stub.ListRooms(admin_pb2.ListRoomsRequest(), metadata=bearer(BACKEND))
        assert [
            (r.name, r.tenant_id, r.position.offset, r.history_size) for r in response.rooms
        ] == [("chat.x", "acme", 2, 2)]
        assert not response.truncated
        everyone = await stub.ListRooms(admin_pb2.ListRoomsRequest(), metadata=bearer(OPS))
        assert [(r.tenant_id, r.name) for r in everyone.rooms] == [
            ("acme", "chat.x"),
            ("globex", "chat.y"),
        ]
        code, _ = await status_of(
            stub.ListRooms(admin_pb2.ListRoomsRequest(), metadata=bearer(ALICE))
        )
        assert code is grpc.StatusCode.PERMISSION_DENIED


async def test_get_history_reads_pages_of_the_reply_budget() -> None:
    async with serving(max_reply_bytes=1024) as (node, stub, _):
        await publish(node, 10, size=200)
        request = admin_pb2.GetHistoryRequest(room="chat.x")
        first = await stub.GetHistory(request, metadata=bearer(BACKEND))
        assert 1 <= len(first.events) < 10
        assert first.more
        assert first.recovered
        assert first.position.offset == 10
        offsets = [e.offset for e in first.events]
        page = first
        while page.more:
            last = page.events[-1]
            request = admin_pb2.GetHistoryRequest(
                room="chat.x", since=event_pb2.StreamPosition(offset=last.offset, epoch=last.epoch)
            )
            page = await stub.GetHistory(request, metadata=bearer(BACKEND))
            offsets += [e.offset for e in page.events]
        assert offsets == list(range(1, 11))
        assert first.events[0].payload["n"] == 0


async def test_get_history_from_a_lost_position_says_so() -> None:
    async with serving() as (node, stub, _):
        await publish(node, 3)
        since = event_pb2.StreamPosition(offset=1, epoch="an0ther")
        request = admin_pb2.GetHistoryRequest(room="chat.x", since=since, limit=2)
        response = await stub.GetHistory(request, metadata=bearer(BACKEND))
        # A read returns what is held, flagged (docs/architecture.md, Decisions).
        assert not response.recovered
        assert [e.offset for e in response.events] == [1, 2]
        assert response.more


async def test_get_presence_pages_a_rooms_members_by_bytes() -> None:
    async with serving(max_reply_bytes=100) as (node, stub, _):
        for name in ("alice", "bob", "carol"):
            connection = FakeConnection(ConnectionId(f"c-{name}"))
            await node.sessions.connect(connection, user(name))
            await node.sessions.join(connection.id, "chat.x", None, 1 << 18)
        names: list[str] = []
        page_token = ""
        pages = 0
        while True:
            request = admin_pb2.GetPresenceRequest(room="chat.x", page_token=page_token)
            response = await stub.GetPresence(request, metadata=bearer(BACKEND))
            names += [m.user_id for m in response.members]
            pages += 1
            page_token = response.next_page_token
            if not page_token:
                break
        assert names == ["alice", "bob", "carol"]
        assert pages > 1
        request = admin_pb2.GetPresenceRequest(room="chat.x", page_token="nonsense")
        code, details = await status_of(stub.GetPresence(request, metadata=bearer(BACKEND)))
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith("page_token")


async def test_track_activity_publishes_to_the_tenants_admins_and_answers_where() -> None:
    async with serving() as (node, stub, _):
        admins = FakeConnection(ConnectionId("admins"))
        node.hub.add(Room.of(RoomName("tenant.acme.admins"), TenantId("acme")), admins)
        request = admin_pb2.TrackActivityRequest(
            user_id="alice", action="login", details=payload(device="phone")
        )
        response = await stub.TrackActivity(request, metadata=bearer(BACKEND))
        (publication,) = admins.delivered
        event = event_pb2.Event.FromString(publication.data)
        assert (response.id, response.offset) == (event.id, event.offset)
        assert MessageToDict(event.payload)["details"] == {"device": "phone"}
        bad = admin_pb2.TrackActivityRequest(user_id="alice", action="login", ip_address="nowhere")
        code, details = await status_of(stub.TrackActivity(bad, metadata=bearer(BACKEND)))
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith("ip_address")


async def test_disconnect_user_closes_the_users_connections() -> None:
    async with serving() as (node, stub, _):
        alice = FakeConnection(ConnectionId("a"))
        await node.sessions.connect(alice, user("alice"))
        request = admin_pb2.DisconnectUserRequest(user_id="alice", reason="locked")
        response = await stub.DisconnectUser(request, metadata=bearer(BACKEND))
        assert response.connections == 1
        assert alice.closed == (4001, "locked")
        code, _ = await status_of(stub.DisconnectUser(request, metadata=bearer(ALICE)))
        assert code is grpc.StatusCode.PERMISSION_DENIED


async def test_alerts_are_read_and_cleared() -> None:
    settings = {"alert_tenant_connections": 1, "alert_cpu_percent": 0, "alert_memory_percent": 0}
    async with serving(**settings) as (node, stub, _):
        for name in ("u1", "u2"):
            await node.sessions.connect(FakeConnection(ConnectionId(name)), user(name))
        await node.monitor.tick()
        alerts = await stub.GetAlerts(admin_pb2.GetAlertsRequest(), metadata=bearer(BACKEND))
        (firing,) = alerts.firing
        assert (firing.rule, firing.tenant_id, firing.state) == (
            "tenant_connections_high",
            "acme",
            admin_pb2.ALERT_STATE_FIRING,
        )
        assert firing.node_id == node.settings.node_id
        clear = admin_pb2.ClearAlertsRequest(include_firing=True)
        code, _ = await status_of(stub.ClearAlerts(clear, metadata=bearer(BACKEND)))
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert (await stub.ClearAlerts(clear, metadata=bearer(OPS))).cleared == 1


async def test_undecodable_requests_are_invalid_for_every_method() -> None:
    async with serving() as (_, _, channel):
        service = admin_pb2.DESCRIPTOR.services_by_name["AdminService"]
        for method in service.methods:
            raw = channel.unary_unary(f"/{service.full_name}/{method.name}")
            code, details = await status_of(raw(b"\x0a\xff", metadata=bearer(OPS)))
            assert code is grpc.StatusCode.INVALID_ARGUMENT, method.name
            assert details.startswith(f"request: not a valid {method.input_type.name}")
