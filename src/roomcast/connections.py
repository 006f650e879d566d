"""A client connection as the core sees it, and what joining a room gives it.

The bridge implements :class:`LiveConnection`; the sessions
(``sessions.py``) hold one per client and answer its joins with
:class:`Joined`, which the bridge turns into ``room_joined`` and ``missed``
frames.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .brokers import Publication
from .history import Position
from .policy import ResolvedRoom
from .presence import ConnectionId, Member
from .rooms import Room

__all__ = ["Joined", "LiveConnection"]


class LiveConnection(Hashable, Protocol):
    """A client connection as the core sees it (the bridge implements it)."""

    @property
    def id(self) -> ConnectionId:
        """The connection's id."""

    def deliver(self, publications: Sequence[Publication]) -> None:
        """Take events of one room, in offset order, without blocking."""

    def hold(self, room_key: str) -> None:
        """Keep this room's live events back until :meth:`release` (a join is answered)."""

    def release(self, room_key: str, after: int | None) -> None:
        """Send the held events of this room with offsets after ``after``; None drops them."""

    def joined(self, joined: Joined) -> None:
        """The server put the connection into a room (``JoinRoom``); tell the client."""

    def left(self, room: Room) -> None:
        """The server took the connection out of a room (``LeaveRoom``); tell the client."""

    def disconnect(self, code: int, reason: str) -> None:
        """Close the connection with a close code, without waiting."""


@dataclass(frozen=True, slots=True)
class Joined:
    """A connection is in a room: where the room stands, and what it missed.

    Attributes:
        room: the room.
        position: the room's newest position when it joined.
        recovered: False when the client's ``since`` could not be served.
        reason: why not, for the client.
        missed: encoded events after ``since``, oldest first: the first
            page of them (see ``more``).
        members: the room's members (empty when the rule has presence off).
        more: missed events follow ``missed`` (up to ``position``): the
            join's budget did not hold them all.
        resolved: the room as the policy resolved it (to read on).
    """

    room: Room
    position: Position
    recovered: bool = True
    reason: str = ""
    missed: Sequence[bytes] = ()
    members: Sequence[Member] = ()
    more: bool = False
    resolved: ResolvedRoom | None = None
