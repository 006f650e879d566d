"""What the soak benchmark's processes share: rooms, payloads, and the record of a run.

- the rooms: per tenant ``chat.c*`` and ``document.d*.collaboration``, the
  shared ``global.g*``, and each user's own rooms;
- payloads that check themselves (:func:`payload`, :func:`payload_problem`):
  a blob of mixed ASCII and multi-byte text with its CRC-32, the room and
  tenant it was published to, and optionally a chain of nested objects;
- what every process hands back to ``soak.py``: :class:`Ack` (a publish the
  server acknowledged with an offset), :class:`Segment` (a stretch of
  membership in one room) and :class:`Member` (what one well-behaved client
  or Subscribe stream received).

A room is known by its :data:`RoomKey`, ``(scope, room, epoch)``: the scope
is the tenant for a tenant's room and ``""`` for a ``global.*`` room (one
room for every tenant).
"""

from __future__ import annotations

import random
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CHATS",
    "DOCUMENTS",
    "EVENTS",
    "GLOBALS",
    "ROOMS_PER_TENANT",
    "Ack",
    "Member",
    "RoomKey",
    "Segment",
    "nested",
    "own_rooms",
    "payload",
    "payload_problem",
    "publishable",
    "scope_of",
    "tenants",
]

RoomKey = tuple[str, str, str]  # (scope, room, epoch)
#: The events the soak publishes (the server makes others: metrics, health).
EVENTS = frozenset({"chat.message", "backend.update", "x.deep"})

CHATS = [f"chat.c{n}" for n in range(4)]
DOCUMENTS = [f"document.d{n}.collaboration" for n in range(2)]
GLOBALS = ["global.g0", "global.g1"]
#: The rooms well-behaved clients choose from (a tenant's, and the shared ones).
ROOMS_PER_TENANT = CHATS + DOCUMENTS + GLOBALS
BIG = 58_000  # characters: a payload of about 60 KB, under the 64 KiB limit
# Multi-byte text in every blob: 2-, 3- and 4-byte UTF-8 (and JSON escapes).
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 " * 6 + 'é✓𝄞"\\/\t'
_POOL = "".join(random.Random(7).choices(_ALPHABET, k=150_000))


def tenants(count: int) -> list[str]:
    return [f"t{n}" for n in range(count)]


def scope_of(room: str, tenant: str) -> str:
    """The scope of ``room`` as ``tenant``'s caller names it."""
    return "" if room.startswith("global.") else tenant


def own_rooms(user: str, tenant: str) -> list[str]:
    """The rooms a user's connection is in from the start (docs/protocol.md)."""
    return [
        f"user.{user}.private",
        f"user.{user}.notifications",
        f"tenant.{tenant}.users",
        f"tenant.{tenant}.notifications",
    ]


def publishable(room: str) -> bool:
    """Whether a member may send to ``room`` (typing, cursor, send_message)."""
    return room.startswith(("chat.", "document.", "global."))


# -- payloads -------------------------------------------------------------------


def nested(levels: int, leaf: Any = 1) -> Any:
    """``levels`` objects, each inside the last: ``{"n": {"n": ... leaf}}``."""
    value = leaf
    for _ in range(levels):
        value = {"n": value}
    return value


def payload(
    rng: random.Random,
    key: str,
    targets: list[tuple[str, str]],
    *,
    big: float = 0.0,
    size: int | None = None,
    depth: int | None = None,
) -> dict[str, Any]:
    """An event payload that checks itself.

    Args:
        rng: where the blob is cut from the pool, and its size and depth drawn.
        key: unique per publish (publisher and sequence).
        targets: the ``(scope, room)`` pairs it is published to (the scope
            is the tenant the publisher meant, "" for a global room).
        big: the chance of a blob of about 60 KB (else mostly a few hundred
            bytes, now and then a few KB).
        size: the blob's length in characters (its UTF-8 is a few % longer),
            instead of a drawn one.
        depth: the payload's nesting, instead of a drawn one: 1 is a flat
            object, 32 the most allowed (each object inside adds a level).
    """
    if size is None:
        roll = rng.random()
        size = (
            BIG if roll < big else rng.randint(1000, 4000) if roll < 0.15 else rng.randint(0, 400)
        )
    if depth is None:
        depth = rng.randint(2, 32) if rng.random() < 0.05 else 1
    start = rng.randrange(len(_POOL) - size)
    blob = _POOL[start : start + size]
    data: dict[str, Any] = {
        "k": key,
        # A message sent to several rooms names them all ("|"), with their scopes.
        "scope": "|".join(scope for scope, _ in targets),
        "room": "|".join(room for _, room in targets),
        "crc": zlib.crc32(blob.encode()),
        "blob": blob,
    }
    if depth > 1:
        data["nest"] = nested(depth - 1)
    return data


def payload_problem(data: Any, scope: str, room: str) -> str | None:
    """What is wrong with a received payload, or None.

    Args:
        data: the payload as received (a dict; from gRPC, a Struct's items).
        scope: the scope the receiver is in.
        room: the room it came in.
    """
    try:
        blob, crc = data["blob"], data["crc"]
        if zlib.crc32(str(blob).encode()) != int(crc):
            return "blob does not match its CRC-32"
        rooms, scopes = str(data["room"]).split("|"), str(data["scope"]).split("|")
        if room not in rooms:
            return f"published to {data['room']!r}, received in {room!r}"
        if scopes[rooms.index(room)] != scope:
            return f"published in scope {data['scope']!r}, received in {scope!r} (isolation)"
        if str(data["k"]).startswith("bad:"):
            return "an event the server should have refused was delivered"
    except (KeyError, TypeError, ValueError) as error:
        return f"malformed payload ({type(error).__name__}: {error})"
    return None


# -- the record of a run -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ack:
    """A stored event the server acknowledged.

    Attributes:
        key: the event's room.
        offset: its offset there.
        id: its id ("" when the acknowledgement does not carry it).
        time: when the acknowledgement arrived (``time.monotonic()``).
        source: ``ws`` (message_sent), ``publish`` or ``batch`` (gRPC).
    """

    key: RoomKey
    offset: int
    id: str
    time: float
    source: str


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of one member's time in a room.

    The member must receive every acknowledged event of the room with an
    offset after ``start`` up to the segment's bound: ``top`` (live events
    come in offset order, so everything before the last one received is
    owed), and every event acknowledged before ``end`` (less the broker's
    grace) — the member sent a ``ping`` at ``end`` and read its ``pong``
    before leaving. ``end`` is ``inf`` for a member still there when the
    run ended, ``-inf`` when the connection closed unasked.
    """

    key: RoomKey
    start: int
    top: int
    end: float


@dataclass(slots=True)
class Member:
    """What one well-behaved client, or one Subscribe stream, received.

    Attributes:
        name: for the report.
        kind: ``ws`` or ``grpc``.
        segments: its stretches of membership.
        received: deliveries by room and offset (a count above 1 is a
            duplicate).
        resumed: offsets that came in ``missed`` (recovered by a resume).
        overlaps: deliveries the protocol allows twice (a rejoin of a room
            the connection was in: docs/protocol.md), not counted above.
        patterns: for a Subscribe stream, the patterns and scope (None: any
            tenant) it covers from the start of the run.
    """

    name: str
    kind: str
    segments: list[Segment] = field(default_factory=list)
    received: dict[RoomKey, Counter[int]] = field(default_factory=dict)
    resumed: dict[RoomKey, set[int]] = field(default_factory=dict)
    overlaps: int = 0
    patterns: tuple[list[str], str | None] | None = None

    def receive(self, key: RoomKey, offset: int, *, resumed: bool = False) -> None:
        counts = self.received.get(key)
        if counts is None:
            counts = self.received[key] = Counter()
        counts[offset] += 1
        if resumed:
            self.resumed.setdefault(key, set()).add(offset)
