"""Connecting to the WebSocket bridge: every way to give a token, every way to
get it wrong, token expiry and refresh, connection limits, and the HTTP routes
on the same port.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request

import jwt
import pytest
from support.server import ServerProcess, serving
from support.tokens import SECRET
from support.waiting import UNIT
from support.ws import WsClient

from roomcast.auth import mint_token

ALICE_ROOMS = [
    "user.alice.private",
    "user.alice.notifications",
    "tenant.acme.users",
    "tenant.acme.notifications",
]


@pytest.mark.parametrize("via", ["frame", "query", "cookie"])
async def test_every_token_path_is_confirmed(server: ServerProcess, via: str) -> None:
    client = await WsClient.connect(server, server.token("alice", "user", tenant="acme"), via=via)
    confirmed = await client.next("connection.confirmed")
    assert confirmed["user_id"] == "alice"
    assert confirmed["tenant_id"] == "acme"
    assert confirmed["roles"] == ["user"]
    assert confirmed["rooms"] == ALICE_ROOMS
    assert confirmed["heartbeat"] == 25.0
    assert confirmed["connection_id"]
    await client.close()


@pytest.mark.parametrize(
    ("sub", "roles", "tenant", "rooms"),
    [
        ("carol", ["tenant_admin"], "acme", [*ALICE_ROOMS[2:], "tenant.acme.admins"]),
        ("root", ["super_admin"], None, ["platform.admins"]),
        ("backend", ["service"], None, []),
    ],
    ids=["tenant-admin", "super-admin", "platform-service"],
)
async def test_own_rooms_follow_the_roles(
    server: ServerProcess, sub: str, roles: list[str], tenant: str | None, rooms: list[str]
) -> None:
    client = await WsClient.connect(server, server.token(sub, *roles, tenant=tenant))
    confirmed = await client.next("connection.confirmed")
    expected = ([f"user.{sub}.private", f"user.{sub}.notifications"] if tenant else []) + rooms
    assert confirmed["rooms"] == expected
    await client.close()


async def test_own_rooms_receive_events_at_once(server: ServerProcess) -> None:
    from support.grpc import bearer, payload

    from roomcast.v1 import realtime_pb2, realtime_pb2_grpc

    client = await WsClient.connect(server, server.token("dora", "user", tenant="acme"))
    await client.next("connection.confirmed")
    async with server.channel() as channel:
        stub = realtime_pb2_grpc.RealtimeServiceStub(channel)
        await stub.Publish(
            realtime_pb2.PublishRequest(
                room="user.dora.notifications", event="user.notification", payload=payload(x=1)
            ),
            metadata=bearer(server.token("billing", "service", tenant="acme")),
        )
    event = await client.next("event")
    assert (event["room"], event["event"], event["payload"]) == (
        "user.dora.notifications",
        "user.notification",
        {"x": 1},
    )
    await client.close()


def forged() -> str:
    return mint_token("another-secret-0123456789abcdef01234567", subject="x", roles=["user"])


@pytest.mark.parametrize(
    ("token", "code", "reason"),
    [
        ("not.a.jwt", 4001, "malformed"),
        ("forged", 4001, "signature"),
        ("expired", 4002, "expired"),
        ("none-alg", 4001, "algorithm"),
        ("no-tenant", 4001, "tenant_id"),
    ],
)
@pytest.mark.parametrize("via", ["frame", "query"])
async def test_bad_tokens_close_with_4001_or_4002(
    server: ServerProcess, token: str, code: int, reason: str, via: str
) -> None:
    tokens = {
        "not.a.jwt": "not.a.jwt",
        "forged": forged(),
        "expired": mint_token(SECRET, subject="x", roles=["user"], tenant="acme", ttl=-10),
        "none-alg": jwt.encode(
            {"sub": "x", "roles": ["user"], "tenant_id": "acme", "exp": time.time() + 60},
            "",
            algorithm="none",
        ),
        "no-tenant": mint_token(SECRET, subject="x", roles=["user"]),
    }
    client = await WsClient.connect(server, tokens[token], via=via)
    assert await client.closed() == code
    assert reason in client.close_reason
    assert tokens[token] not in client.close_reason
    assert not client.of_type("connection.confirmed")


async def test_first_frame_must_be_auth(server: ServerProcess) -> None:
    client = await WsClient.connect(server, None)
    await client.send({"type": "join_room", "room": "chat.lobby"})
    assert await client.closed() == 4001
    assert "first frame must be auth" in client.close_reason


async def test_garbage_first_frame_closes_with_4001(server: ServerProcess) -> None:
    client = await WsClient.connect(server, None)
    await client.websocket.send("{nope")
    assert await client.closed() == 4001


async def test_no_auth_frame_in_time_closes_with_4001() -> None:
    with serving(env={"ROOMCAST_WS_AUTH_TIMEOUT": "0.5"}) as server:
        client = await WsClient.connect(server, None)
        assert await client.closed(5 * UNIT) == 4001
        assert "no auth frame within 0.5 seconds" in client.close_reason


async def test_expiring_token_is_announced_and_can_be_refreshed() -> None:
    with serving(env={"ROOMCAST_TOKEN_EXPIRY_NOTICE": "2"}) as server:
        short = server.token("alice", "user", tenant="acme", ttl=3)
        client = await WsClient.connect(server, short)
        await client.next("connection.confirmed")
        expiring = await client.next("token.expiring", 5 * UNIT)
        assert (
            expiring["expires_at"] == jwt.decode(short, options={"verify_signature": False})["exp"]
        )
        fresh = server.token("alice", "user", tenant="acme", ttl=600)
        reply = await client.request({"type": "auth", "token": fresh})
        assert reply["type"] == "token.refreshed"
        await asyncio.sleep(3 * UNIT)  # past the old token's exp
        assert (await client.request({"type": "ping"}))["type"] == "pong"
        await client.close()


async def test_token_not_refreshed_closes_with_4002() -> None:
    with serving(env={"ROOMCAST_TOKEN_EXPIRY_NOTICE": "1"}) as server:
        client = await WsClient.connect(server, server.token("alice", "user", tenant="acme", ttl=2))
        await client.next("connection.confirmed")
        await client.next("token.expiring", 5 * UNIT)
        assert await client.closed(6 * UNIT) == 4002


async def test_refresh_must_keep_the_identity_and_verify(server: ServerProcess) -> None:
    client = await WsClient.connect(server, server.token("alice", "user", tenant="acme"))
    await client.next("connection.confirmed")
    other = await client.request(
        {"type": "auth", "token": server.token("mallory", "user", tenant="acme")}
    )
    assert (other["type"], other["code"]) == ("error", "forbidden")
    bad = await client.request({"type": "auth", "token": forged()})
    assert (bad["type"], bad["code"]) == ("error", "unauthorized")
    assert (await client.request({"type": "ping"}))["type"] == "pong"  # still open
    await client.close()


async def test_connections_per_user_are_limited() -> None:
    with serving(env={"ROOMCAST_MAX_CONNECTIONS_PER_USER": "2"}) as server:
        token = server.token("alice", "user", tenant="acme")
        first, second = [await WsClient.connect(server, token) for _ in range(2)]
        for client in (first, second):
            await client.next("connection.confirmed")
        third = await WsClient.connect(server, token)
        assert await third.closed() == 4003
        assert "alice" in third.close_reason
        other_user = await WsClient.connect(server, server.token("bob", "user", tenant="acme"))
        await other_user.next("connection.confirmed")
        await first.close()
        await asyncio.sleep(0.2 * UNIT)
        again = await WsClient.connect(server, token)
        await again.next("connection.confirmed")  # a freed slot is usable again
        for client in (second, other_user, again):
            await client.close()


async def test_connections_per_tenant_are_limited() -> None:
    with serving(env={"ROOMCAST_MAX_CONNECTIONS_PER_TENANT": "1"}) as server:
        alice = await WsClient.connect(server, server.token("alice", "user", tenant="acme"))
        await alice.next("connection.confirmed")
        bob = await WsClient.connect(server, server.token("bob", "user", tenant="acme"))
        assert await bob.closed() == 4003
        globex = await WsClient.connect(server, server.token("gus", "user", tenant="globex"))
        await globex.next("connection.confirmed")
        for client in (alice, globex):
            await client.close()


def http_get(server: ServerProcess, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{server.http}{path}", timeout=5 * UNIT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        ("/healthz", 200, "ok\n"),
        ("/readyz", 200, "ready\n"),
        ("/nowhere", 404, "not found\n"),
    ],
)
def test_http_routes_beside_the_websocket(
    server: ServerProcess, path: str, status: int, body: str
) -> None:
    assert http_get(server, path) == (status, body)


def test_plain_get_on_the_websocket_path_asks_for_an_upgrade(server: ServerProcess) -> None:
    status, _ = http_get(server, "/ws")
    assert status == 426
