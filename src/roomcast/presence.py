"""Who is connected, and who is in which room. Pure bookkeeping, no I/O.

The WebSocket bridge registers each live connection here; ``JoinRoom`` and
``LeaveRoom`` find a user's connections here; ``GetPresence`` and presence
frames read the members of a room here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import NewType

from .errors import InvalidArgument
from .rooms import TenantId

__all__ = ["MAX_TOKEN_LENGTH", "ConnectionId", "Member", "Presence", "members_page"]

MAX_TOKEN_LENGTH = 128

ConnectionId = NewType("ConnectionId", str)


@dataclass(frozen=True, slots=True)
class Member:
    """One live connection.

    Attributes:
        connection_id: the connection.
        user_id: its user (the token's ``sub``).
        tenant: its tenant, or None for platform-level principals.
        joined_at: when it connected, or, in a room's member list, when it
            joined the room (seconds since the epoch).
    """

    connection_id: ConnectionId
    user_id: str
    tenant: TenantId | None
    joined_at: float


class Presence:
    """Live connections, and the rooms they are in."""

    def __init__(self) -> None:
        self._connections: dict[ConnectionId, Member] = {}
        self._by_user: dict[tuple[TenantId | None, str], set[ConnectionId]] = {}
        self._rooms: dict[str, dict[ConnectionId, Member]] = {}
        self._rooms_of: dict[ConnectionId, set[str]] = {}

    # -- connections ---------------------------------------------------------

    def connect(self, member: Member) -> None:
        """Register a live connection."""
        self._connections[member.connection_id] = member
        self._by_user.setdefault((member.tenant, member.user_id), set()).add(member.connection_id)

    def disconnect(self, connection_id: ConnectionId) -> list[tuple[str, Member]]:
        """Forget a connection.

        Returns:
            The (room key, member) entries it left, for leave announcements.
        """
        member = self._connections.pop(connection_id, None)
        if member is None:
            return []
        owners = self._by_user.get((member.tenant, member.user_id))
        if owners is not None:
            owners.discard(connection_id)
            if not owners:
                del self._by_user[(member.tenant, member.user_id)]
        left = []
        for key in sorted(self._rooms_of.pop(connection_id, set())):
            entry = self.leave(key, connection_id, _keep_index=True)
            if entry is not None:
                left.append((key, entry))
        return left

    def connection(self, connection_id: str) -> Member | None:
        """The live connection with this id, if any."""
        return self._connections.get(ConnectionId(connection_id))

    def connections_of(self, tenant: TenantId | None, user_id: str) -> list[ConnectionId]:
        """A user's live connections, oldest first."""
        return sorted(
            self._by_user.get((tenant, user_id), ()),
            key=lambda c: self._connections[c].joined_at,
        )

    def connections_by_tenant(self) -> dict[TenantId | None, int]:
        """How many live connections each tenant has."""
        counts: dict[TenantId | None, int] = {}
        for member in self._connections.values():
            counts[member.tenant] = counts.get(member.tenant, 0) + 1
        return counts

    @property
    def connection_count(self) -> int:
        """Live connections on this node."""
        return len(self._connections)

    # -- rooms ---------------------------------------------------------------

    def join(self, room_key: str, member: Member, joined_at: float) -> bool:
        """Put a connection into a room at ``joined_at``.

        Returns:
            True when it was not in the room before.
        """
        members = self._rooms.setdefault(room_key, {})
        if member.connection_id in members:
            return False
        members[member.connection_id] = replace(member, joined_at=joined_at)
        self._rooms_of.setdefault(member.connection_id, set()).add(room_key)
        return True

    def leave(
        self, room_key: str, connection_id: ConnectionId, *, _keep_index: bool = False
    ) -> Member | None:
        """Take a connection out of a room.

        Returns:
            Its entry, or None when it was not in the room.
        """
        members = self._rooms.get(room_key)
        if members is None:
            return None
        member = members.pop(connection_id, None)
        if not members:
            del self._rooms[room_key]
        if member is not None and not _keep_index:
            rooms = self._rooms_of.get(connection_id)
            if rooms is not None:
                rooms.discard(room_key)
                if not rooms:
                    del self._rooms_of[connection_id]
        return member

    def member(self, room_key: str, connection_id: ConnectionId) -> Member | None:
        """A connection's entry in a room (with the time it joined), if it is in."""
        return self._rooms.get(room_key, {}).get(connection_id)

    def entries(self) -> list[tuple[str, Member]]:
        """Every (room key, member) entry."""
        return [
            (key, member) for key, members in self._rooms.items() for member in members.values()
        ]

    def members(self, room_key: str) -> list[Member]:
        """A room's members, in the order they joined."""
        return sorted(self._rooms.get(room_key, {}).values(), key=lambda m: m.joined_at)

    def member_count(self, room_key: str) -> int:
        """How many connections are in a room."""
        return len(self._rooms.get(room_key, ()))

    def rooms_of(self, connection_id: ConnectionId) -> set[str]:
        """The room keys a connection is in."""
        return set(self._rooms_of.get(connection_id, ()))

    def room_keys(self) -> list[str]:
        """Rooms with at least one member."""
        return list(self._rooms)


def _order(member: Member) -> tuple[float, str]:
    return (member.joined_at, member.connection_id)


def _after(token: str) -> tuple[float, str]:
    """The place a page token stands for.

    Raises:
        InvalidArgument: not a token a presence page gave.
    """
    joined_at, _, connection_id = token.partition("/")
    try:
        if len(token) > MAX_TOKEN_LENGTH or not connection_id:
            raise ValueError(token)
        when = float(joined_at)
        if not math.isfinite(when):
            raise ValueError(token)
    except ValueError as error:
        raise InvalidArgument("page_token: not a token from an earlier presence page") from error
    return (when, connection_id)


def members_page(
    members: Iterable[Member], page_token: str, max_bytes: int, size: Callable[[Member], int]
) -> tuple[list[Member], str]:
    """One page of a room's members, oldest first, about ``max_bytes`` of them.

    Members are ordered by when they joined, then by connection id; a page
    token names the last member of a page, so a page goes on where the last
    one ended even if members came and went meanwhile.

    Args:
        members: the room's members, in any order.
        page_token: "" for the first page, else the ``next`` of the last one.
        max_bytes: the page's budget, as ``size`` measures members (at
            least one member is given).
        size: a member's size in the reply.

    Returns:
        The page, and the token of the page after it ("" when this is the last).

    Raises:
        InvalidArgument: a malformed page token.
    """
    start = _after(page_token) if page_token else None
    ordered = sorted(
        (m for m in members if start is None or _order(m) > start),
        key=_order,
    )
    page: list[Member] = []
    used = 0
    for member in ordered:
        cost = size(member)
        if page and used + cost > max_bytes:
            last = page[-1]
            return page, f"{last.joined_at!r}/{last.connection_id}"
        page.append(member)
        used += cost
    return page, ""
