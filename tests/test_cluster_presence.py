"""Presence on every node, shared through the broker (src/roomcast/cluster_presence.py).

Two ``ClusterPresence`` s stand for two nodes: each has its own local
presence and its own Redis broker, and both brokers share a real
`redis-server` this module starts (under a key prefix per test). Faults are
real too: the test kills its Redis, and starts it again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from support.redis import RedisProcess, start_redis
from support.redis_brokers import redis_nodes
from support.waiting import UNIT, eventually

from roomcast import cluster_presence
from roomcast.brokers.memory import MemoryBroker
from roomcast.brokers.redis import RedisBroker
from roomcast.cluster_presence import ClusterPresence
from roomcast.presence import ConnectionId, Member, Presence
from roomcast.rooms import TenantId

ROOM = "acme:chat.x"
TTL = 0.4 * UNIT  # a presence entry's life without a refresh; refreshed every TTL / 3


@pytest.fixture
def redis() -> Iterator[RedisProcess]:
    """A `redis-server` of this test's own (the tests kill it)."""
    with start_redis() as server:
        yield server


def member(name: str) -> Member:
    return Member(ConnectionId(f"c-{name}"), name, TenantId("acme"), time.time())


def in_room(presence: Presence, who: Member, room: str = ROOM) -> Member:
    """``who`` connected and in ``room`` on this node; its entry there."""
    presence.connect(who)
    presence.join(room, who, time.time())
    entry = presence.member(room, who.connection_id)
    assert entry is not None
    return entry


@contextlib.asynccontextmanager
async def two_nodes(redis: RedisProcess) -> AsyncIterator[tuple[ClusterPresence, ClusterPresence]]:
    """Two nodes' presence, sharing ``redis``."""
    async with redis_nodes(redis.url) as start:
        nodes = []
        for node_id in ("n1", "n2"):
            broker = (await start(node_id=node_id, presence_ttl=TTL, publish_timeout=UNIT)).broker
            assert isinstance(broker, RedisBroker)
            nodes.append(ClusterPresence(Presence(), broker, TTL))
        yield nodes[0], nodes[1]


async def user_ids(node: ClusterPresence, room: str = ROOM) -> list[str]:
    return [m.user_id for m in await node.members(room)]


async def test_without_shared_state_a_rooms_members_are_this_nodes() -> None:
    presence = Presence()
    node = ClusterPresence(presence, MemoryBroker(), TTL)
    alice = in_room(presence, member("alice"))
    await node.share(ROOM, alice.connection_id)  # nothing to share with: no error
    assert await node.members(ROOM) == [alice]
    await node.unshare(ROOM, alice.connection_id)


async def test_a_shared_member_is_seen_from_the_other_node_until_unshared(
    redis: RedisProcess,
) -> None:
    async with two_nodes(redis) as (one, two):
        alice = in_room(one.presence, member("alice"))
        await one.share(ROOM, alice.connection_id)
        (seen,) = await two.members(ROOM)
        assert (seen.connection_id, seen.user_id, seen.tenant) == ("c-alice", "alice", "acme")
        assert seen.joined_at == pytest.approx(alice.joined_at, abs=1e-3)  # when it joined
        bob = in_room(two.presence, member("bob"))
        await two.share(ROOM, bob.connection_id)
        assert await user_ids(one) == ["alice", "bob"]
        await one.unshare(ROOM, alice.connection_id)
        assert await user_ids(two) == ["bob"]


async def test_only_a_member_of_the_room_on_this_node_is_shared(redis: RedisProcess) -> None:
    async with two_nodes(redis) as (one, two):
        alice = member("alice")
        one.presence.connect(alice)  # connected, but in no room
        await one.share(ROOM, alice.connection_id)
        assert await two.members(ROOM) == []


async def test_while_redis_is_down_presence_is_this_nodes_and_nothing_fails(
    redis: RedisProcess,
) -> None:
    async with two_nodes(redis) as (one, _):
        alice = in_room(one.presence, member("alice"))
        redis.kill()
        await one.share(ROOM, alice.connection_id)
        assert await one.members(ROOM) == [alice]
        await one.unshare(ROOM, alice.connection_id)


async def test_kept_alive_entries_outlive_their_ttl_and_stop_when_the_node_closes(
    redis: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster_presence, "PRESENCE_CHUNK", 2)  # five entries: three rounds
    async with two_nodes(redis) as (one, two):
        rooms = [f"acme:chat.r{n}" for n in range(5)]
        alice = member("alice")
        for room in rooms:
            in_room(one.presence, alice, room)
            await one.share(room, alice.connection_id)
        closing = False
        keeper = asyncio.create_task(one.keep_alive(lambda: closing))
        await asyncio.sleep(2.5 * TTL)
        assert [await user_ids(two, room) for room in rooms] == [["alice"]] * 5
        closing = True
        await asyncio.wait_for(keeper, 2 * TTL)
        await eventually(lambda: _empty(two, rooms), 5 * TTL)  # no longer refreshed


async def _empty(node: ClusterPresence, rooms: list[str]) -> bool:
    return all([not await node.members(room) for room in rooms])


async def test_a_refresh_after_redis_restarts_writes_the_entries_again(
    redis: RedisProcess,
) -> None:
    async with two_nodes(redis) as (one, two):
        alice = in_room(one.presence, member("alice"))
        await one.share(ROOM, alice.connection_id)
        keeper = asyncio.create_task(one.keep_alive(lambda: False))
        try:
            redis.kill()
            await asyncio.sleep(TTL)  # a round or two fail meanwhile
            redis.start()  # empty: it keeps nothing on disk
            await eventually(lambda: _has(two, "alice"), 10 * TTL)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper


async def _has(node: ClusterPresence, user_id: str) -> bool:
    return user_id in await user_ids(node)
