"""Fixtures for the client packages: a real `roomcast serve` and clients connected to it,
over gRPC (``connect``) and over the WebSocket bridge, as browsers (``browser``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from harness import UNIT, ServerProcess, WsClient, start_server

from roomcast_client import Event, Gap, RoomcastClient, Subscription, TokenSource

# The fixtures' types; test modules repeat these lines (conftest is not importable).
Connect = Callable[..., RoomcastClient]
Take = Callable[..., Awaitable[list[Event | Gap]]]
Browser = Callable[..., Awaitable[WsClient]]


async def _take(subscription: Subscription, count: int, within: float = 5) -> list[Event | Gap]:
    items: list[Event | Gap] = []
    async with asyncio.timeout(within * UNIT):
        async for item in subscription:
            items.append(item)
            if len(items) == count:
                break
    return items


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    """One server shared by the client tests that need no special settings."""
    process = start_server()
    yield process
    assert process.stop() == 0, process.log


@pytest.fixture
async def connect(server: ServerProcess) -> AsyncIterator[Connect]:
    """Make clients of the shared server (or of ``target=``); all are closed afterwards."""
    clients: list[RoomcastClient] = []

    def make(token: TokenSource, *, target: str | None = None, **options: Any) -> RoomcastClient:
        client = RoomcastClient(target or server.target, token, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def browser(server: ServerProcess) -> AsyncIterator[Browser]:
    """Open real WebSocket clients of the bridge; all are closed afterwards.

    ``await browser(sub, *roles, tenant=None, on=None)`` returns a client
    whose ``connection.confirmed`` has arrived, so it is in its own rooms
    (``user.{sub}.*``, ``tenant.{t}.*``) already. ``on=`` another server.
    """
    clients: list[WsClient] = []

    async def open_browser(
        sub: str, *roles: str, tenant: str | None = None, on: ServerProcess | None = None
    ) -> WsClient:
        target = on or server
        client = await WsClient.connect(target, target.token(sub, *roles, tenant=tenant))
        clients.append(client)
        await client.next("connection.confirmed")
        return client

    yield open_browser
    for client in clients:
        await client.close()


@pytest.fixture
def service(server: ServerProcess) -> str:
    """A platform service's token."""
    return server.token("backend", "service")


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Names unique to one test, so tests sharing a server never meet."""
    suffix = uuid.uuid4().hex[:10]
    return lambda prefix: f"{prefix}{suffix}"


@pytest.fixture
def take() -> Take:
    """``await take(subscription, n, within=5)``: the next n items, within ``within`` UNITs."""
    return _take
