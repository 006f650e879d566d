"""A room's history: a bounded ring of events with offsets and an epoch.

Pure and synchronous: the memory broker keeps one :class:`RoomLog` per room;
the Redis broker keeps the same shape in a Redis Stream and reuses
:func:`recovery` to decide whether a position can still be served.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = [
    "Page",
    "Position",
    "Recovery",
    "RoomLog",
    "new_epoch",
    "recovery",
]

T = TypeVar("T")


def new_epoch() -> str:
    """A fresh epoch: short, random, unguessable across restarts."""
    return secrets.token_hex(4)


@dataclass(frozen=True, slots=True)
class Position:
    """A place in a room's history: the last offset seen, in an epoch."""

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Recovery:
    """Whether the events after a position can all be served.

    Attributes:
        recovered: True when nothing after the position was lost.
        reason: why not, for the client; empty when recovered.
    """

    recovered: bool
    reason: str = ""


def recovery(since: Position, *, epoch: str, top: int, oldest: int) -> Recovery:
    """Decide whether history can serve every event after ``since``.

    Args:
        since: the client's last seen position.
        epoch: the room's current epoch.
        top: the newest offset of the room (0 when none yet).
        oldest: the oldest offset the history still holds (``top + 1`` when
            it holds nothing).
    """
    if since.epoch and since.epoch != epoch:
        return Recovery(False, "the room's history was reset (epoch changed)")
    if not since.epoch and since.offset != 0:
        return Recovery(False, "a position with an offset needs its epoch")
    if since.offset > top:
        return Recovery(False, f"offset {since.offset} is ahead of the room (newest is {top})")
    if since.offset + 1 < oldest:
        return Recovery(False, f"history no longer reaches back to offset {since.offset + 1}")
    return Recovery(True)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """Events after a position, and the room's newest position.

    Attributes:
        items: the events, oldest first.
        top: the room's newest position.
        recovered: False when the position asked for could not be served.
        reason: why not.
        more: stored events follow the last item (a page cut by a limit);
            read on from the last item's position.
    """

    items: Sequence[T]
    top: Position
    recovered: bool
    reason: str = ""
    more: bool = False


class RoomLog(Generic[T]):
    """The history of one room.

    Args:
        size: events kept at most (0 keeps none).
        ttl: seconds an event is kept.
        epoch: the history's identity; a new one is drawn when omitted.
    """

    __slots__ = ("_entries", "epoch", "size", "top", "ttl")

    def __init__(self, size: int, ttl: float, epoch: str | None = None) -> None:
        self.size = size
        self.ttl = ttl
        self.epoch = new_epoch() if epoch is None else epoch
        self.top = 0
        # (offset, stored_at, item), oldest first.
        self._entries: deque[tuple[int, float, T]] = deque()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def position(self) -> Position:
        """The newest position."""
        return Position(self.top, self.epoch)

    @property
    def oldest(self) -> int:
        """The oldest offset held, or ``top + 1`` when nothing is held."""
        return self._entries[0][0] if self._entries else self.top + 1

    def next_offset(self) -> int:
        """Take the next offset (the caller stores the event under it)."""
        self.top += 1
        return self.top

    def store(self, offset: int, item: T, now: float) -> None:
        """Keep ``item`` under ``offset``, dropping the oldest beyond ``size``."""
        if self.size <= 0:
            return
        self._entries.append((offset, now, item))
        if len(self._entries) > self.size:
            self._entries.popleft()

    def store_many(self, entries: Sequence[tuple[int, float, T]]) -> None:
        """Keep ``(offset, stored_at, item)`` entries, in offset order, as :meth:`store` would."""
        if self.size <= 0:
            return
        self._entries.extend(entries)
        excess = len(self._entries) - self.size
        for _ in range(excess):
            self._entries.popleft()

    def expire(self, now: float) -> None:
        """Drop events older than the ttl."""
        deadline = now - self.ttl
        entries = self._entries
        while entries and entries[0][1] <= deadline:
            entries.popleft()

    def read(self, since: Position | None, limit: int, now: float) -> Page[T]:
        """Events after ``since`` (or from the oldest held), at most ``limit``.

        When ``since`` cannot be served the page says so and starts from the
        oldest event held.
        """
        self.expire(now)
        verdict = Recovery(True) if since is None else self.recovery(since)
        after = since.offset if since is not None and verdict.recovered else 0
        items = [item for offset, _, item in self._entries if offset > after][:limit]
        return Page(items, self.position, verdict.recovered, verdict.reason)

    def recovery(self, since: Position) -> Recovery:
        """Whether every event after ``since`` is still held."""
        return recovery(since, epoch=self.epoch, top=self.top, oldest=self.oldest)
