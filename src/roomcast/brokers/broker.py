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

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..errors import RoomcastError
from ..history import Page, Position
from ..rooms import Room
from ..wire import field_bytes, field_string, len_tag, varint, varint_tag
from .shared import SharedState

__all__ = [
    "OFFSET_TAG",
    "Broker",
    "Deliver",
    "Draft",
    "Outcome",
    "Publication",
    "Published",
    "PublishedRun",
    "Retention",
    "RoomStats",
    "epoch_field",
    "expand",
    "offset_field",
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
        signal: an ephemeral signal for a room's WebSocket members (presence,
            typing, cursor), not an event: never stored, and not sent to
            Subscribe streams. Signals are published with ``skip_history``.
    """

    room: Room
    id: str
    body: bytes
    accepted_ns: int
    retention: Retention
    skip_history: bool = False
    idempotency_key: str = ""
    signal: bool = False


# Tags of the fields brokers append or wrap (event.proto, realtime.proto).
OFFSET_TAG = varint_tag(5)  # Event.offset
_EVENTS_TAG = len_tag(1)  # SubscribeResponse.events


def offset_field(offset: int) -> bytes:
    """``Event.offset``, to append to a draft's body (nothing for offset 0)."""
    return OFFSET_TAG + varint(offset) if offset else b""


@functools.lru_cache(maxsize=1024)
def epoch_field(epoch: str) -> bytes:
    """``Event.epoch``, to append to a draft's body.

    Cached: a room's epoch rarely changes, and every event delivered from
    Redis appends it.
    """
    return field_string(6, epoch)


def position_fields(offset: int, epoch: str) -> bytes:
    """``Event.offset`` and ``Event.epoch``, to append to a draft's body."""
    return offset_field(offset) + epoch_field(epoch)


# A plain slotted class, not a NamedTuple: one is made per event, and a
# NamedTuple costs half as much again to create.
@dataclass(slots=True)
class Published:
    """Where a publish landed.

    Attributes:
        id: the event's id.
        offset: its offset (0 when kept out of history).
        epoch: the room's epoch.
        duplicate: the idempotency key was seen before; this is the first result.
    """

    id: str
    offset: int
    epoch: str
    duplicate: bool = False


@dataclass(slots=True)
class PublishedRun:
    """Where consecutive plain events of one room landed: one answer for many.

    A broker may answer a row of a batch's drafts with one run instead of a
    :class:`Published` each (the memory broker does, for a room's events
    with no idempotency key that are kept in history): the event ``ids[i]``
    took offset ``first_offset + i``. Answering a large batch then costs no
    object per event.

    Attributes:
        ids: the events' ids, in order.
        first_offset: the first event's offset.
        epoch: the room's epoch.
    """

    ids: list[str]
    first_offset: int
    epoch: str

    def expand(self) -> list[Published]:
        """The run as one result per event."""
        first, epoch = self.first_offset, self.epoch
        return [Published(event_id, first + i, epoch) for i, event_id in enumerate(self.ids)]


# What publish_many answers, in order: a run stands for as many drafts as it has ids.
Outcome = Published | PublishedRun | RoomcastError


def expand(outcomes: Sequence[Outcome]) -> list[Published | RoomcastError]:
    """Outcomes with their runs spelled out: one result per draft."""
    results: list[Published | RoomcastError] = []
    for outcome in outcomes:
        if isinstance(outcome, PublishedRun):
            results += outcome.expand()
        else:
            results.append(outcome)
    return results


class Publication:
    """A published event on its way to local recipients, encoded once.

    Attributes:
        room: the room.
        offset: its offset (0 when kept out of history).
        epoch: the room's epoch.
        accepted_ns: when the node that published it accepted it (wall clock
            nanoseconds), for publish-to-deliver latency.
        data: the encoded ``Event``.
        signal: an ephemeral signal, not an event (see :class:`Draft`).
        ws_frame: the WebSocket bridge's encoding of it (the frame, and the
            connection a signal came from), made once by the first
            connection that sends it and shared by the others.
    """

    __slots__ = (
        "_grpc_frame",
        "accepted_ns",
        "data",
        "epoch",
        "offset",
        "room",
        "signal",
        "ws_frame",
    )

    def __init__(
        self,
        room: Room,
        offset: int,
        epoch: str,
        accepted_ns: int,
        data: bytes,
        signal: bool = False,
    ) -> None:
        self.room = room
        self.offset = offset
        self.epoch = epoch
        self.accepted_ns = accepted_ns
        self.data = data
        self.signal = signal
        self._grpc_frame: bytes | None = None
        self.ws_frame: tuple[bytes, str] | None = None

    @property
    def grpc_frame(self) -> bytes:
        """This event as a ``SubscribeResponse`` frame, encoded once for every stream."""
        frame = self._grpc_frame
        if frame is None:
            data = self.data
            frame = self._grpc_frame = b"".join((_EVENTS_TAG, varint(len(data)), data))
        return frame


@dataclass(frozen=True, slots=True)
class RoomStats:
    """What the broker knows of a room."""

    room: Room
    position: Position
    history_size: int


# Called with events in the order the broker delivers them; a room's events
# are in offset order (a batch may span rooms).
Deliver = Callable[[Sequence[Publication]], None]


class Broker(Protocol):
    """Assigns offsets, keeps history, and carries events between nodes.

    Attributes:
        shared: presence and the node registry shared with the other nodes,
            or None when the broker connects no other node.
    """

    shared: SharedState | None

    async def start(self, deliver: Deliver) -> None:
        """Connect, and from now on call ``deliver`` with every event listened to.

        ``deliver`` takes a sequence, so a broker that receives events in
        bulk hands them over in one call.
        """

    async def close(self) -> None:
        """Stop delivering and release every resource."""

    async def publish(self, draft: Draft) -> Published:
        """Store (unless skipped) and deliver one event.

        Raises:
            BrokerError: the broker could not take the event.
        """

    async def publish_many(self, drafts: Sequence[Draft]) -> Sequence[Outcome]:
        """Publish several events in order; each succeeds or fails on its own.

        One outcome per draft, except that a :class:`PublishedRun` answers
        for as many consecutive drafts as it has ids.
        """

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
