"""The Redis broker's receiving side on its own (src/roomcast/brokers/redis/listener.py).

A ``Listener`` runs against a real `redis-server` the session started (or
one of the test's own, where the test kills or stalls it); the test
publishes pub/sub messages with a plain redis-py client, as the publish
script would, and reads what the listener hands the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence

import pytest
from redis.asyncio import Redis
from support.brokers import Collector
from support.redis import RedisProcess, start_redis
from support.redis_brokers import quick_backoff
from support.waiting import UNIT, eventually

from roomcast.brokers import Publication
from roomcast.brokers.redis.clients import SingleTopology
from roomcast.brokers.redis.envelope import Envelope, encode, encode_all
from roomcast.brokers.redis.keys import KeySpace
from roomcast.brokers.redis.listener import Listener
from roomcast.brokers.redis.url import parse_redis_url
from roomcast.rooms import Room, RoomName, TenantId
from roomcast.v1.event_pb2 import Event

CHAT = Room.of(RoomName("chat.a"), TenantId("acme"))
OTHER = Room.of(RoomName("chat.b"), TenantId("acme"))


@pytest.fixture
def own_redis() -> Iterator[RedisProcess]:
    """A `redis-server` for this test alone (it is killed or stalled)."""
    with start_redis() as server:
        yield server


@contextlib.asynccontextmanager
async def listening(
    server: RedisProcess,
    deliver: Collector | None = None,
    *,
    rooms: Sequence[str] = (),
    ping_interval: float = 5.0,
    connected: bool = True,
) -> AsyncIterator[tuple[Listener, Collector, Redis]]:
    """A running listener under a fresh prefix (``rooms`` listened to before it connects).

    Also yields what it delivers to, and a plain client to publish with.
    """
    collector = deliver or Collector()
    listener = Listener(
        SingleTopology(parse_redis_url(server.url), UNIT),
        KeySpace(f"t{uuid.uuid4().hex[:10]}"),
        collector,
        backoff=quick_backoff(),
        ping_interval=ping_interval,
        confirm_timeout=2 * UNIT,
    )
    for key in rooms:
        await listener.listen(key)
    task = asyncio.create_task(listener.run())
    client = Redis(host="127.0.0.1", port=server.port)
    try:
        if connected:
            assert await listener.wait_connected(5 * UNIT)
        yield listener, collector, client
    finally:
        listener.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.aclose()


def envelope(where: Room, offset: int, *, signal: bool = False, text: str = "hi") -> Envelope:
    """An event as the publish script sends it: its body, and its position beside it."""
    body = Event(room=where.name, event="said", id=f"e{offset}", tenant_id=where.tenant or "")
    body.payload.update({"text": text})
    return Envelope(where.key, offset, "ep0", time.time_ns(), body.SerializeToString(), signal)


async def send(client: Redis, listener: Listener, where: Room, message: bytes) -> int:
    """Publish ``message`` on the channel of ``where``; how many subscribers Redis had."""
    receivers: int = await client.publish(listener.keys.channel(where.key), message)
    return receivers


def offsets(publications: Sequence[Publication]) -> list[int]:
    return [p.offset for p in publications]


# -- delivering ---------------------------------------------------------------------------


async def test_an_event_is_delivered_with_its_position_once_listen_returns(
    redis_server: RedisProcess,
) -> None:
    async with listening(redis_server) as (listener, events, client):
        await listener.listen(CHAT.key)
        sent = envelope(CHAT, 5)
        assert await send(client, listener, CHAT, encode(sent)) == 1  # subscribed already
        (publication,) = await events.wait_for(CHAT, 1)
        assert (publication.room, publication.offset, publication.epoch) == (CHAT, 5, "ep0")
        assert (publication.accepted_ns, publication.signal) == (sent.accepted_ns, False)
        event = Event.FromString(publication.data)
        assert (event.id, event.offset, event.epoch, event.payload["text"]) == (
            "e5",
            5,
            "ep0",
            "hi",
        )
        await send(client, listener, CHAT, encode(envelope(CHAT, 0, signal=True)))
        assert (await events.wait_for(CHAT, 2))[1].signal


async def test_a_run_of_events_in_one_message_is_delivered_in_one_call(
    redis_server: RedisProcess,
) -> None:
    async with listening(redis_server) as (listener, events, client):
        await listener.listen(CHAT.key)
        await send(client, listener, CHAT, encode_all([envelope(CHAT, n) for n in (7, 8, 9)]))
        assert offsets(await events.wait_for(CHAT, 3)) == [7, 8, 9]
        assert events.calls == 1
        assert listener.stats.received == 1


async def test_messages_read_together_reach_the_node_together(redis_server: RedisProcess) -> None:
    async with listening(redis_server) as (listener, events, client):
        await listener.listen(CHAT.key)
        channel = listener.keys.channel(CHAT.key)
        pipeline = client.pipeline(transaction=False)
        for offset in range(1, 41):
            pipeline.publish(channel, encode(envelope(CHAT, offset)))
        await pipeline.execute()  # one write: the listener reads them in a burst or two
        assert offsets(await events.wait_for(CHAT, 40)) == list(range(1, 41))
        assert events.calls < 10


async def test_copies_strangers_and_garbage_are_dropped_and_counted(
    redis_server: RedisProcess,
) -> None:
    async with listening(redis_server) as (listener, events, client):
        await listener.listen(CHAT.key)
        one = encode(envelope(CHAT, 1))
        await send(client, listener, CHAT, one)
        await send(client, listener, CHAT, one)  # a copy (two subscriptions matched it)
        await send(client, listener, CHAT, encode(envelope(OTHER, 1)))  # not listened to
        await send(client, listener, CHAT, b"v9 nonsense")
        await send(client, listener, CHAT, encode(envelope(CHAT, 2)))
        assert offsets(await events.wait_for(CHAT, 2)) == [1, 2]
        await events.settle()
        assert [p.room for p in events.publications] == [CHAT, CHAT]
        stats = listener.stats
        assert (stats.duplicates, stats.unwanted, stats.undecodable) == (1, 1, 1)
        assert stats.received == 4  # copies are not counted as received


async def test_a_room_no_longer_listened_to_is_unsubscribed(redis_server: RedisProcess) -> None:
    async with listening(redis_server) as (listener, events, client):
        await listener.listen(CHAT.key)
        await listener.unlisten(CHAT.key)
        channel = listener.keys.channel(CHAT.key)

        async def unsubscribed() -> bool:
            return (await client.pubsub_numsub(channel))[0][1] == 0

        await eventually(unsubscribed, 2 * UNIT)
        await listener.listen(CHAT.key)  # and again
        assert await send(client, listener, CHAT, encode(envelope(CHAT, 3))) == 1
        assert offsets(await events.wait_for(CHAT, 1)) == [3]


async def test_a_pattern_delivers_exactly_the_rooms_it_matches(redis_server: RedisProcess) -> None:
    async with listening(redis_server) as (listener, events, client):
        await listener.listen_pattern("acme|chat.*")
        deeper = Room.of(RoomName("chat.a.b"), TenantId("acme"))  # its glob matches, it does not
        elsewhere = Room.of(RoomName("chat.a"), TenantId("globex"))
        assert await send(client, listener, deeper, encode(envelope(deeper, 1))) == 1
        assert await send(client, listener, elsewhere, encode(envelope(elsewhere, 1))) == 0
        assert await send(client, listener, CHAT, encode(envelope(CHAT, 1))) == 1
        await events.wait_for(CHAT, 1)
        assert [p.room for p in events.publications] == [CHAT]
        assert listener.stats.unwanted == 1
        await listener.unlisten_pattern("acme|chat.*")

        async def no_patterns() -> bool:
            return await client.pubsub_numpat() == 0

        await eventually(no_patterns, 2 * UNIT)


async def test_a_failing_delivery_does_not_stop_the_listener(redis_server: RedisProcess) -> None:
    delivered = Collector()
    failures = 0

    class Flaky(Collector):
        def __call__(self, publications: Sequence[Publication]) -> None:
            nonlocal failures
            if publications[0].offset == 1:
                failures += 1
                raise RuntimeError("a bug in the node's fan-out")
            delivered(publications)

    async with listening(redis_server, Flaky()) as (listener, _, client):
        await listener.listen(CHAT.key)
        await send(client, listener, CHAT, encode(envelope(CHAT, 1)))
        await eventually(lambda: failures == 1, 2 * UNIT)
        await send(client, listener, CHAT, encode(envelope(CHAT, 2)))
        assert offsets(await delivered.wait_for(CHAT, 1)) == [2]


async def test_nothing_is_delivered_once_closed(redis_server: RedisProcess) -> None:
    async with listening(redis_server) as (listener, events, client):
        await listener.listen(CHAT.key)
        listener.close()
        await send(client, listener, CHAT, encode(envelope(CHAT, 1)))
        await events.settle()
        assert events.publications == []


# -- faults ---------------------------------------------------------------------------------


async def test_a_killed_connection_comes_back_with_every_subscription(
    own_redis: RedisProcess,
) -> None:
    # More rooms than one SUBSCRIBE command carries: the session subscribes in bulk.
    keys = [f"acme:chat.r{n}" for n in range(600)]
    async with listening(own_redis, rooms=keys) as (listener, events, client):
        await listener.listen_pattern("acme|document.*")
        last = Room.from_key(keys[-1])
        assert await send(client, listener, last, encode(envelope(last, 1))) == 1
        own_redis.command("CLIENT", "KILL", "TYPE", "pubsub")
        await eventually(lambda: listener.stats.reconnects == 1 and listener.connected, 5 * UNIT)
        assert listener.stats.failures >= 1
        numsub = await client.pubsub_numsub(*[listener.keys.channel(key) for key in keys])
        assert {count for _, count in numsub} == {1}
        assert await client.pubsub_numpat() == 2  # the pattern's globs: acme's, and no tenant's
        document = Room.of(RoomName("document.d"), TenantId("acme"))
        await send(client, listener, document, encode(envelope(document, 4)))
        assert offsets(await events.wait_for(document, 1)) == [4]


async def test_a_connection_that_stops_answering_pings_is_replaced(
    own_redis: RedisProcess,
) -> None:
    async with listening(own_redis, ping_interval=0.1 * UNIT) as (listener, events, client):
        await listener.listen(CHAT.key)
        stall = Redis(host="127.0.0.1", port=own_redis.port)
        try:
            await stall.execute_command("DEBUG", "SLEEP", str(0.6 * UNIT))  # no pongs meanwhile
        finally:
            await stall.aclose()
        await eventually(lambda: listener.stats.reconnects >= 1 and listener.connected, 5 * UNIT)
        assert listener.stats.failures >= 1
        assert await send(client, listener, CHAT, encode(envelope(CHAT, 1))) == 1
        assert offsets(await events.wait_for(CHAT, 1)) == [1]


async def test_a_listener_waits_for_redis_and_subscribes_what_was_asked_meanwhile(
    own_redis: RedisProcess,
) -> None:
    own_redis.kill()
    async with listening(own_redis, connected=False) as (listener, events, client):
        assert not await listener.wait_connected(0.3 * UNIT)
        await listener.listen(CHAT.key)  # nowhere to send it yet: it waits for the session
        await eventually(lambda: listener.stats.failures >= 2, 5 * UNIT)
        own_redis.start()
        assert await listener.wait_connected(5 * UNIT)
        assert await send(client, listener, CHAT, encode(envelope(CHAT, 1))) == 1
        assert offsets(await events.wait_for(CHAT, 1)) == [1]
        assert listener.stats.connects == 1
        assert listener.stats.reconnects == 0
