"""Remembered publish results, so a retried publish with the same key lands once.

Pure and bounded: entries expire after ``ttl`` seconds and the oldest are
dropped beyond ``max_keys``, whichever comes first.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["IdempotencyCache"]

T = TypeVar("T")


class IdempotencyCache(Generic[T]):
    """Results by key, kept for ``ttl`` seconds, at most ``max_keys`` of them."""

    def __init__(self, ttl: float, max_keys: int) -> None:
        self.ttl = ttl
        self.max_keys = max_keys
        # key -> (stored_at, result); insertion order is time order.
        self._entries: OrderedDict[str, tuple[float, T]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, now: float) -> T | None:
        """The result remembered for ``key``, if it has not expired."""
        self._expire(now)
        entry = self._entries.get(key)
        return None if entry is None else entry[1]

    def put(self, key: str, result: T, now: float) -> None:
        """Remember ``result`` for ``key``."""
        self._entries[key] = (now, result)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_keys:
            self._entries.popitem(last=False)

    def _expire(self, now: float) -> None:
        deadline = now - self.ttl
        entries = self._entries
        while entries:
            oldest = next(iter(entries.values()))
            if oldest[0] > deadline:
                break
            entries.popitem(last=False)
