"""The Redis broker's receiving side: pub/sub connections that survive Redis faults.

One :class:`Listener` per node owns one pub/sub connection per shard (one in
all for a single server) and subscribes there to exactly what the node
listens to: a channel per room, and per pattern either ``PSUBSCRIBE`` globs
(one server) or every slot's feed channel (a cluster; see
:mod:`.keys`).

Faults: a connection that fails, closes, or stops answering pings ends the
*session*; every connection is closed, and after a backoff with jitter the
listener connects again (re-reading a cluster's slot map), subscribes to
everything the node listens to at that moment, and delivery resumes. Events
published in between are lost to live delivery, as the broker protocol
allows; subscribers recover them from history by position. Expected faults
are counted in :class:`ListenerStats`; anything else propagates to the
supervisor that runs :meth:`Listener.run`, which logs, counts and restarts it.

A cluster's shards share one session: a primary that is down leaves its
slots uncovered, and a cluster that requires full coverage (Redis's
default) then refuses every command anyway. When a slot moves (resharding,
failover), Redis unsubscribes its shard channels itself; if the node still
wants one, the session starts over on the new slot map.

Duplicates: Redis sends one copy of a message per matching subscription of
a connection (a room channel *and* a pattern, two overlapping patterns), and
sends those copies back to back. Events are never byte-identical (each body
has its own event id), so a message equal to the one just before it on the
same connection is a copy, and is dropped: live delivery stays at most once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisClusterException, RedisError

from ...rooms import Room
from ...wire import epoch_field, offset_field
from ..backoff import Backoff
from ..interest import Interest
from ..values import Deliver, Publication
from .envelope import decode_parts
from .keys import SLOTS, KeySpace

__all__ = ["DEFAULT_PING_INTERVAL", "Listener", "ListenerStats", "Topology"]

log = logging.getLogger(__name__)

DEFAULT_PING_INTERVAL = 5.0
# Pings a connection may leave unanswered before it counts as dead.
_MISSED_PINGS = 2
# Channels per SUBSCRIBE when subscribing in bulk (one server only: a
# cluster takes one slot per SSUBSCRIBE).
_BULK = 512
_MAX_ROOMS_CACHED = 65_536
# Faults of Redis or of the network, as opposed to bugs. (redis-py's cluster
# errors such as "slot not covered" do not derive from RedisError.)
FAULTS: tuple[type[BaseException], ...] = (
    RedisError,
    RedisClusterException,
    OSError,
    asyncio.TimeoutError,
)

Command = tuple[Any, ...]


class _SlotsMoved(ConnectionError):
    """A cluster slot moved: the session ends to subscribe where it is now."""


class Topology(Protocol):
    """Where pub/sub connections go, and which one carries a channel."""

    @property
    def sharded(self) -> bool:
        """A Redis Cluster: shard channels (SSUBSCRIBE), one connection per primary."""

    async def discover(self) -> list[str]:
        """Names of the endpoints to connect to now (a cluster re-reads its slot map)."""

    def connection(self, name: str) -> AbstractConnection:
        """A new, unconnected pub/sub connection to endpoint ``name``."""

    def owner(self, channel: bytes) -> str:
        """The endpoint that carries ``channel``."""


@dataclass(slots=True)
class ListenerStats:
    """Counters of the receiving side, for metrics.

    Attributes:
        connects: pub/sub sessions established.
        reconnects: sessions established after a lost session, a failed
            attempt, or a moved slot.
        failures: sessions lost or attempts failed (Redis down or restarting).
        received: event messages read.
        duplicates: copies dropped (a room reached through two subscriptions).
        unwanted: events of rooms not listened to (glob and feed supersets).
        undecodable: messages that were not an envelope of this version.
    """

    connects: int = 0
    reconnects: int = 0
    failures: int = 0
    received: int = 0
    duplicates: int = 0
    unwanted: int = 0
    undecodable: int = 0


class _Link:
    """One pub/sub connection: writes commands, reads replies and messages."""

    def __init__(self, name: str, connection: AbstractConnection, listener: Listener) -> None:
        self.name = name
        self.connection = connection
        self.listener = listener
        self.ready = False  # the session's subscriptions were written
        self.last: bytes | None = None  # the last message, to drop its copies
        self._pongs: deque[asyncio.Future[None]] = deque()

    async def send(self, commands: Sequence[Command], *, confirm: float | None = None) -> None:
        """Write ``commands`` in one go; with ``confirm``, wait that long for Redis to run them.

        Replies come in order, so the answer to a PING written after the
        commands confirms them all. Never raises: a broken connection ends
        the session, and the next one subscribes to everything anyway.
        """
        waiter: asyncio.Future[None] | None = None
        if confirm is not None:
            commands = [*commands, ("PING",)]
            waiter = asyncio.get_running_loop().create_future()
            self._pongs.append(waiter)
        if not self.connection.is_connected:
            # Closed with its session; sending would open an unsubscribed
            # connection behind the listener's back.
            return
        try:
            # Written before the first await: commands of concurrent callers
            # reach Redis in the order of the calls.
            await self.connection.send_packed_command(
                self.connection.pack_commands(commands), check_health=False
            )
            if waiter is not None:
                await asyncio.wait_for(asyncio.shield(waiter), confirm)
        except FAULTS as error:
            log.debug("pub/sub command on %s not confirmed: %r", self.name, error)

    async def read(self, ping_interval: float) -> None:
        """Read until the connection fails (raises) or stops answering pings."""
        unanswered = 0
        read = self.connection.read_response
        on_message = self.listener.on_message
        while True:
            response = await read(timeout=ping_interval)
            if response is None:
                # Silence: ask. A connection that lets pings go unanswered
                # is dead even if the socket says otherwise.
                if unanswered >= _MISSED_PINGS:
                    raise ConnectionError(f"Redis at {self.name} stopped answering pings")
                unanswered += 1
                self._pongs.append(asyncio.get_running_loop().create_future())
                await self.connection.send_command("PING", check_health=False)
                continue
            unanswered = 0
            if isinstance(response, list):
                kind = response[0]
                if kind == b"message" or kind == b"smessage":
                    on_message(self, response[2])
                elif kind == b"pmessage":
                    on_message(self, response[3])
                elif kind == b"pong":
                    self._pong()
                elif kind == b"sunsubscribe":
                    self.listener.on_shard_unsubscribed(response[1])
                # Other confirmations need nothing.
            elif response == b"PONG":  # a connection with no subscriptions
                self._pong()

    def _pong(self) -> None:
        if self._pongs:
            waiter = self._pongs.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def close(self) -> None:
        self.ready = False
        # Release whoever waits for a confirmation (without an error: the
        # next session subscribes to everything anyway). Cancelling would
        # cancel the caller, a Subscribe call, instead.
        for waiter in self._pongs:
            if not waiter.done():
                waiter.set_result(None)
        self._pongs.clear()
        with contextlib.suppress(*FAULTS):
            await self.connection.disconnect(nowait=True)


class Listener:
    """Subscribes a node to rooms and patterns in Redis and delivers their events.

    Args:
        topology: the server or cluster to connect to.
        keys: key and channel names.
        deliver: the node's callback.
        backoff: delays between connection attempts.
        ping_interval: seconds of silence before a connection is pinged.
        confirm_timeout: seconds :meth:`listen` waits for Redis to confirm.
    """

    def __init__(
        self,
        topology: Topology,
        keys: KeySpace,
        deliver: Deliver,
        *,
        backoff: Backoff | None = None,
        ping_interval: float = DEFAULT_PING_INTERVAL,
        confirm_timeout: float = 5.0,
    ) -> None:
        self.topology = topology
        self.keys = keys
        self.interest = Interest()
        self.stats = ListenerStats()
        self.connected = False
        self._deliver: Deliver | None = deliver
        self._backoff = backoff or Backoff()
        self._ping_interval = ping_interval
        self._confirm = confirm_timeout
        self._links: dict[str, _Link] = {}
        self._globs: set[bytes] = set()
        self._rooms: dict[str, Room] = {}
        self._pending: list[Publication] = []
        self._flush_scheduled = False
        self._resync = asyncio.Event()
        self._up = asyncio.Event()

    # -- the session loop ------------------------------------------------------

    async def run(self) -> None:
        """Connect, subscribe and deliver, reconnecting after every fault, until cancelled."""
        lost = False
        while True:
            try:
                await self._session()
            except _SlotsMoved:
                log.info("a Redis Cluster slot moved; resubscribing on the new owners")
            except FAULTS as error:
                self.stats.failures += 1
                level = logging.WARNING if self.connected or not lost else logging.DEBUG
                log.log(level, "Redis pub/sub unavailable (%r); reconnecting", error)
            finally:
                await self._close_links()
            lost = True
            await asyncio.sleep(self._backoff.next())

    async def _session(self) -> None:
        self._resync.clear()
        for name in await self.topology.discover():
            link = self._links[name] = _Link(name, self.topology.connection(name), self)
            await link.connection.connect()  # type: ignore[no-untyped-call]
        for link in self._links.values():
            # Snapshot and write with no await in between: a listen() from
            # now on sees the link ready and subscribes on its own.
            commands = self._subscriptions(link.name)
            link.ready = True
            await link.send(commands)
        if self.stats.connects:
            self.stats.reconnects += 1
            log.info("Redis pub/sub reconnected; subscriptions restored")
        self.stats.connects += 1
        self.connected = True
        self._backoff.reset()
        self._up.set()
        interval = self._ping_interval
        readers = [asyncio.create_task(link.read(interval)) for link in self._links.values()]
        resync = asyncio.create_task(self._resync.wait())
        try:
            done, _ = await asyncio.wait([*readers, resync], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not resync:
                    task.result()  # raises the fault that ended the session
            raise _SlotsMoved()
        finally:
            for task in (*readers, resync):
                task.cancel()
            await asyncio.gather(*readers, resync, return_exceptions=True)

    async def _close_links(self) -> None:
        self.connected = False
        self._up.clear()
        links, self._links = list(self._links.values()), {}
        for link in links:
            await link.close()

    async def wait_connected(self, within: float) -> bool:
        """Wait up to ``within`` seconds for a session; whether there is one."""
        try:
            await asyncio.wait_for(self._up.wait(), within)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """Deliver nothing more (the task running :meth:`run` is cancelled by its owner)."""
        self._deliver = None
        self._pending.clear()

    # -- what to subscribe -----------------------------------------------------

    def _subscriptions(self, name: str) -> list[Command]:
        """Every subscription command endpoint ``name`` needs now."""
        rooms = [self.keys.channel(key) for key in self.interest.rooms]
        if not self.topology.sharded:
            self._globs = self._pattern_globs()
            commands: list[Command] = [
                ("SUBSCRIBE", *rooms[i : i + _BULK]) for i in range(0, len(rooms), _BULK)
            ]
            globs = sorted(self._globs)
            commands += [("PSUBSCRIBE", *globs[i : i + _BULK]) for i in range(0, len(globs), _BULK)]
            return commands
        owner = self.topology.owner
        commands = [("SSUBSCRIBE", channel) for channel in rooms if owner(channel) == name]
        if self.interest.patterns:
            commands += [("SSUBSCRIBE", feed) for feed in self._feeds() if owner(feed) == name]
        return commands

    def _pattern_globs(self) -> set[bytes]:
        return {glob for key in self.interest.patterns for glob in self.keys.pattern_globs(key)}

    def _feeds(self) -> Iterable[bytes]:
        return (self.keys.feed(slot) for slot in range(SLOTS))

    def _link(self, channel: bytes) -> _Link | None:
        if not self._links:
            return None
        link = self._links.get(self.topology.owner(channel))
        if link is None:
            # The slot moved to a primary this session does not know.
            self._resync.set()
        return link if link is not None and link.ready else None

    async def _send_by_owner(self, verb: str, channels: Iterable[bytes], *, confirm: bool) -> None:
        grouped: dict[str, tuple[_Link, list[Command]]] = {}
        for channel in channels:
            link = self._link(channel)
            if link is not None:
                grouped.setdefault(link.name, (link, []))[1].append((verb, channel))
        timeout = self._confirm if confirm else None
        sends = [link.send(cmds, confirm=timeout) for link, cmds in grouped.values()]
        if len(sends) == 1:
            await sends[0]  # written at once, in the order of the calls
        elif sends:
            # Tasks start in creation order, so writes keep the calls' order.
            await asyncio.gather(*sends)

    # -- what the broker calls -------------------------------------------------

    async def listen(self, room_key: str) -> None:
        """Subscribe to a room; returns once Redis confirmed (or the wait timed out)."""
        if self.interest.add_room(room_key):
            verb = "SSUBSCRIBE" if self.topology.sharded else "SUBSCRIBE"
            await self._send_by_owner(verb, [self.keys.channel(room_key)], confirm=True)

    async def unlisten(self, room_key: str) -> None:
        """Unsubscribe from a room."""
        if self.interest.discard_room(room_key):
            verb = "SUNSUBSCRIBE" if self.topology.sharded else "UNSUBSCRIBE"
            await self._send_by_owner(verb, [self.keys.channel(room_key)], confirm=False)

    async def listen_pattern(self, pattern_key: str) -> None:
        """Subscribe to a pattern key; returns once Redis confirmed (or the wait timed out)."""
        first = not self.interest.patterns
        if not self.interest.add_pattern(pattern_key):
            return
        if self.topology.sharded:
            if first:
                await self._send_by_owner("SSUBSCRIBE", self._feeds(), confirm=True)
            return
        before, self._globs = self._globs, self._pattern_globs()
        await self._send_by_owner("PSUBSCRIBE", sorted(self._globs - before), confirm=True)

    async def unlisten_pattern(self, pattern_key: str) -> None:
        """Unsubscribe from a pattern key."""
        if not self.interest.discard_pattern(pattern_key):
            return
        if self.topology.sharded:
            if not self.interest.patterns:
                await self._send_by_owner("SUNSUBSCRIBE", self._feeds(), confirm=False)
            return
        before, self._globs = self._globs, self._pattern_globs()
        await self._send_by_owner("PUNSUBSCRIBE", sorted(before - self._globs), confirm=False)

    def on_shard_unsubscribed(self, channel: bytes) -> None:
        """A shard channel was unsubscribed: by us, or by Redis moving its slot.

        When a slot moves to another shard, Redis unsubscribes its shard
        channels itself; a channel still wanted means resubscribing
        everything where the slot map now says.
        """
        room_key = self.keys.room_of_channel(channel)
        wanted = (
            room_key in self.interest.rooms
            if room_key is not None
            else self.keys.is_feed(channel) and bool(self.interest.patterns)
        )
        if wanted:
            self._resync.set()

    # -- delivering ------------------------------------------------------------

    def on_message(self, link: _Link, message: bytes) -> None:
        """Turn one message into a publication for the node (called by the reader)."""
        if message == link.last:
            self.stats.duplicates += 1
            return
        link.last = message
        self.stats.received += 1
        try:
            room_key, epoch, events = decode_parts(message)
        except (ValueError, UnicodeDecodeError):
            self.stats.undecodable += 1
            log.warning("dropped a pub/sub message that is no envelope (%d bytes)", len(message))
            return
        # Every event of one message is of one room: look it up and ask
        # whether it is wanted once per message, not once per event.
        room = self._rooms.get(room_key)
        if room is None:
            if len(self._rooms) >= _MAX_ROOMS_CACHED:
                self._rooms.clear()
            room = self._rooms[room_key] = Room.from_key(room_key)
        if not self.interest.wants(room):
            self.stats.unwanted += 1
            return
        # One epoch per message too: its field is encoded once, and each
        # event's data is its body, its offset field and that.
        epoch_bytes = epoch_field(epoch)
        self._pending += [
            Publication(
                room,
                offset,
                epoch,
                accepted_ns,
                b"".join((body, offset_field(offset), epoch_bytes)),
                signal,
            )
            for offset, accepted_ns, body, signal in events
        ]
        if not self._flush_scheduled:
            # Everything already buffered is read before the loop runs this:
            # the node gets one call per burst, not one per message.
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        deliver = self._deliver
        if not pending or deliver is None:
            return
        try:
            deliver(pending)
        except Exception:
            # The node's fan-out must not fail; if it does, the listener is
            # not the place to die of it.
            log.exception("delivering %d events failed", len(pending))
