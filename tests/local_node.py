"""A real :class:`~roomcast.node.Node` in the test's own process, for core tests.

Runs on the memory broker, which :class:`FlakyBroker` can take "down" (its
calls then fail as the Redis broker's do when Redis is unreachable), with
:class:`FakeConnection` standing in for the WebSocket bridge's connections.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from roomcast.auth import Principal, TokenVerifier, mint_token
from roomcast.brokers import Draft, Publication, Published
from roomcast.brokers.memory import MemoryBroker
from roomcast.config import Settings
from roomcast.errors import BrokerError, RoomcastError
from roomcast.node import Node
from roomcast.policy import Policy
from roomcast.presence import ConnectionId
from roomcast.rooms import Room
from roomcast.sessions import Joined

__all__ = ["FakeConnection", "FlakyBroker", "local_node", "user"]

SECRET = "test-secret-0123456789abcdef0123456789"


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
    """A live connection that records what the core does with it."""

    id: ConnectionId
    delivered: list[Publication] = field(default_factory=list)
    closed: tuple[int, str] | None = None

    def deliver(self, publications: Sequence[Publication]) -> None:
        self.delivered.extend(publications)

    def hold(self, room_key: str) -> None:
        pass

    def release(self, room_key: str, after: int | None) -> None:
        pass

    def joined(self, joined: Joined) -> None:
        pass

    def left(self, room: Room) -> None:
        pass

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


def user(sub: str, tenant: str = "acme") -> Principal:
    """A user's principal, valid for an hour."""
    token = mint_token(SECRET, subject=sub, roles=("user",), tenant=tenant, ttl=3600)
    return TokenVerifier(secret=SECRET).verify(token)
