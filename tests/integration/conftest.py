"""Fixtures that start a real roomcast server and connect real grpcio clients."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import grpc
import pytest
from cluster_nodes import prefixed, start_nodes, stop_nodes
from harness import ServerProcess, start_server
from redis_harness import RedisProcess, start_redis

from roomcast.v1 import admin_pb2_grpc, realtime_pb2_grpc


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    """One server shared by the tests that need no special settings."""
    process = start_server()
    yield process
    assert process.stop() == 0, process.log


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


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Room names unique to one test, so tests sharing a server never meet."""
    suffix = uuid.uuid4().hex[:10]
    return lambda prefix: f"{prefix}{suffix}"


@pytest.fixture(scope="session")
def platform_redis() -> Iterator[RedisProcess]:
    """The `redis-server` of the shared multi-node platform (never the machine's own)."""
    redis = start_redis()
    yield redis
    redis.stop()


@pytest.fixture(scope="session")
def three_nodes(platform_redis: RedisProcess) -> Iterator[list[ServerProcess]]:
    """Nodes A, B and C: one platform through Redis, shared by the cluster tests.

    Tests keep apart with room names and tenants of their own.
    """
    nodes = start_nodes(3, prefixed(platform_redis.url))
    yield nodes
    codes = stop_nodes(nodes)
    assert codes == [0, 0, 0], "\n".join(node.log for node in nodes)
