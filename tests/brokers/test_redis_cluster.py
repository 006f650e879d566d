"""The Redis broker on a 3-master Redis Cluster: rooms on their shards, patterns by feed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio.cluster import RedisCluster
from support.brokers import RETENTION, Factory, draft, event_of, room
from support.redis import RedisClusterProcesses, command, start_cluster
from support.redis_brokers import redis_nodes
from support.waiting import UNIT, eventually

from roomcast.brokers.redis import RedisBroker
from roomcast.brokers.redis.keys import SLOTS, slot_of
from roomcast.history import Position
from roomcast.rooms import Room


@pytest.fixture
async def make(redis_cluster: RedisClusterProcesses) -> AsyncIterator[Factory]:
    """Start Redis brokers on the session's cluster, under a fresh prefix."""
    async with redis_nodes(redis_cluster.url) as start:
        yield start


def owner_port(broker: RedisBroker, name: str | bytes) -> int:
    """The port of the primary that holds a key or shard channel."""
    client = broker.client
    assert isinstance(client, RedisCluster)
    node = client.get_node_from_key(name)  # type: ignore[arg-type]
    assert node is not None
    return int(node.port)


async def test_rooms_spread_across_shards_and_keep_their_keys_together(
    make: Factory, redis_cluster: RedisClusterProcesses
) -> None:
    a, b = await make(), await make()
    broker = a.broker
    assert isinstance(broker, RedisBroker)
    # Rooms until every primary holds some.
    rooms: dict[int, list[Room]] = {}
    while len(rooms) < 3 or min(len(r) for r in rooms.values()) < 2:
        where = room()
        rooms.setdefault(owner_port(broker, broker.keys.meta(where.key)), []).append(where)
    assert set(rooms) == {node.port for node in redis_cluster.nodes}
    every = [where for group in rooms.values() for where in group]
    for where in every:
        await b.broker.listen(where.key)
    for where in every:
        await broker.publish(draft(where, idempotency_key="once"))
        await broker.publish(draft(where))
    for port, group in rooms.items():
        for where in group:
            names = [
                broker.keys.meta(where.key),
                broker.keys.log(where.key),
                broker.keys.idempotency(where.key, "once"),
            ]
            # One slot for all of a room's keys and its channel, on one shard.
            slots = {slot_of(name.encode()) for name in names}
            slots.add(slot_of(broker.keys.channel(where.key)))
            assert len(slots) == 1
            slot = slots.pop()
            assert int(command(port, "CLUSTER", "COUNTKEYSINSLOT", str(slot))) >= 3
            assert command(port, "EXISTS", *names) == "3"
    for where in every:
        delivered = await b.events.wait_for(where, 2)
        assert [p.offset for p in delivered] == [1, 2]
        page = await b.broker.read(where, Position(1, delivered[0].epoch), 10, RETENTION)
        assert [event_of(item).offset for item in page.items] == [2]


async def test_batches_spanning_shards_answer_per_item(make: Factory) -> None:
    node = await make()
    rooms = [room() for _ in range(12)]
    drafts = [draft(where) for where in rooms for _ in range(3)]
    results = await node.broker.publish_many(drafts)
    assert [getattr(r, "offset", None) for r in results] == [1, 2, 3] * 12


async def test_feeds_carry_events_only_while_a_node_follows_patterns(
    make: Factory,
) -> None:
    a, b = await make(), await make()
    broker = b.broker
    assert isinstance(broker, RedisBroker)
    sample = [0, 1, SLOTS // 3, SLOTS // 2, SLOTS - 1]

    def followers(slot: int) -> int:
        feed = broker.keys.feed(slot)
        reply = command(owner_port(broker, feed), "PUBSUB", "SHARDNUMSUB", feed.decode())
        return int(reply.split()[-1])

    assert [followers(slot) for slot in sample] == [0] * len(sample)
    await broker.listen_pattern("*|chat.**")
    await broker.listen_pattern("acme|news.*")
    assert [followers(slot) for slot in sample] == [1] * len(sample)
    rooms = [room() for _ in range(6)] + [Room.from_key("acme:news.today")]
    for where in rooms:
        await a.broker.publish(draft(where))
    for where in rooms:
        assert [p.offset for p in await b.events.wait_for(where, 1)] == [1]
    await broker.unlisten_pattern("*|chat.**")
    assert [followers(slot) for slot in sample] == [1] * len(sample)
    await broker.unlisten_pattern("acme|news.*")
    await b.events.settle()
    assert [followers(slot) for slot in sample] == [0] * len(sample)


def move_slot(cluster: RedisClusterProcesses, slot: int, source: int, target: int) -> None:
    """Move one slot, with its keys, from one primary to another (as resharding does)."""
    ids = {node.port: command(node.port, "CLUSTER", "MYID") for node in cluster.nodes}
    command(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", ids[source])
    command(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", ids[target])
    keys = command(source, "CLUSTER", "GETKEYSINSLOT", str(slot), "1000").split()
    if keys:
        command(source, "MIGRATE", "127.0.0.1", str(target), "", "0", "5000", "KEYS", *keys)
    for node in cluster.nodes:
        command(node.port, "CLUSTER", "SETSLOT", str(slot), "NODE", ids[target])


async def test_a_room_whose_slot_moves_keeps_its_history_and_its_listeners() -> None:
    with start_cluster(3) as cluster:
        async with redis_nodes(cluster.url) as make:
            a, b = await make(), await make()
            follower = b.broker
            assert isinstance(follower, RedisBroker)
            where = room()
            await follower.listen(where.key)
            first = await a.broker.publish(draft(where))
            await b.events.wait_for(where, 1)
            slot = slot_of(follower.keys.meta(where.key).encode())
            source = owner_port(follower, follower.keys.meta(where.key))
            target = next(n.port for n in cluster.nodes if n.port != source)

            move_slot(cluster, slot, source, target)

            # Redis unsubscribed the follower from the moved channel; it
            # resubscribes on the new owner. Publish until an event arrives.
            async def delivered_again() -> bool:
                await a.broker.publish(draft(where))
                await asyncio.sleep(0.05 * UNIT)
                return len(b.events.of(where)) > 1

            await eventually(delivered_again)
            offsets = [p.offset for p in b.events.of(where)]
            assert offsets == sorted(set(offsets))
            assert {p.epoch for p in b.events.of(where)} == {first.epoch}
            assert owner_port(follower, follower.keys.meta(where.key)) == target
            assert follower.reconnects >= 1
            assert follower.stats.listener_restarts == 0
