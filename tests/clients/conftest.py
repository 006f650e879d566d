"""Fixtures for the client packages: a real `roomcast serve` and clients connected to it,
over gRPC (``connect``) and over the WebSocket bridge, as browsers (``browser``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from support.clients import Browser, Connect, Take
from support.fixtures import server, unique
from support.server import ServerProcess
from support.waiting import UNIT
from support.ws import WsClient, websockets

from roomcast_client import Event, Gap, RoomcastClient, Subscription, TokenSource

__all__ = ["server", "unique"]  # defined once in support.fixtures; this folder's instances


async def _take(subscription: Subscription, count: int, within: float = 5) -> list[Event | Gap]:
    items: list[Event | Gap] = []
    async with asyncio.timeout(within * UNIT):
        async for item in subscription:
            items.append(item)
            if len(items) == count:
                break
    return items


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
    async with websockets() as open_client:

        async def open_browser(
            sub: str, *roles: str, tenant: str | None = None, on: ServerProcess | None = None
        ) -> WsClient:
            return await open_client(on or server, sub, *roles, tenant=tenant)

        yield open_browser


@pytest.fixture
def service(server: ServerProcess) -> str:
    """A platform service's token."""
    return server.token("backend", "service")


@pytest.fixture
def take() -> Take:
    """``await take(subscription, n, within=5)``: the next n items, within ``within`` UNITs."""
    return _take
