"""The broker interface: where events get their offsets, are stored, and travel.

A node hands every publish to its broker; the broker assigns the room's next
offset, keeps the event in the room's history, and calls the node's
``deliver`` callback for every event of every room or pattern the node listens
to (its own publishes included). The node then fans out locally.

Delivery guarantee (every implementation keeps it):

- Offsets of a room's stored events start at 1 and increase by exactly 1, in
  the order the broker accepted the publishes, across all nodes.
- Live delivery is at most once and in offset order per room: a node sees a
  room's events in the order of their offsets, never twice. An event can be
  lost to live delivery (a node reconnecting to Redis, say); subscribers then
  see a gap in offsets and recover it from history by position.
- History keeps the last ``retention.size`` events of a room for at most
  ``retention.ttl`` seconds. When a room's history is lost entirely the epoch
  changes, so stale positions are recognised instead of misread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ..errors import RoomcastError
from ..history import Page, Position
from ..rooms import Room
from ..wire import field_bytes, field_string, field_varint

__all__ = [
    "Broker",
    "Deliver",
    "Draft",
    "Publication",
    "Published",
    "Retention",
    "RoomStats",
    "position_fields",
    "subscribe_frame",
]


def subscribe_frame(data: bytes) -> bytes:
    """A ``SubscribeResponse`` carrying the one encoded ``Event`` ``data``.

    Repeated fields append when encodings are concatenated, so joining
    frames yields one response carrying all their events.
    """
    return field_bytes(1, data)  # SubscribeResponse.events


@dataclass(frozen=True, slots=True)
class Retention:
    """How much history a room keeps."""

    size: int
    ttl: float


@dataclass(slots=True)
class Draft:
    """An event ready to publish, before the broker gives it a position.

    Attributes:
        room: where it goes.
        id: the event's id.
        body: the encoded ``Event`` with every field but ``offset`` and
            ``epoch``; the broker appends those two fields (see
            :func:`position_fields`), so the event is encoded only once.
        accepted_ns: when the node accepted it (wall clock nanoseconds).
        retention: the room's history limits.
        skip_history: keep it out of history (it then has offset 0).
        idempotency_key: publish once per key and room within the ttl.
    """

    room: Room
    id: str
    body: bytes
    accepted_ns: int
    retention: Retention
    skip_history: bool = False
    idempotency_key: str = ""


def position_fields(offset: int, epoch: str) -> bytes:
    """``Event.offset`` and ``Event.epoch``, to append to a draft's body."""
    offset_field = field_varint(5, offset) if offset else b""
    return offset_field + field_string(6, epoch)


class Published(NamedTuple):
    """Where a publish landed."""

    id: str
    offset: int
    epoch: str
    duplicate: bool = False


class Publication:
    """A published event on its way to local recipients, encoded once.

    Attributes:
        room: the room.
        offset: its offset (0 when kept out of history).
        epoch: the room's epoch.
        accepted_ns: when the node that published it accepted it (wall clock
            nanoseconds), for publish-to-deliver latency.
        data: the encoded ``Event``.
    """

    __slots__ = ("_grpc_frame", "accepted_ns", "data", "epoch", "offset", "room")

    def __init__(self, room: Room, offset: int, epoch: str, accepted_ns: int, data: bytes) -> None:
        self.room = room
        self.offset = offset
        self.epoch = epoch
        self.accepted_ns = accepted_ns
        self.data = data
        self._grpc_frame: bytes | None = None

    @property
    def grpc_frame(self) -> bytes:
        """This event as a ``SubscribeResponse`` frame, encoded once for every stream."""
        frame = self._grpc_frame
        if frame is None:
            frame = self._grpc_frame = field_bytes(1, self.data)
        return frame


@dataclass(frozen=True, slots=True)
class RoomStats:
    """What the broker knows of a room."""

    room: Room
    position: Position
    history_size: int


Deliver = Callable[[Publication], None]


class Broker(Protocol):
    """Assigns offsets, keeps history, and carries events between nodes."""

    async def start(self, deliver: Deliver) -> None:
        """Connect, and from now on call ``deliver`` for every event listened to."""

    async def close(self) -> None:
        """Stop delivering and release every resource."""

    async def publish(self, draft: Draft) -> Published:
        """Store (unless skipped) and deliver one event.

        Raises:
            BrokerError: the broker could not take the event.
        """

    async def publish_many(self, drafts: Sequence[Draft]) -> list[Published | RoomcastError]:
        """Publish several events in order; each succeeds or fails on its own."""

    async def read(
        self, room: Room, since: Position | None, limit: int, retention: Retention
    ) -> Page[bytes]:
        """Encoded events of ``room`` after ``since``, oldest first."""

    async def listen(self, room_key: str) -> None:
        """Deliver events of this room to this node (first local interest)."""

    async def unlisten(self, room_key: str) -> None:
        """Stop delivering events of this room (last local interest gone)."""

    async def listen_pattern(self, pattern_key: str) -> None:
        """Deliver events of rooms matching this pattern key."""

    async def unlisten_pattern(self, pattern_key: str) -> None:
        """Stop delivering events for this pattern key."""

    async def rooms(self) -> list[RoomStats]:
        """Rooms that have a history."""

    async def healthy(self) -> bool:
        """Whether the broker is reachable now."""
