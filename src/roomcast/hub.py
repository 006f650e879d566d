"""The pure core of fan-out: who on this node wants the events of which room.

No I/O and no awaits. A recipient is any hashable object the shells own (a
Subscribe stream, a WebSocket connection); the hub only answers "who gets an
event of this room" and reports the first and last local interest in a room
or pattern, so the broker can listen for it once per node, reference-counted.

The answer for a room (its *plan*) is computed once and cached until the
subscriptions that feed it change, so fan-out costs one dict lookup per event.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .rooms import Room, RoomPattern, TenantId

__all__ = ["ANY_TENANT", "MAX_CACHED_PLANS", "Hub", "PatternSubscription"]

R = TypeVar("R", bound=Hashable)

# Plans are cached per room published to; past this many the cache starts
# over, so publishing to ever new rooms cannot grow it without bound.
MAX_CACHED_PLANS = 65_536


class _AnyTenant:
    """Scope of a platform-level pattern subscription: rooms of every tenant."""

    def __repr__(self) -> str:
        return "ANY_TENANT"


ANY_TENANT = _AnyTenant()


@dataclass(frozen=True, slots=True, eq=False)
class PatternSubscription(Generic[R]):
    """A recipient following every room whose name matches a pattern.

    Attributes:
        pattern: the compiled pattern.
        tenant: rooms of this tenant and rooms of no tenant match; with
            :data:`ANY_TENANT`, rooms of every tenant match.
        recipient: who receives.
        permits: the policy's final word on each matched room (a tenant user's
            ``user.*.private`` must still match only their own room).
    """

    pattern: RoomPattern
    tenant: TenantId | _AnyTenant | None
    recipient: R
    permits: Callable[[Room], bool] = field(repr=False)

    @property
    def key(self) -> str:
        """Identity of the pattern for the broker: the same for equal scopes."""
        scope = "*" if self.tenant is ANY_TENANT else (self.tenant or "")
        return f"{scope}|{self.pattern.text}"

    def matches(self, room: Room) -> bool:
        """Whether this subscription wants the events of ``room``."""
        if self.tenant is not ANY_TENANT and room.tenant not in (None, self.tenant):
            return False
        return self.pattern.matches(room.name) and self.permits(room)


class Hub(Generic[R]):
    """Local subscriptions by room and by pattern, with cached fan-out plans."""

    def __init__(self) -> None:
        self._exact: dict[str, dict[R, Room]] = {}
        self._patterns: dict[int, PatternSubscription[R]] = {}
        self._pattern_refs: dict[str, int] = {}
        self._plans: dict[str, tuple[R, ...]] = {}

    # -- exact rooms ---------------------------------------------------------

    def add(self, room: Room, recipient: R) -> bool:
        """Subscribe ``recipient`` to ``room``.

        Returns:
            True when this is the node's first local interest in the room.
        """
        members = self._exact.setdefault(room.key, {})
        first = not members
        members[recipient] = room
        self._plans.pop(room.key, None)
        return first

    def discard(self, room: Room, recipient: R) -> bool:
        """Unsubscribe ``recipient`` from ``room`` (no error when absent).

        Returns:
            True when the node no longer has local interest in the room.
        """
        members = self._exact.get(room.key)
        if members is None or members.pop(recipient, None) is None:
            return False
        self._plans.pop(room.key, None)
        if members:
            return False
        del self._exact[room.key]
        return True

    # -- patterns ------------------------------------------------------------

    def add_pattern(self, subscription: PatternSubscription[R]) -> bool:
        """Add a pattern subscription.

        Returns:
            True when this is the node's first interest in this pattern key.
        """
        self._patterns[id(subscription)] = subscription
        count = self._pattern_refs.get(subscription.key, 0)
        self._pattern_refs[subscription.key] = count + 1
        self._plans.clear()
        return count == 0

    def discard_pattern(self, subscription: PatternSubscription[R]) -> bool:
        """Remove a pattern subscription (no error when absent).

        Returns:
            True when no local subscription uses this pattern key any more.
        """
        if self._patterns.pop(id(subscription), None) is None:
            return False
        self._plans.clear()
        count = self._pattern_refs[subscription.key] - 1
        if count:
            self._pattern_refs[subscription.key] = count
            return False
        del self._pattern_refs[subscription.key]
        return True

    # -- fan-out -------------------------------------------------------------

    def recipients(self, room: Room) -> tuple[R, ...]:
        """Everyone on this node who gets the events of ``room``, each once."""
        plan = self._plans.get(room.key)
        if plan is None:
            chosen: dict[R, None] = dict.fromkeys(self._exact.get(room.key, ()))
            for subscription in self._patterns.values():
                if subscription.matches(room):
                    chosen[subscription.recipient] = None
            if len(self._plans) >= MAX_CACHED_PLANS:
                self._plans.clear()
            plan = self._plans[room.key] = tuple(chosen)
        return plan

    # -- inspection ----------------------------------------------------------

    def rooms(self) -> Iterator[Room]:
        """Rooms with at least one exact local subscriber."""
        for members in self._exact.values():
            yield next(iter(members.values()))

    def subscriber_count(self, room: Room) -> int:
        """Recipients of ``room`` (exact and by pattern)."""
        return len(self.recipients(room))

    @property
    def subscription_count(self) -> int:
        """Exact room subscriptions plus pattern subscriptions."""
        return sum(len(m) for m in self._exact.values()) + len(self._patterns)

    @property
    def pattern_keys(self) -> list[str]:
        """The pattern keys this node has interest in."""
        return list(self._pattern_refs)
