"""Tenant isolation over the WebSocket bridge: another tenant's rooms are
refused, and rooms of the same name in two tenants never meet.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import pytest
from support.grpc import bearer, payload
from support.server import ServerProcess
from support.waiting import UNIT
from support.ws import Open, websockets

from roomcast.v1 import realtime_pb2, realtime_pb2_grpc

# (sub, roles, tenant) of the callers in the matrix.
CALLERS = {
    "user": ("alice", ("user",), "acme"),
    "tenant_admin": ("carol", ("tenant_admin",), "acme"),
    "super_admin": ("root", ("super_admin",), None),
}
# room → callers who may join it; everyone else is refused.
MATRIX: list[tuple[str, set[str]]] = [
    ("tenant.acme.users", {"user", "tenant_admin"}),
    ("tenant.acme.admins", {"tenant_admin", "super_admin"}),
    ("tenant.globex.users", set()),
    ("tenant.globex.notifications", set()),
    ("tenant.globex.admins", {"super_admin"}),
    ("user.alice.private", {"user"}),
    ("user.bob.private", set()),
    ("platform.admins", {"super_admin"}),
    ("platform.security", {"super_admin"}),
    ("platform.health", {"super_admin"}),
    ("performance.dashboard", {"super_admin"}),
    ("global.lobby", {"user", "tenant_admin", "super_admin"}),
    ("chat.lobby", {"user", "tenant_admin"}),
]


@pytest.fixture
async def connect(server: ServerProcess) -> AsyncIterator[Open]:
    """``await connect(sub, *roles, tenant=…)``: confirmed clients, closed after the test."""
    async with websockets() as open_client:
        yield functools.partial(open_client, server)


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize(("room", "allowed"), MATRIX, ids=[m[0] for m in MATRIX])
async def test_join_matrix(connect: Open, caller: str, room: str, allowed: set[str]) -> None:
    sub, roles, tenant = CALLERS[caller]
    client = await connect(sub, *roles, tenant=tenant)
    reply = await client.request({"type": "join_room", "room": room})
    if caller in allowed:
        assert reply["type"] == "room_joined", reply
        assert reply["room"] == room
    else:
        # A platform caller must name the tenant of rooms whose name does not.
        names_no_tenant = room.split(".")[0] in ("user", "chat")
        code = "bad_request" if tenant is None and names_no_tenant else "forbidden"
        assert (reply["type"], reply["code"]) == ("error", code), reply
    history = await client.request({"type": "history", "room": room})
    presence = await client.request({"type": "presence", "room": room})
    for answer in (history, presence):
        assert (answer["type"] == "error") is (caller not in allowed), answer


async def test_same_room_name_in_two_tenants_never_meets(
    server: ServerProcess, connect: Open
) -> None:
    alice = await connect("alice", "user", tenant="acme")
    gus = await connect("gus", "user", tenant="globex")
    for client in (alice, gus):
        await client.request({"type": "join_room", "room": "chat.lobby"})
    await gus.request({"type": "send_message", "event": "chat.message", "rooms": ["chat.lobby"]})
    async with server.channel() as channel:
        stub = realtime_pb2_grpc.RealtimeServiceStub(channel)
        await stub.Publish(
            realtime_pb2.PublishRequest(room="chat.lobby", event="from.globex", payload=payload()),
            metadata=bearer(server.token("backend", "service", tenant="globex")),
        )
    assert (
        len(
            await gus.wait(lambda: gus.of_type("event") if len(gus.of_type("event")) >= 2 else None)
        )
        == 2
    )
    await alice.request({"type": "ping"})
    assert alice.of_type("event") == []
    assert alice.of_type("presence.join") == []  # gus is in another room
    history = await alice.request({"type": "history", "room": "chat.lobby"})
    assert history["events"] == []
    members = await alice.request({"type": "presence", "room": "chat.lobby"})
    assert [m["user_id"] for m in members["members"]] == ["alice"]


async def test_global_rooms_are_shared_across_tenants(connect: Open) -> None:
    alice = await connect("alice", "user", tenant="acme")
    gus = await connect("gus", "user", tenant="globex")
    for client in (alice, gus):
        await client.request({"type": "join_room", "room": "global.town-square"})
    await gus.request({"type": "send_message", "event": "hello", "rooms": ["global.town-square"]})
    event = await alice.next("event", 5 * UNIT)
    assert event["sender"]["tenant_id"] == "globex"


async def test_another_tenants_user_cannot_be_named(connect: Open) -> None:
    alice = await connect("alice", "user", tenant="acme")
    # user.gus.private of acme is not gus of globex's room, and not alice's either.
    refused = await alice.request({"type": "join_room", "room": "user.gus.private"})
    assert refused["code"] == "forbidden"
    sent = await alice.request(
        {"type": "send_message", "event": "x", "rooms": ["tenant.globex.users"]}
    )
    assert sent["code"] in ("forbidden", "not_member")
