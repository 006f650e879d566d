"""Every failure surfaces as a RoomcastError subclass, never a transport error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from support.clients import Connect
from support.ports import free_port
from support.server import ServerProcess

from roomcast_client import (
    ClientClosed,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    RoomcastError,
    Unauthenticated,
    Unavailable,
)
from roomcast_client.errors import ServerError, from_code


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A port that accepts TCP connections and never says anything."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    listener = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()


async def test_a_forged_token_is_unauthenticated(connect: Connect) -> None:
    client = connect("not-a-jwt")
    with pytest.raises(Unauthenticated) as raised:
        await client.publish("global.lobby", "e")
    assert raised.value.code == "UNAUTHENTICATED"


async def test_an_expired_token_is_unauthenticated(connect: Connect, server: ServerProcess) -> None:
    client = connect(server.token("backend", "service", ttl=-10))
    with pytest.raises(Unauthenticated, match="expired"):
        await client.publish("global.lobby", "e")


async def test_policy_refusal_is_permission_denied(connect: Connect, server: ServerProcess) -> None:
    user = connect(server.token("alice", "user", tenant="acme"))
    with pytest.raises(PermissionDenied, match=r"may not publish to room 'global\.lobby'"):
        await user.publish("global.lobby", "e")
    with pytest.raises(PermissionDenied, match="metrics are for platform-level callers"):
        await user.metrics()


async def test_a_malformed_room_is_invalid_argument(connect: Connect, service: str) -> None:
    client = connect(service)
    with pytest.raises(InvalidArgument, match="not a known kind of room"):
        await client.publish("foo.bar", "e")


async def test_an_oversized_payload_is_resource_exhausted(connect: Connect, service: str) -> None:
    client = connect(service)
    with pytest.raises(ResourceExhausted, match="payload"):
        await client.publish("global.lobby", "big", {"blob": "x" * 70_000})


async def test_an_unknown_connection_is_not_found(connect: Connect, service: str) -> None:
    client = connect(service)
    with pytest.raises(NotFound, match="is not connected"):
        await client.join_room("global.lobby", connection_id="c-404")


async def test_no_server_is_unavailable(connect: Connect, service: str) -> None:
    client = connect(service, target=f"127.0.0.1:{free_port()}")  # nothing listens on it
    with pytest.raises(Unavailable, match="cannot reach"):
        await client.publish("global.lobby", "e")
    with pytest.raises(Unavailable):
        async with client.subscribe("global.*"):
            pass


async def test_a_silent_server_is_deadline_exceeded(
    connect: Connect, service: str, silent_port: int
) -> None:
    client = connect(service, target=f"127.0.0.1:{silent_port}", timeout=0.3)
    with pytest.raises(DeadlineExceeded):
        await client.publish("global.lobby", "e")


async def test_tls_to_a_plaintext_server_is_unavailable(connect: Connect, service: str) -> None:
    client = connect(service, tls=True, timeout=5)
    with pytest.raises(Unavailable, match="cannot reach") as raised:
        await client.publish("global.lobby", "e")
    assert raised.value.__cause__ is not None  # the TLS error, chained for the log


async def test_a_closed_client_refuses_calls(connect: Connect, service: str) -> None:
    client = connect(service)
    await client.close()
    with pytest.raises(ClientClosed):
        await client.publish("global.lobby", "e")
    with pytest.raises(ClientClosed):
        client.subscribe("global.*")


async def test_payloads_that_are_not_json_are_refused_before_sending(
    connect: Connect, service: str
) -> None:
    client = connect(service)
    with pytest.raises(TypeError, match="must be JSON, not bytes"):
        await client.publish("global.lobby", "e", {"raw": b"\x00"})
    with pytest.raises(ValueError, match="finite"):
        await client.publish("global.lobby", "e", {"ratio": float("nan")})
    with pytest.raises(TypeError, match="keys must be strings"):
        await client.publish("global.lobby", "e", {1: "one"})  # type: ignore[dict-item]


def test_status_names_map_to_the_tree() -> None:
    assert isinstance(from_code("PERMISSION_DENIED", "m"), PermissionDenied)
    assert isinstance(from_code("UNAVAILABLE", "m"), Unavailable)
    unknown = from_code("DATA_LOSS", "m")
    assert type(unknown) is ServerError
    assert unknown.code == "DATA_LOSS"
    for error in (unknown, from_code("INVALID_ARGUMENT", "m")):
        assert isinstance(error, RoomcastError)
        assert error.message == "m"
