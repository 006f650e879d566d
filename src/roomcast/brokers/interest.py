"""What a node listens to: rooms and pattern keys, and whether a room is wanted. Pure.

A broker that receives more than the node asked for (a pattern glob is a
superset, a cluster feed carries every room of a slot) filters with
:meth:`Interest.wants` before delivering, so the node only sees rooms it
listens to, as the :class:`~roomcast.brokers.broker.Broker` protocol says.
"""

from __future__ import annotations

from ..rooms import Room, RoomPattern, parse_pattern

__all__ = ["ANY_SCOPE", "Interest"]

ANY_SCOPE = "*"  # pattern keys of platform callers: rooms of every tenant
# Decisions are cached per room until the interest changes; past this many
# the cache starts over.
_MAX_DECISIONS = 65_536


def _scope_matches(scope: str, room: Room) -> bool:
    # Mirrors roomcast.hub.PatternSubscription: a tenant's patterns also
    # match rooms of no tenant.
    return scope == ANY_SCOPE or room.tenant is None or room.tenant == scope


class Interest:
    """Rooms (by key) and pattern keys (``scope|pattern``) a node listens to."""

    def __init__(self) -> None:
        self.rooms: set[str] = set()
        self.patterns: dict[str, tuple[str, RoomPattern]] = {}
        self._decisions: dict[str, bool] = {}

    def add_room(self, room_key: str) -> bool:
        """Listen to a room. Returns True when it was not listened to yet."""
        if room_key in self.rooms:
            return False
        self.rooms.add(room_key)
        self._decisions.pop(room_key, None)
        return True

    def discard_room(self, room_key: str) -> bool:
        """Stop listening to a room. Returns True when it was listened to."""
        if room_key not in self.rooms:
            return False
        self.rooms.discard(room_key)
        self._decisions.pop(room_key, None)
        return True

    def add_pattern(self, pattern_key: str) -> bool:
        """Listen to a pattern key. Returns True when it was not listened to yet.

        Raises:
            InvalidRoom: the pattern part is not a room pattern.
        """
        if pattern_key in self.patterns:
            return False
        scope, _, text = pattern_key.partition("|")
        self.patterns[pattern_key] = (scope, parse_pattern(text))
        self._decisions.clear()
        return True

    def discard_pattern(self, pattern_key: str) -> bool:
        """Stop listening to a pattern key. Returns True when it was listened to."""
        if self.patterns.pop(pattern_key, None) is None:
            return False
        self._decisions.clear()
        return True

    def wants(self, room: Room) -> bool:
        """Whether events of ``room`` are to be delivered to this node."""
        decision = self._decisions.get(room.key)
        if decision is None:
            decision = room.key in self.rooms or any(
                _scope_matches(scope, room) and pattern.matches(room.name)
                for scope, pattern in self.patterns.values()
            )
            if len(self._decisions) >= _MAX_DECISIONS:
                self._decisions.clear()
            self._decisions[room.key] = decision
        return decision
