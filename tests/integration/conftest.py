"""Fixtures that start a real roomcast server and connect real grpcio clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from support.cluster import prefixed, start_nodes, stop_nodes
from support.fixtures import server, unique
from support.redis import RedisProcess, start_redis
from support.server import ServerProcess

from roomcast.v1 import admin_pb2_grpc, realtime_pb2_grpc

__all__ = ["server", "unique"]  # defined once in support.fixtures; this folder's instances


@pytest.fixture(scope="session")
async def channel(server: ServerProcess) -> AsyncIterator[grpc.aio.Channel]:
    """A client channel to the shared server."""
    async with server.channel() as open_channel:
        yield open_channel


@pytest.fixture(scope="session")
def realtime(channel: grpc.aio.Channel) -> realtime_pb2_grpc.RealtimeServiceStub:
    """RealtimeService stub."""
    return realtime_pb2_grpc.RealtimeServiceStub(channel)


@pytest.fixture(scope="session")
def admin(channel: grpc.aio.Channel) -> admin_pb2_grpc.AdminServiceStub:
    """AdminService stub."""
    return admin_pb2_grpc.AdminServiceStub(channel)


@pytest.fixture(scope="session")
def platform_redis() -> Iterator[RedisProcess]:
    """The `redis-server` of the shared multi-node platform (never the machine's own)."""
    with start_redis() as redis:
        yield redis


@pytest.fixture(scope="session")
def three_nodes(platform_redis: RedisProcess) -> Iterator[list[ServerProcess]]:
    """Nodes A, B and C: one platform through Redis, shared by the cluster tests.

    Tests keep apart with room names and tenants of their own.
    """
    nodes = start_nodes(3, prefixed(platform_redis.url))
    yield nodes
    codes = stop_nodes(nodes)
    assert codes == [0, 0, 0], "\n".join(node.log for node in nodes)
