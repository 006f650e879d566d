"""What nodes share through Redis besides events: presence and the node registry.

Run over a `redis-server` and a 3-master Redis Cluster of the session;
each test's brokers use a key prefix of their own (``redis_nodes``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
import pytest
from support.brokers import Node
from support.redis import RedisClusterProcesses, RedisProcess
from support.redis_brokers import redis_nodes
from support.waiting import UNIT

from roomcast.brokers.redis import RedisBroker
from roomcast.presence import ConnectionId, Member
from roomcast.rooms import TenantId

TTL = 0.5 * UNIT


@pytest.fixture(params=["server", "cluster"])
async def make(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[..., Awaitable[RedisBroker]]]:
    """Start Redis brokers ("nodes") sharing one prefix on a server or a cluster."""
    fixture = "redis_server" if request.param == "server" else "redis_cluster"
    redis: RedisProcess | RedisClusterProcesses = request.getfixturevalue(fixture)
    async with redis_nodes(redis.url) as start:

        async def broker(**options: object) -> RedisBroker:
            node: Node = await start(presence_ttl=TTL, node_ttl=TTL, **options)
            assert isinstance(node.broker, RedisBroker)
            return node.broker

        yield broker


def member(connection: str, user: str, joined_at: float = 1.0) -> Member:
    return Member(ConnectionId(connection), user, TenantId("acme"), joined_at)


async def test_members_of_every_node_are_shared(
    make: Callable[..., Awaitable[RedisBroker]],
) -> None:
    a, b = await make(node_id="a"), await make(node_id="b")
    await a.presence_join("acme:chat.x", member("c1", "alice", 2.0))
    await b.presence_join("acme:chat.x", member("c2", "bob", 1.0))
    await b.presence_join("acme:user.bob.private", member("c2", "bob", 1.0))
    assert await a.presence_members("acme:chat.x") == [
        member("c2", "bob"),
        member("c1", "alice", 2.0),
    ]
    counts = await b.presence_counts(["acme:chat.x", "acme:user.bob.private", "acme:chat.none"])
    assert counts == {"acme:chat.x": 2, "acme:user.bob.private": 1, "acme:chat.none": 0}
    assert set(await a.presence_rooms()) == {"acme:chat.x", "acme:user.bob.private"}
    await b.presence_leave("acme:chat.x", "c2")
    assert await a.presence_members("acme:chat.x") == [member("c1", "alice", 2.0)]


async def test_entries_not_refreshed_expire(make: Callable[..., Awaitable[RedisBroker]]) -> None:
    a, b = await make(node_id="a"), await make(node_id="b")
    kept, lost = member("c1", "alice"), member("c2", "bob")
    await a.presence_join("acme:chat.x", kept)
    await b.presence_join("acme:chat.x", lost)
    deadline = time.monotonic() + 2 * TTL
    while time.monotonic() < deadline:  # a refreshes, b (dead) does not
        await asyncio.sleep(TTL / 3)
        await a.presence_refresh([("acme:chat.x", kept)])
    assert await b.presence_members("acme:chat.x") == [kept]
    assert await a.presence_counts(["acme:chat.x"]) == {"acme:chat.x": 1}


async def test_nodes_register_with_their_snapshot_until_it_is_stale(
    make: Callable[..., Awaitable[RedisBroker]],
) -> None:
    a, b = await make(node_id="a"), await make(node_id="b")
    await a.heartbeat(orjson.dumps({"node_id": "a", "connections": 1}))
    await b.heartbeat(orjson.dumps({"node_id": "b", "connections": 2}))
    records = await a.nodes()
    assert [r.node_id for r in records] == ["a", "b"]
    assert [orjson.loads(r.snapshot)["connections"] for r in records] == [1, 2]
    assert all(abs(r.seen_at - time.time()) < 5 * UNIT for r in records)
    deadline = time.monotonic() + 2 * TTL
    while time.monotonic() < deadline:  # b stops beating
        await asyncio.sleep(TTL / 3)
        await a.heartbeat(b"{}")
    assert [r.node_id for r in await b.nodes()] == ["a"]
