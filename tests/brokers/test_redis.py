"""The Redis broker (src/roomcast/brokers/redis/): conformance, and what only many nodes show.

Everything runs against real `redis-server` processes started by the test
session: one server, and a 3-master cluster (see tests/brokers/conftest.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest
from support.brokers import RETENTION, Factory, Node, draft, event_of, results_ok, room
from support.conformance import BrokerConformance
from support.redis import RedisClusterProcesses, RedisProcess
from support.redis_brokers import redis_nodes

from roomcast.brokers import Published
from roomcast.brokers.redis import RedisBroker
from roomcast.errors import BrokerError
from roomcast.history import Position
from roomcast.rooms import Room, RoomName, TenantId


class RedisConformance(BrokerConformance):
    """The conformance suite over a Redis broker (``backend`` names the Redis)."""

    @pytest.fixture
    def backend(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    async def make(self, backend: str) -> AsyncIterator[Factory]:
        async with redis_nodes(backend) as start:
            yield start

    async def forget(self, node: Node, where: Room) -> None:
        broker = node.broker
        assert isinstance(broker, RedisBroker)
        await broker.client.delete(broker.keys.meta(where.key), broker.keys.log(where.key))


class TestRedisBroker(RedisConformance):
    """The delivery guarantee, on one Redis server."""

    @pytest.fixture
    def backend(self, redis_server: RedisProcess) -> str:
        return redis_server.url


class TestRedisClusterBroker(RedisConformance):
    """The delivery guarantee, on a Redis Cluster (sharded pub/sub)."""

    @pytest.fixture
    def backend(self, redis_cluster: RedisClusterProcesses) -> str:
        return redis_cluster.url


# -- many nodes, on a server and on a cluster ------------------------------------


@pytest.fixture(params=["server", "cluster"])
def backend(
    request: pytest.FixtureRequest,
    redis_server: RedisProcess,
    redis_cluster: RedisClusterProcesses,
) -> str:
    """The URL of the session's Redis server, then of its cluster."""
    return redis_server.url if request.param == "server" else redis_cluster.url


@pytest.fixture
async def make(backend: str) -> AsyncIterator[Factory]:
    """Start Redis brokers ("nodes") sharing one Redis and one prefix."""
    async with redis_nodes(backend) as start:
        yield start


async def test_two_nodes_publishing_concurrently_get_unique_gapless_ordered_offsets(
    make: Factory,
) -> None:
    a, b, observer = await make(), await make(), await make()
    where = room()
    for node in (a, b, observer):
        await node.broker.listen(where.key)

    async def publish_from(node: Node, count: int) -> list[Published]:
        single = [await node.broker.publish(draft(where)) for _ in range(count)]
        batch = results_ok(await node.broker.publish_many([draft(where) for _ in range(count)]))
        return single + batch

    from_a, from_b = await asyncio.gather(publish_from(a, 40), publish_from(b, 40))
    offsets = sorted(r.offset for r in from_a + from_b)
    assert offsets == list(range(1, 161))
    # Each node's own results are in the order it published them.
    assert [r.offset for r in from_a] == sorted(r.offset for r in from_a)
    assert [r.offset for r in from_b] == sorted(r.offset for r in from_b)
    for node in (a, b, observer):
        delivered = await node.events.wait_for(where, 160)
        assert [p.offset for p in delivered] == list(range(1, 161))
        assert len({p.epoch for p in delivered}) == 1


async def test_events_published_on_one_node_reach_listeners_on_another(make: Factory) -> None:
    a, b = await make(), await make()
    where = room("chat", "acme")
    await b.broker.listen(where.key)
    sent = [draft(where, f"n{n}") for n in range(20)]
    for item in sent:
        await a.broker.publish(item)
    delivered = await b.events.wait_for(where, 20)
    assert [p.offset for p in delivered] == list(range(1, 21))
    assert [event_of(p.data).id for p in delivered] == [d.id for d in sent]
    # a does not listen: nothing reached it.
    await a.events.settle()
    assert a.events.of(where) == []


async def test_listen_returns_once_the_subscription_is_in_place(make: Factory) -> None:
    a, b = await make(), await make()
    rooms = [room() for _ in range(10)]
    for where in rooms:
        await b.broker.listen(where.key)
        # No pause: an event published right after listen() returns arrives.
        await a.broker.publish(draft(where))
    for where in rooms:
        assert [p.offset for p in await b.events.wait_for(where, 1)] == [1]


async def test_unlistened_rooms_are_not_delivered(make: Factory) -> None:
    a, b = await make(), await make()
    followed, other = room(), room()
    await b.broker.listen(followed.key)
    await a.broker.publish(draft(other))
    await a.broker.publish(draft(followed))
    await b.events.wait_for(followed, 1)
    await b.broker.unlisten(followed.key)
    await a.broker.publish(draft(followed))
    await b.events.settle()
    assert [p.offset for p in b.events.of(followed)] == [1]
    assert b.events.of(other) == []


async def test_history_and_recovery_are_shared_by_nodes(make: Factory) -> None:
    a, b = await make(), await make()
    where = room()
    results = [await a.broker.publish(draft(where, f"n{n}")) for n in range(5)]
    epoch = results[0].epoch
    page = await b.broker.read(where, Position(2, epoch), 100, RETENTION)
    assert page.recovered
    assert [event_of(item).offset for item in page.items] == [3, 4, 5]
    assert page.top == Position(5, epoch)
    # b continues the room where a left it.
    following = await b.broker.publish(draft(where))
    assert (following.offset, following.epoch) == (6, epoch)


async def test_a_retried_publish_on_another_node_returns_the_first_result(make: Factory) -> None:
    a, b = await make(), await make()
    where = room()
    first = await a.broker.publish(draft(where, idempotency_key="payment-7"))
    retried = await b.broker.publish(draft(where, idempotency_key="payment-7"))
    assert retried == Published(first.id, first.offset, first.epoch, duplicate=True)
    [again] = results_ok(await b.broker.publish_many([draft(where, idempotency_key="payment-7")]))
    assert again == retried


@pytest.mark.parametrize(
    ("pattern_key", "wanted"),
    [
        ("acme|chat.*", {"acme:chat.a", "chat.b"}),
        ("*|chat.*", {"acme:chat.a", "globex:chat.a", "chat.b"}),
        ("|chat.*", {"chat.b"}),
        ("acme|chat.**", {"acme:chat.a", "acme:chat.a.b", "chat.b"}),
        ("acme|*.a", {"acme:chat.a", "acme:chatty.a", "news.a"}),
    ],
)
async def test_patterns_deliver_exactly_the_rooms_they_match(
    make: Factory, pattern_key: str, wanted: set[str]
) -> None:
    a, b = await make(), await make()
    keys = ["acme:chat.a", "globex:chat.a", "chat.b", "acme:chat.a.b", "acme:chatty.a", "news.a"]
    rooms = [Room.from_key(key) for key in keys]
    await b.broker.listen_pattern(pattern_key)
    for where in rooms:
        await a.broker.publish(draft(where))
    for key in wanted:
        await b.events.wait_for(Room.from_key(key), 1)
    await b.events.settle()
    assert {p.room.key for p in b.events.publications} == wanted
    await b.broker.unlisten_pattern(pattern_key)
    for where in rooms:
        await a.broker.publish(draft(where))
    await b.events.settle()
    assert len(b.events.publications) == len(wanted)


async def test_a_room_reached_through_room_and_patterns_arrives_once_per_node(
    make: Factory,
) -> None:
    a, b = await make(), await make()
    where = Room.of(RoomName("chat.lobby"), TenantId("acme"))
    await b.broker.listen_pattern("acme|chat.*")
    await b.broker.listen_pattern("*|chat.*")
    await b.broker.listen(where.key)
    for _ in range(10):
        await a.broker.publish(draft(where))
    await b.events.wait_for(where, 10)
    await b.events.settle()
    assert [p.offset for p in b.events.of(where)] == list(range(1, 11))
    broker = b.broker
    assert isinstance(broker, RedisBroker)
    assert broker.stats.duplicates >= 10


async def test_a_batch_fails_room_by_room(make: Factory) -> None:
    node = await make()
    broken, fine = room(), room()
    broker = node.broker
    assert isinstance(broker, RedisBroker)
    # A key of the wrong type: Redis refuses every script run on that room.
    await broker.client.set(broker.keys.meta(broken.key), "not a hash")
    results = await broker.publish_many([draft(broken), draft(fine), draft(broken), draft(fine)])
    assert isinstance(results[0], BrokerError)
    assert isinstance(results[2], BrokerError)
    assert results[0].message == "the broker refused the operation"
    assert [r.offset for r in results if isinstance(r, Published)] == [1, 2]
    with pytest.raises(BrokerError):
        await broker.publish(draft(broken))
    assert broker.stats.errors >= 2


async def test_scripts_forgotten_by_redis_are_sent_again(make: Factory) -> None:
    node = await make()
    broker = node.broker
    assert isinstance(broker, RedisBroker)
    where, other = room(), room()
    await broker.publish(draft(where))
    await broker.client.script_flush()
    assert (await broker.publish(draft(where))).offset == 2
    await broker.client.script_flush()
    batch = results_ok(await broker.publish_many([draft(where), draft(other)]))
    assert [r.offset for r in batch] == [3, 1]
    await broker.client.script_flush()
    assert len((await broker.read(where, None, 10, RETENTION)).items) == 3
    await broker.client.script_flush()
    assert {s.room.key for s in await broker.rooms()} >= {where.key, other.key}


async def test_messages_that_are_not_envelopes_are_dropped(make: Factory) -> None:
    a, b = await make(), await make()
    where = room()
    await b.broker.listen(where.key)
    broker = b.broker
    assert isinstance(broker, RedisBroker)
    channel = broker.keys.channel(where.key)
    verb = "SPUBLISH" if broker.target.cluster else "PUBLISH"
    await broker.client.execute_command(verb, channel, b"v0 not an envelope")
    await a.broker.publish(draft(where))
    assert [p.offset for p in await b.events.wait_for(where, 1)] == [1]
    assert broker.stats.undecodable == 1
    assert broker.stats.listener_restarts == 0


async def test_stats_count_what_was_received(make: Factory) -> None:
    a, b = await make(), await make()
    where = room()
    await b.broker.listen(where.key)
    for _ in range(3):
        await a.broker.publish(draft(where))
    await b.events.wait_for(where, 3)
    broker = b.broker
    assert isinstance(broker, RedisBroker)
    stats = broker.stats
    assert stats.connected
    assert (stats.connects, stats.reconnects, stats.failures) == (1, 0, 0)
    assert stats.received == 3
    assert broker.reconnects == 0


async def test_publishes_of_one_turn_travel_as_one_message_per_room(make: Factory) -> None:
    a, b = await make(), await make()
    lobby, other = room("chat", "acme"), room("chat", "acme")
    for where in (lobby, other):
        await b.broker.listen(where.key)
    sent = [draft(lobby, f"n{n}") for n in range(10)] + [draft(other, "o")]
    # Concurrent publishes, as from gRPC calls in flight: pipelined together.
    results = await asyncio.gather(*(a.broker.publish(item) for item in sent))
    assert [r.offset for r in results] == [*range(1, 11), 1]
    delivered = await b.events.wait_for(lobby, 10)
    assert [p.offset for p in delivered] == list(range(1, 11))
    assert [event_of(p.data).id for p in delivered] == [d.id for d in sent[:10]]
    assert [p.offset for p in await b.events.wait_for(other, 1)] == [1]
    broker = b.broker
    assert isinstance(broker, RedisBroker)
    assert broker.stats.received == 2  # one message per room, not one per event
    assert broker.stats.undecodable == 0


async def test_a_repeated_idempotency_key_in_one_pipeline_publishes_once(make: Factory) -> None:
    a, b = await make(), await make()
    where = room()
    await b.broker.listen(where.key)
    first, again = draft(where, "x", idempotency_key="k1"), draft(where, "y", idempotency_key="k1")
    results = await asyncio.gather(a.broker.publish(first), a.broker.publish(again))
    assert [(r.offset, r.id, r.duplicate) for r in results] == [
        (1, first.id, False),
        (1, first.id, True),
    ]
    assert [p.offset for p in await b.events.wait_for(where, 1)] == [1]


async def test_an_event_without_an_id_publishes(make: Factory) -> None:
    # The nodes' own commands (the control room) carry no event id.
    a, b = await make(), await make()
    where = room()
    await b.broker.listen(where.key)
    anonymous = dataclasses.replace(draft(where), id="")
    result = await a.broker.publish(anonymous)
    assert (result.offset, result.id) == (1, "")
    assert [p.offset for p in await b.events.wait_for(where, 1)] == [1]
