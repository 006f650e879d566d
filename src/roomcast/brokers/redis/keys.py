"""Names of the Redis broker's keys and channels. Pure: no I/O.

Every name of a room carries the room's key as a Redis Cluster *hash tag*
(the part in braces decides the slot), so a room's history, position,
idempotency keys and channel all live on one shard and one Lua script can
touch them together::

    {prefix}:{<room key>}:meta        hash: epoch, top offset, size, ttl
    {prefix}:{<room key>}:log         stream: one entry per stored event, id <offset>-0
    {prefix}:{<room key>}:idem:<key>  string: "<offset> <epoch> <id>" of the first publish
    {prefix}:{<room key>}:presence    hash: connection id -> presence record (shared.py)
    {prefix}:{<room key>}:events      channel: every event of the room

Room keys are dot-separated segments of ``[A-Za-z0-9_-]``, optionally after
``<tenant>:`` (see :class:`roomcast.rooms.Room`), so they never contain a
brace, a space or a glob character, and a name cannot be mistaken for
another's.

Patterns: on one server a pattern is subscribed as ``PSUBSCRIBE`` globs over
the room channels (:meth:`KeySpace.pattern_globs`, a superset filtered
exactly on the node). A Redis Cluster has no sharded pattern subscription,
so there each slot has a *feed* channel, ``{prefix}:feed:{<tag>}``, whose
tag hashes to that slot (:func:`slot_tag`); an event is also published to
its slot's feed, on its own shard, only while some node follows patterns.
"""

from __future__ import annotations

import binascii
import functools

from ...rooms import Room

__all__ = ["SLOTS", "KeySpace", "pattern_glob", "slot_of", "slot_tag"]

SLOTS = 16384  # Redis Cluster hash slots


def slot_of(name: bytes) -> int:
    """The cluster slot of a key or shard channel name (hash tags honoured).

    Redis Cluster spec: "HASH_SLOT = CRC16(key) mod 16384", over the part
    between the first ``{`` and the next ``}`` when that part is not empty.
    """
    start = name.find(b"{")
    if start != -1:
        end = name.find(b"}", start + 1)
        if end > start + 1:
            name = name[start + 1 : end]
    return binascii.crc_hqx(name, 0) % SLOTS


@functools.cache
def _slot_tags() -> tuple[str, ...]:
    # The shortest hex strings covering every slot: ~300,000 CRCs, once.
    tags: list[str | None] = [None] * SLOTS
    missing = SLOTS
    number = 0
    while missing:
        tag = format(number, "x")
        slot = binascii.crc_hqx(tag.encode(), 0) % SLOTS
        if tags[slot] is None:
            tags[slot] = tag
            missing -= 1
        number += 1
    return tuple(tag for tag in tags if tag is not None)


def slot_tag(slot: int) -> str:
    """A short hash tag that lands in ``slot``."""
    return _slot_tags()[slot]


def pattern_glob(pattern: str) -> str:
    """A Redis glob matching every room name ``pattern`` matches (and maybe more).

    ``*`` in a Redis glob crosses dots, so ``chat.*`` also matches
    ``chat.a.b``; the node filters exactly.
    """
    return ".".join("*" if segment in ("*", "**") else segment for segment in pattern.split("."))


class KeySpace:
    """Key and channel names under one prefix.

    Args:
        prefix: the first part of every name (see :mod:`.url`).
    """

    __slots__ = ("_feeds", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._feeds: dict[int, bytes] = {}

    def _room(self, room_key: str, part: str) -> str:
        return f"{self.prefix}:{{{room_key}}}:{part}"

    def meta(self, room_key: str) -> str:
        """The room's position hash (epoch, top offset, retention)."""
        return self._room(room_key, "meta")

    def log(self, room_key: str) -> str:
        """The room's history stream."""
        return self._room(room_key, "log")

    def idempotency(self, room_key: str, key: str) -> str:
        """Where the first result of a publish with idempotency ``key`` is kept."""
        return self._room(room_key, f"idem:{key}")

    def presence(self, room_key: str) -> str:
        """The room's presence hash: connection id → record (see :mod:`.shared`)."""
        return self._room(room_key, "presence")

    @property
    def nodes(self) -> str:
        """The node registry hash: node id → record."""
        return f"{self.prefix}:nodes"

    def channel(self, room_key: str) -> bytes:
        """The room's pub/sub channel (a shard channel on a cluster)."""
        return self._room(room_key, "events").encode()

    def room_of_meta(self, name: bytes) -> str | None:
        """The room key of a ``meta`` key name, or None for any other name."""
        head, tail = f"{self.prefix}:{{".encode(), b"}:meta"
        if name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail):
            return name[len(head) : -len(tail)].decode()
        return None

    def room_of_channel(self, name: bytes) -> str | None:
        """The room key of a room channel name, or None for any other name."""
        head, tail = f"{self.prefix}:{{".encode(), b"}:events"
        if name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail):
            return name[len(head) : -len(tail)].decode()
        return None

    def is_feed(self, name: bytes) -> bool:
        """Whether ``name`` is one of the cluster's feed channels."""
        return name.startswith(f"{self.prefix}:feed:{{".encode())

    @property
    def meta_glob(self) -> str:
        """A SCAN ``MATCH`` glob for every room's meta key."""
        return f"{self.prefix}:{{*}}:meta"

    def pattern_globs(self, pattern_key: str) -> tuple[bytes, ...]:
        """``PSUBSCRIBE`` globs covering the channels of rooms a pattern key matches.

        Args:
            pattern_key: ``scope|pattern`` as :attr:`roomcast.hub.PatternSubscription.key`
                makes it: scope ``*`` is every tenant, empty is rooms of no
                tenant, anything else is one tenant (and rooms of no tenant).
        """
        scope, _, pattern = pattern_key.partition("|")
        glob = pattern_glob(pattern)
        globs = [self._room(glob, "events")]
        if scope:
            globs.append(self._room(f"{scope}:{glob}", "events"))
        return tuple(g.encode() for g in globs)

    def feed(self, slot: int) -> bytes:
        """The feed channel of a cluster slot (events of every room in it)."""
        name = self._feeds.get(slot)
        if name is None:
            name = self._feeds[slot] = f"{self.prefix}:feed:{{{slot_tag(slot)}}}".encode()
        return name

    def feed_of(self, room: Room) -> bytes:
        """The feed channel on the slot of ``room``."""
        return self.feed(slot_of(self.meta(room.key).encode()))
