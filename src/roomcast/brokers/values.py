"""The values brokers take and give: drafts, retention, outcomes, publications.

Plain values; the :class:`~roomcast.brokers.broker.Broker` protocol beside
them says what a broker does with them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import RoomcastError
from ..history import Position
from ..rooms import Room
from ..wire import EVENTS_TAG, varint

__all__ = [
    "Deliver",
    "Draft",
    "Outcome",
    "Publication",
    "Published",
    "PublishedRun",
    "Retention",
    "RoomStats",
    "expand",
]


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
            frame = self._grpc_frame = b"".join((EVENTS_TAG, varint(len(data)), data))
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
