"""The Redis broker: many roomcast nodes as one platform.

``--broker redis://host:6379/0`` (or ``rediss://``, or
``redis+cluster://host:port,host:port``; see :mod:`.url`).

Publishing: one Lua script per room (``publish.lua``) gives each
event the room's next offset, appends it to the room's stream
(``XADD … MAXLEN ~ size``), records its idempotency key, and publishes one
message to the room's channel, atomically, so concurrent publishers on any
number of nodes never produce duplicate or out-of-order offsets. Names of a
room's keys and channel share a hash tag, so on a cluster they live on one
shard and the channel is a shard channel (``SPUBLISH``, Redis >= 7).

Receiving: the :class:`~.listener.Listener` subscribes to exactly the
rooms and patterns the node listens to and survives Redis restarts
(reconnect with backoff and jitter, resubscribe, counted in :attr:`stats`).

Patterns on a cluster: Redis has no sharded pattern subscription
(``SSUBSCRIBE`` takes channel names, and the classic ``PSUBSCRIBE`` never
sees ``SPUBLISH``). Mirroring every event to a classic channel would cost a
second, cluster-wide broadcast per publish. Instead every slot has a *feed*
shard channel; the publish script also publishes an event to its slot's
feed, on the same shard, but only while some node subscribes to that feed
(``PUBSUB SHARDNUMSUB``, a local lookup). A node with at least one pattern
subscribes to all 16,384 feeds (one ``SSUBSCRIBE`` each, on their
primaries) and filters rooms exactly. So: no pattern anywhere, one message
per publish; patterns followed, two messages per publish, both on the
room's shard, and each pattern-following node receives every event. On one
server, patterns are ``PSUBSCRIBE`` globs over room channels, filtered
exactly on the node.

History and positions: a room's ``meta`` hash holds its epoch and top
offset and outlives its history by ``position_ttl`` seconds; when it is
gone (expired, evicted, Redis restarted without persistence) the next
publish starts a new epoch. :meth:`RedisBroker.read` serves history and
recovery to every node from one script call (``read.lua``) and
:func:`roomcast.history.recovery`.

Failures: every call is bounded by ``publish_timeout`` (then
:class:`~roomcast.errors.BrokerTimeout`); Redis errors become
:class:`~roomcast.errors.BrokerError` with a client-safe message. Nothing
blocks the event loop: all I/O is asyncio.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeout

from ...errors import BrokerError, BrokerTimeout, RoomcastError
from ...history import Page, Position, Recovery, recovery
from ...presence import Member
from ...rooms import Room
from ...tasks import Supervisor
from ...wire import epoch_field, offset_field
from ..backoff import Backoff
from ..coalesce import Coalescer
from ..shared import NodeRecord, SharedState, decode_member, encode_member
from ..values import Deliver, Draft, Outcome, Published, Retention, RoomStats, expand
from .clients import DEFAULT_MAX_CONNECTIONS, CommandClient, command_client, topology
from .keys import KeySpace
from .listener import DEFAULT_PING_INTERVAL, FAULTS, Listener
from .scripts import (
    PUBLISH,
    READ,
    Call,
    PublishOptions,
    ReadReply,
    milliseconds,
    publish_call,
    published,
    published_runs,
    read_call,
    read_reply,
    unknown_script,
)
from .url import parse_redis_url

__all__ = [
    "DEFAULT_NODE_TTL",
    "DEFAULT_POSITION_TTL",
    "DEFAULT_PRESENCE_TTL",
    "LISTENER_TASK",
    "RedisBroker",
    "RedisStats",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# A room's position outlives its history by this long, so a client that
# reconnects after the history expired is told exactly what it missed
# instead of that the room was reset.
DEFAULT_POSITION_TTL = 300.0
DEFAULT_PRESENCE_TTL = 60.0
DEFAULT_NODE_TTL = 15.0
LISTENER_TASK = "redis-listener"
HEALTH_TIMEOUT = 1.0
MAX_LISTED_ROOMS = 10_000
# Publishes of one event-loop turn sent together, at most (one pipeline).
MAX_COALESCED = 1_000


@dataclass(frozen=True, slots=True)
class RedisStats:
    """Counters of a Redis broker, for metrics (a snapshot).

    Attributes:
        connected: the pub/sub side is connected now.
        connects: pub/sub sessions established.
        reconnects: sessions established after a lost session or failed attempt.
        failures: sessions lost or connection attempts failed.
        listener_restarts: times the listener task died of a bug and was restarted.
        received: event messages read.
        duplicates: message copies dropped.
        unwanted: messages of rooms not listened to (pattern supersets).
        undecodable: messages that were not an envelope.
        errors: broker calls that failed (Redis refused or unreachable).
        timeouts: broker calls that timed out.
    """

    connected: bool
    connects: int
    reconnects: int
    failures: int
    listener_restarts: int
    received: int
    duplicates: int
    unwanted: int
    undecodable: int
    errors: int
    timeouts: int


class RedisBroker:
    """A :class:`~roomcast.brokers.broker.Broker` shared by many nodes through Redis.

    Args:
        url: ``redis://``, ``rediss://`` or ``redis[s]+cluster://`` URL.
        publish_timeout: seconds any broker call may take (``Settings.publish_timeout``).
        idempotency_ttl: seconds an idempotency key is remembered.
        position_ttl: seconds a room's epoch and top offset outlive its history.
        max_connections: command connections per Redis server.
        ping_interval: seconds of pub/sub silence before the listener pings.
        backoff: delays between the listener's connection attempts.
        node_id: this node, in presence and registry records.
        presence_ttl: seconds a presence entry counts without a refresh.
        node_ttl: seconds a node registration counts without a heartbeat.

    Raises:
        ConfigError: the URL is not a Redis URL.
    """

    def __init__(
        self,
        url: str,
        *,
        publish_timeout: float = 5.0,
        idempotency_ttl: float = 300.0,
        position_ttl: float = DEFAULT_POSITION_TTL,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        ping_interval: float = DEFAULT_PING_INTERVAL,
        backoff: Backoff | None = None,
        node_id: str = "node",
        presence_ttl: float = DEFAULT_PRESENCE_TTL,
        node_ttl: float = DEFAULT_NODE_TTL,
    ) -> None:
        self.target = parse_redis_url(url)
        self.keys = KeySpace(self.target.prefix)
        self.timeout = publish_timeout
        self._options = PublishOptions(
            sharded=self.target.cluster,
            position_ms=milliseconds(position_ttl),
            idempotency_ms=milliseconds(idempotency_ttl),
        )
        self._max_connections = max_connections
        self._ping_interval = ping_interval
        self._backoff = backoff or Backoff()
        self._client: CommandClient | None = None
        self._listener: Listener | None = None
        self._supervisor = Supervisor()
        self._errors = 0
        self._timeouts = 0
        self._publishes: Coalescer[Draft, Published | RoomcastError] = Coalescer(
            self._publish_each, MAX_COALESCED
        )
        self.node_id = node_id
        self.presence_ttl = presence_ttl
        self.node_ttl = node_ttl
        # The node's presence and registry are shared through this Redis.
        self.shared: SharedState | None = self

    # -- lifecycle -------------------------------------------------------------

    async def start(self, deliver: Deliver) -> None:
        """Connect, and deliver events of everything listened to from now on.

        Waits up to ``publish_timeout`` for Redis; a node whose Redis is
        down still starts (reporting unhealthy) and keeps trying.
        """
        client = self._client = command_client(self.target, self.timeout, self._max_connections)
        self._listener = Listener(
            topology(self.target, client, self.timeout),
            self.keys,
            deliver,
            backoff=self._backoff,
            ping_interval=self._ping_interval,
            confirm_timeout=self.timeout,
        )
        self._supervisor.spawn(LISTENER_TASK, self._listener.run)
        if not await self._listener.wait_connected(self.timeout):
            log.warning("Redis (%s) is not reachable yet; retrying in the background", self._where)

    async def close(self) -> None:
        """Stop delivering and close every connection."""
        if self._listener is not None:
            self._listener.close()
        self._publishes.close()
        await self._supervisor.close()
        if self._client is not None:
            if isinstance(self._client, RedisCluster):
                await self._client.aclose()
            else:
                await self._client.aclose(close_connection_pool=True)
            self._client = None

    @property
    def _where(self) -> str:
        return ",".join(f"{host}:{port}" for host, port in self.target.nodes)

    @property
    def stats(self) -> RedisStats:
        """The broker's counters now."""
        listener = self._listener
        counts = listener.stats if listener is not None else None
        return RedisStats(
            connected=listener is not None and listener.connected,
            connects=counts.connects if counts else 0,
            reconnects=counts.reconnects if counts else 0,
            failures=counts.failures if counts else 0,
            listener_restarts=self._supervisor.restarts.get(LISTENER_TASK, 0),
            received=counts.received if counts else 0,
            duplicates=counts.duplicates if counts else 0,
            unwanted=counts.unwanted if counts else 0,
            undecodable=counts.undecodable if counts else 0,
            errors=self._errors,
            timeouts=self._timeouts,
        )

    @property
    def reconnects(self) -> int:
        """Pub/sub sessions re-established after Redis was lost."""
        return self._listener.stats.reconnects if self._listener is not None else 0

    async def healthy(self) -> bool:
        """Whether Redis answers now and the pub/sub side is connected."""
        if self._client is None or self._listener is None or not self._listener.connected:
            return False
        try:
            async with asyncio.timeout(min(self.timeout, HEALTH_TIMEOUT)):
                await self._client.ping()
        except FAULTS:
            return False
        return True

    # -- calls -----------------------------------------------------------------

    @property
    def client(self) -> CommandClient:
        """The command client.

        Raises:
            BrokerError: the broker was not started, or is closed.
        """
        if self._client is None:
            raise BrokerError("the broker is not running")
        return self._client

    async def _call(self, call: Awaitable[T]) -> T:
        """Await ``call`` within the timeout, with Redis errors as broker errors."""
        try:
            async with asyncio.timeout(self.timeout):
                return await call
        except (TimeoutError, RedisTimeout) as error:
            self._timeouts += 1
            raise BrokerTimeout(f"the broker did not answer within {self.timeout:g}s") from error
        except ResponseError as error:
            raise self._refused(error) from error
        except (RedisError, RedisClusterException, OSError) as error:
            self._errors += 1
            log.debug("Redis call failed: %r", error)
            raise BrokerError("the broker is unavailable; retry later") from error

    def _refused(self, error: ResponseError) -> BrokerError:
        self._errors += 1
        log.warning("Redis refused a broker call: %s", error)
        return BrokerError("the broker refused the operation")

    # -- publishing ------------------------------------------------------------

    async def publish(self, draft: Draft) -> Published:
        """Store (unless skipped) and publish one event.

        Raises:
            BrokerError: Redis refused or is unreachable.
            BrokerTimeout: Redis did not answer within ``publish_timeout``.
        """
        # Pipelined with the other publishes of this event-loop turn
        # (coalesce.py): one round trip, one script run and one pub/sub
        # message per room for all of them.
        result = await self._publishes.submit(draft)
        if isinstance(result, RoomcastError):
            # The error may be shared by the batch: raise it afresh.
            raise result.with_traceback(None)
        return result

    async def publish_many(self, drafts: Sequence[Draft]) -> list[Outcome]:
        """Publish events in order: one script run per room, all in one pipeline.

        A room's events keep their order and succeed or fail together; rooms
        succeed or fail on their own. When the whole call fails (Redis
        unreachable, timeout) every item carries the error, and some rooms
        may have been published: retry with idempotency keys. The events of
        a batch of one room come back as runs (see :func:`published_runs`).
        """
        if not drafts:
            return []
        by_room: dict[str, list[int]] = {}
        for index, draft in enumerate(drafts):
            by_room.setdefault(draft.room.key, []).append(index)
        groups = list(by_room.values())
        options = self._options
        room_drafts = [[drafts[i] for i in group] for group in groups]
        calls = [publish_call(self.keys, room, options) for room in room_drafts]
        try:
            replies = await self._call(self._pipelined(calls))
        except BrokerError as error:
            return [error] * len(drafts)
        if len(groups) == 1 and not isinstance(replies[0], ResponseError):
            return list(published_runs(replies[0], room_drafts[0]))
        results: dict[int, Published | RoomcastError] = {}
        for group, sent, reply in zip(groups, room_drafts, replies, strict=True):
            if isinstance(reply, ResponseError):
                failed = self._refused(reply)
                results.update((index, failed) for index in group)
            else:
                results.update(zip(group, published(reply, sent), strict=True))
        return [results[index] for index in range(len(drafts))]

    async def _publish_each(self, drafts: Sequence[Draft]) -> list[Published | RoomcastError]:
        """:meth:`publish_many` with one result per draft, for the coalescer."""
        return expand(await self.publish_many(drafts))

    async def _pipelined(self, calls: Sequence[Call]) -> list[Any]:
        """Run the publish script once per call in one pipeline; replies or errors in order."""
        client = self.client
        if len(calls) == 1:
            try:
                return [await PUBLISH.run(client, *calls[0])]
            except ResponseError as error:
                return [error]
        pipeline = client.pipeline(transaction=False)
        for names, args in calls:
            PUBLISH.queue(pipeline, names, args)
        replies: list[Any] = await pipeline.execute(raise_on_error=False)
        unknown = [i for i, reply in enumerate(replies) if unknown_script(reply)]
        if unknown:
            # NOSCRIPT means it did not run: run those by source, in order.
            retry = client.pipeline(transaction=False)
            for i in unknown:
                PUBLISH.queue_source(retry, *calls[i])
            for i, reply in zip(unknown, await retry.execute(raise_on_error=False), strict=True):
                replies[i] = reply
        return replies

    # -- reading ---------------------------------------------------------------

    async def _read(self, room: Room, first: int, limit: int, size: int, ttl_ms: int) -> ReadReply:
        names, args = read_call(self.keys, room, first, limit, size, ttl_ms)
        return read_reply(await self._call(READ.run(self.client, names, args)))

    async def read(
        self, room: Room, since: Position | None, limit: int, retention: Retention
    ) -> Page[bytes]:
        """Events of ``room`` after ``since``, oldest first, and whether all could be served.

        Raises:
            BrokerError: Redis refused or is unreachable.
            BrokerTimeout: Redis did not answer in time.
        """
        size, ttl_ms = max(retention.size, 0), milliseconds(retention.ttl)
        first = 1 if since is None else since.offset + 1
        reply = await self._read(room, first, limit, size, ttl_ms)
        verdict = (
            Recovery(True)
            if since is None
            else recovery(since, epoch=reply.epoch, top=reply.top, oldest=reply.oldest)
        )
        if not verdict.recovered and first > reply.oldest and limit > 0:
            # A lost position reads from the oldest event held, as RoomLog does.
            reply = await self._read(room, 1, limit, size, ttl_ms)
        position = epoch_field(reply.epoch)
        items = [b"".join((body, offset_field(offset), position)) for offset, body in reply.entries]
        return Page(items, Position(reply.top, reply.epoch), verdict.recovered, verdict.reason)

    async def rooms(self) -> list[RoomStats]:
        """Rooms that have a position in Redis (at most 10,000).

        Raises:
            BrokerError: Redis refused or is unreachable.
        """
        return await self._call(self._rooms())

    async def _rooms(self) -> list[RoomStats]:
        client = self.client
        found: dict[str, Room] = {}
        async for name in client.scan_iter(match=self.keys.meta_glob, count=1_000):
            key = self.keys.room_of_meta(name)
            if key is not None and key not in found:
                found[key] = Room.from_key(key)
                if len(found) >= MAX_LISTED_ROOMS:
                    break
        rooms = list(found.values())
        if not rooms:
            return []
        # Limit 0: the position and what is held, no events, by the room's
        # own retention (-1).
        calls = [read_call(self.keys, room, 0, 0, -1, -1) for room in rooms]
        pipeline = client.pipeline(transaction=False)
        for names, args in calls:
            READ.queue(pipeline, names, args)
        replies = await pipeline.execute(raise_on_error=False)
        if any(unknown_script(reply) for reply in replies):
            pipeline = client.pipeline(transaction=False)
            for names, args in calls:
                READ.queue_source(pipeline, names, args)
            replies = await pipeline.execute(raise_on_error=False)
        stats = []
        for room, raw in zip(rooms, replies, strict=True):
            if isinstance(raw, BaseException):
                continue  # not a room's hash after all (or Redis refused it)
            reply = read_reply(raw)
            if reply.epoch:  # else expired between the scan and the read
                held = reply.top + 1 - reply.oldest
                stats.append(RoomStats(room, Position(reply.top, reply.epoch), held))
        return stats

    # -- listening -------------------------------------------------------------

    def _interest(self) -> Listener:
        if self._listener is None:
            raise BrokerError("the broker is not running")
        return self._listener

    async def listen(self, room_key: str) -> None:
        """Receive this room's events (first local interest); never raises for Redis faults."""
        await self._interest().listen(room_key)

    async def unlisten(self, room_key: str) -> None:
        """Stop receiving this room's events (last local interest gone)."""
        await self._interest().unlisten(room_key)

    async def listen_pattern(self, pattern_key: str) -> None:
        """Receive events of rooms matching this pattern key (``scope|pattern``)."""
        await self._interest().listen_pattern(pattern_key)

    async def unlisten_pattern(self, pattern_key: str) -> None:
        """Stop receiving events for this pattern key."""
        await self._interest().unlisten_pattern(pattern_key)

    # -- shared state: presence and the node registry --------------------------

    def _expires_ms(self, ttl: float) -> int:
        return int((time.time() + ttl) * 1000)

    async def presence_join(self, room_key: str, member: Member) -> None:
        """Record ``member`` in a room, valid for ``presence_ttl``."""
        await self.presence_refresh([(room_key, member)])

    async def presence_leave(self, room_key: str, connection_id: str) -> None:
        """Take a connection out of a room's presence."""
        await self._call(self.client.hdel(self.keys.presence(room_key), connection_id))

    async def presence_refresh(self, entries: Sequence[tuple[str, Member]]) -> None:
        """Write this node's entries with a fresh expiry, in one pipeline."""
        if not entries:
            return
        expires = self._expires_ms(self.presence_ttl)
        # The hash outlives its newest entry by a ttl, then goes by itself.
        keep_ms = milliseconds(2 * self.presence_ttl)
        pipeline = self.client.pipeline(transaction=False)
        for room_key, member in entries:
            key = self.keys.presence(room_key)
            pipeline.hset(key, member.connection_id, encode_member(member, self.node_id, expires))
            pipeline.pexpire(key, keep_ms)
        await self._call(pipeline.execute())

    async def _live_members(self, room_keys: Sequence[str]) -> list[list[Member]]:
        pipeline = self.client.pipeline(transaction=False)
        for room_key in room_keys:
            pipeline.hgetall(self.keys.presence(room_key))
        replies = await self._call(pipeline.execute())
        now_ms = time.time() * 1000
        rooms: list[list[Member]] = []
        stale: list[tuple[str, str]] = []
        for room_key, reply in zip(room_keys, replies, strict=True):
            members = []
            for raw_id, raw_record in reply.items():
                connection_id = raw_id.decode()
                decoded = decode_member(connection_id, raw_record.decode())
                if decoded is None or decoded[2] < now_ms:
                    stale.append((room_key, connection_id))
                else:
                    members.append(decoded[0])
            rooms.append(sorted(members, key=lambda m: m.joined_at))
        if stale:
            # Entries of nodes that died: whoever reads them first clears them.
            cleanup = self.client.pipeline(transaction=False)
            for room_key, connection_id in stale:
                cleanup.hdel(self.keys.presence(room_key), connection_id)
            await self._call(cleanup.execute())
        return rooms

    async def presence_members(self, room_key: str) -> list[Member]:
        """A room's live members on every node, oldest first."""
        return (await self._live_members([room_key]))[0]

    async def presence_counts(self, room_keys: Sequence[str]) -> Mapping[str, int]:
        """How many live members each room has, on every node."""
        if not room_keys:
            return {}
        members = await self._live_members(room_keys)
        return {key: len(found) for key, found in zip(room_keys, members, strict=True)}

    async def presence_rooms(self) -> list[str]:
        """Keys of the rooms with a presence hash (at most 10,000), on every node.

        A hash outlives its last live entry by up to ``2 * presence_ttl``:
        count the members before trusting a room found here.
        """
        return await self._call(self._presence_rooms())

    async def _presence_rooms(self) -> list[str]:
        head, tail = f"{self.keys.prefix}:{{".encode(), b"}:presence"
        found: dict[str, None] = {}  # SCAN may return a name twice
        async for name in self.client.scan_iter(match=self.keys.presence("*"), count=1_000):
            if name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail):
                found[name[len(head) : -len(tail)].decode()] = None
                if len(found) >= MAX_LISTED_ROOMS:
                    break
        return list(found)

    async def heartbeat(self, snapshot: bytes) -> None:
        """Register this node for ``node_ttl`` with its latest snapshot."""
        record = f"{self._expires_ms(self.node_ttl)} {time.time():.3f} ".encode() + snapshot
        await self._call(self.client.hset(self.keys.nodes, self.node_id, record))

    async def nodes(self) -> list[NodeRecord]:
        """The live nodes, and what each last reported."""
        # The command client returns bytes (decode_responses is off).
        reply = cast(dict[bytes, bytes], await self._call(self.client.hgetall(self.keys.nodes)))
        now_ms = time.time() * 1000
        live, dead = [], []
        for raw_id, record in reply.items():
            expires, seen_at, snapshot = record.split(b" ", 2)
            if int(expires) < now_ms:
                dead.append(raw_id)
            else:
                live.append(NodeRecord(raw_id.decode(), float(seen_at), snapshot))
        if dead:
            await self._call(self.client.hdel(self.keys.nodes, *dead))
        return sorted(live, key=lambda n: n.node_id)
