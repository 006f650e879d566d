"""Presence on every node: this node's members shared through the broker, read back whole.

With a shared broker (Redis), each node writes its connections' room
memberships to the shared state, keeps them alive, and reads a room's
members from there, so presence spans the cluster. Every step is best
effort: while the shared state cannot be reached, a room's members are this
node's own, and the next refresh writes what was missed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .brokers import Broker
from .errors import BrokerError
from .presence import ConnectionId, Member, Presence

__all__ = ["PRESENCE_CHUNK", "ClusterPresence"]

log = logging.getLogger(__name__)

#: Entries refreshed per round trip.
PRESENCE_CHUNK = 1_000


class ClusterPresence:
    """This node's presence, shared with the other nodes through the broker.

    Args:
        presence: this node's members.
        broker: the node's broker (its ``shared`` state, when it has one).
        ttl: seconds a shared entry lives unless refreshed.
    """

    def __init__(self, presence: Presence, broker: Broker, ttl: float) -> None:
        self.presence = presence
        self.broker = broker
        self.ttl = ttl

    async def members(self, room_key: str) -> list[Member]:
        """A room's members: on every node with a shared broker, else this node's.

        While the shared state cannot be read (the broker is down), this
        node's own members are the answer.
        """
        shared = self.broker.shared
        if shared is not None:
            try:
                return await shared.presence_members(room_key)
            except BrokerError as error:
                log.info("presence of %s from this node only: %s", room_key, error.message)
        return self.presence.members(room_key)

    async def share(self, room_key: str, connection_id: ConnectionId) -> None:
        """Tell the other nodes a local connection is in a room (best effort)."""
        shared, member = self.broker.shared, self.presence.member(room_key, connection_id)
        if shared is not None and member is not None:
            try:
                await shared.presence_join(room_key, member)
            except BrokerError as error:  # the next refresh writes it again
                log.info("presence join of %s not shared yet: %s", room_key, error.message)

    async def unshare(self, room_key: str, connection_id: ConnectionId) -> None:
        """Tell the other nodes a local connection left a room (best effort)."""
        if self.broker.shared is not None:
            try:
                await self.broker.shared.presence_leave(room_key, connection_id)
            except BrokerError as error:  # the entry expires by itself
                log.info("presence leave of %s not shared: %s", room_key, error.message)

    async def keep_alive(self, closing: Callable[[], bool]) -> None:
        """Keep this node's entries alive in the shared state, until ``closing()``."""
        shared = self.broker.shared
        interval = self.ttl / 3
        while shared is not None and not closing():
            await asyncio.sleep(interval)
            entries = self.presence.entries()
            for start in range(0, len(entries), PRESENCE_CHUNK):
                try:
                    await shared.presence_refresh(entries[start : start + PRESENCE_CHUNK])
                except BrokerError as error:  # retried at the next round
                    log.info("presence refresh failed: %s", error.message)
                    break
