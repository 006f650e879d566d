"""A real :class:`~roomcast.node.Node` in the test's own process, for core tests.

Runs on the memory broker, which :class:`FlakyBroker` can take "down" (its
calls then fail as the Redis broker's do when Redis is unreachable), with
:class:`FakeConnection` standing in for the WebSocket bridge's connections.
Principals for it: :func:`support.tokens.user`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from roomcast.auth import TokenVerifier
from roomcast.brokers import Draft, Publication, Published
from roomcast.brokers.memory import MemoryBroker
from roomcast.config import Settings
from roomcast.connections import Joined
from roomcast.errors import BrokerError, RoomcastError
from roomcast.node import Node
from roomcast.policy import Policy
from roomcast.presence import ConnectionId
from roomcast.rooms import Room
from support.tokens import SECRET

__all__ = ["FakeConnection", "FlakyBroker", "local_node"]


class FlakyBroker(MemoryBroker):
    """The memory broker, with a switch that makes it unreachable."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise BrokerError("the broker is unavailable; retry later")

    async def publish(self, draft: Draft) -> Published:
        self._check()
        return await super().publish(draft)

    async def publish_many(self, drafts: Sequence[Draft]) -> list[Published | RoomcastError]:
        self._check()
        return await super().publish_many(drafts)

    async def healthy(self) -> bool:
        return not self.down


@dataclass(eq=False)
class FakeConnection:
    """A live connection that records what the core does with it.

    Attributes:
        delivered: every publication, in order.
        held: room keys held and not released yet.
        released: ``(room key, after)`` of every release, in order.
        joins, lefts: what JoinRoom/LeaveRoom told the client.
        closed: the close code and reason, once closed.
    """

    id: ConnectionId
    delivered: list[Publication] = field(default_factory=list)
    held: set[str] = field(default_factory=set)
    released: list[tuple[str, int | None]] = field(default_factory=list)
    joins: list[Joined] = field(default_factory=list)
    lefts: list[Room] = field(default_factory=list)
    closed: tuple[int, str] | None = None

    def deliver(self, publications: Sequence[Publication]) -> None:
        self.delivered.extend(publications)

    def hold(self, room_key: str) -> None:
        self.held.add(room_key)

    def release(self, room_key: str, after: int | None) -> None:
        self.held.discard(room_key)
        self.released.append((room_key, after))

    def joined(self, joined: Joined) -> None:
        self.joins.append(joined)

    def left(self, room: Room) -> None:
        self.lefts.append(room)

    def disconnect(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def __hash__(self) -> int:
        return id(self)


async def local_node(broker: MemoryBroker | None = None, **settings: Any) -> Node:
    """A node on ``broker`` (a new memory broker by default) that delivers, unstarted.

    Its background tasks (monitor, sweep) do not run: tests drive them.
    """
    node = Node(
        Settings(jwt_secret=SECRET, **settings),
        Policy(),
        TokenVerifier(secret=SECRET),
        broker or MemoryBroker(),
    )
    await node.broker.start(node._fan_out)
    return node
