"""The Redis broker under faults: Redis restarting, unreachable, or slow.

Each test starts a `redis-server` (or a cluster) of its own, because it
kills or stalls it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio.cluster import RedisCluster
from support.brokers import Node, draft, room
from support.ports import free_port
from support.redis import (
    RedisClusterProcesses,
    RedisProcess,
    cluster_ready,
    start_cluster,
    start_redis,
)
from support.redis_brokers import redis_nodes
from support.waiting import UNIT, eventually

from roomcast.brokers import Published
from roomcast.brokers.redis.broker import LISTENER_TASK, RedisBroker
from roomcast.errors import BrokerError, BrokerTimeout
from roomcast.history import Position
from roomcast.rooms import Room


@pytest.fixture
def own_redis() -> Iterator[RedisProcess]:
    """A `redis-server` for this test alone."""
    with start_redis() as server:
        yield server


def redis_of(node: Node) -> RedisBroker:
    assert isinstance(node.broker, RedisBroker)
    return node.broker


async def unhealthy(broker: RedisBroker) -> bool:
    return not await broker.healthy()


async def disconnected(broker: RedisBroker) -> bool:
    return not broker.stats.connected


def listener_alive(broker: RedisBroker) -> bool:
    task = broker._supervisor._tasks[LISTENER_TASK]
    return not task.done()


@contextlib.asynccontextmanager
async def loop_lag() -> AsyncIterator[list[float]]:
    """Measure the longest the event loop went without running a 10 ms ticker."""
    gaps: list[float] = [0.0]
    loop = asyncio.get_running_loop()

    async def tick() -> None:
        last = loop.time()
        while True:
            await asyncio.sleep(0.01)
            now = loop.time()
            gaps[0] = max(gaps[0], now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        yield gaps
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker


async def test_a_redis_restart_mid_stream_is_survived(own_redis: RedisProcess) -> None:
    async with redis_nodes(own_redis.url) as make:
        a = await make(ping_interval=0.5 * UNIT)
        b = await make(ping_interval=0.5 * UNIT)
        publisher, follower = redis_of(a), redis_of(b)
        where = room()
        await follower.listen(where.key)
        published: list[Published] = []
        failures: list[BrokerError] = []
        stop = asyncio.Event()

        async def publish_steadily() -> None:
            while not stop.is_set():
                try:
                    published.append(await publisher.publish(draft(where)))
                except BrokerError as error:
                    failures.append(error)
                await asyncio.sleep(0.02 * UNIT)

        stream = asyncio.create_task(publish_steadily())
        await b.events.wait_for(where, 5)
        first_epoch = published[0].epoch

        own_redis.kill()
        await eventually(lambda: unhealthy(publisher))
        await eventually(lambda: unhealthy(follower))
        await eventually(lambda: disconnected(follower))
        down_since = len(failures)
        await asyncio.sleep(0.3 * UNIT)
        assert len(failures) > down_since  # publishing fails, it does not hang

        own_redis.start()
        await eventually(publisher.healthy)
        await eventually(follower.healthy)
        # Redis came back empty (no persistence): the room starts a new epoch,
        # and the follower's subscription was restored without anyone asking.
        await eventually(lambda: _has_new_epoch(b, where, first_epoch))
        stop.set()
        await stream

        assert follower.reconnects >= 1
        assert follower.stats.failures >= 1
        assert publisher.stats.errors >= 1
        for broker in (publisher, follower):
            assert broker.stats.listener_restarts == 0
            assert listener_alive(broker)
        # At most once, in order, per epoch: no duplicates, no reordering.
        for epoch in {p.epoch for p in b.events.of(where)}:
            offsets = [p.offset for p in b.events.of(where) if p.epoch == epoch]
            assert offsets == sorted(set(offsets))
        # The old position is recognised as lost instead of misread.
        page = await follower.read(where, Position(3, first_epoch), 10, draft(where).retention)
        assert not page.recovered
        assert "epoch changed" in page.reason


async def _has_new_epoch(node: Node, where: Room, old: str) -> bool:
    return any(p.epoch != old for p in node.events.of(where))


async def test_a_node_starts_while_redis_is_down_and_connects_when_it_comes() -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    async with redis_nodes(url) as make:
        loop = asyncio.get_running_loop()
        started = loop.time()
        node = await make(publish_timeout=0.5 * UNIT)
        assert loop.time() - started < 2 * UNIT
        broker = redis_of(node)
        assert not await broker.healthy()
        where = room()
        await broker.listen(where.key)  # remembered, not refused
        with pytest.raises(BrokerError) as refused:
            await broker.publish(draft(where))
        assert refused.value.message == "the broker is unavailable; retry later"

        late = RedisProcess(port)
        try:
            late.start()
            await eventually(broker.healthy)
            other = await make()
            await other.broker.publish(draft(where))
            assert [p.offset for p in await node.events.wait_for(where, 1)] == [1]
            assert broker.stats.listener_restarts == 0
        finally:
            late.stop()


async def test_a_slow_redis_times_out_publishes_without_blocking_the_loop(
    own_redis: RedisProcess,
) -> None:
    async with redis_nodes(own_redis.url) as make:
        node = await make(publish_timeout=0.5 * UNIT, ping_interval=10 * UNIT)
        broker = redis_of(node)
        where = room()
        await broker.publish(draft(where))
        reader, writer = await asyncio.open_connection("127.0.0.1", own_redis.port)
        try:
            # Stall Redis on a connection of its own; commands queue behind it.
            writer.write(f"DEBUG SLEEP {2 * UNIT:.2f}\r\n".encode())
            await writer.drain()
            await asyncio.sleep(0.1 * UNIT)
            loop = asyncio.get_running_loop()
            async with loop_lag() as lag:
                started = loop.time()
                with pytest.raises(BrokerTimeout) as timed_out:
                    await broker.publish(draft(where))
                elapsed = loop.time() - started
                assert not await broker.healthy()
            assert 0.45 * UNIT <= elapsed < 1.5 * UNIT
            assert "did not answer within" in timed_out.value.message
            assert lag[0] < 0.25 * UNIT
            assert await reader.readline() == b"+OK\r\n"
        finally:
            writer.close()
            await writer.wait_closed()
        # The timed-out publish was already sent and Redis ran it after the
        # stall (hence idempotency keys for retries); the next one follows.
        later = await broker.publish(draft(where))
        assert later.offset in (2, 3)
        assert broker.stats.timeouts >= 1
        await eventually(broker.healthy)


async def test_a_cluster_primary_restart_is_survived() -> None:
    with start_cluster(3) as cluster:
        async with redis_nodes(cluster.url) as make:
            a = await make(ping_interval=0.5 * UNIT)
            b = await make(ping_interval=0.5 * UNIT)
            follower = redis_of(b)
            client = follower.client
            assert isinstance(client, RedisCluster)
            by_port: dict[int, Room] = {}
            while len(by_port) < 3:
                where = room()
                node = client.get_node_from_key(follower.keys.meta(where.key))
                assert node is not None
                by_port.setdefault(int(node.port), where)
            for where in by_port.values():
                await follower.listen(where.key)
                await a.broker.publish(draft(where))
                await b.events.wait_for(where, 1)

            victim = next(n for n in cluster.nodes if n.port == next(iter(by_port)))
            victim.kill()
            await eventually(lambda: disconnected(follower))
            victim.start()
            await eventually(lambda: _cluster_ok(cluster))
            await eventually(follower.healthy, within=20 * UNIT)
            for where in by_port.values():
                await eventually(lambda where=where: _publishes(a, where), within=20 * UNIT)
            for where in by_port.values():
                await b.events.wait_for(where, 2)
            assert follower.reconnects >= 1
            assert follower.stats.listener_restarts == 0
            assert listener_alive(follower)


async def _cluster_ok(cluster: RedisClusterProcesses) -> bool:
    return await asyncio.to_thread(cluster_ready, cluster.nodes)


async def _publishes(node: Node, where: Room) -> bool:
    try:
        await node.broker.publish(draft(where))
    except BrokerError:
        return False
    return True
