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

from collections.abc import Sequence
from typing import Protocol

from ..history import Page, Position
from ..rooms import Room
from .shared import SharedState
from .values import Deliver, Draft, Outcome, Published, Retention, RoomStats

__all__ = ["Broker"]


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
